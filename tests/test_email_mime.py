"""The email as it goes over the wire: the one-click unsubscribe header a mail client can read,
the parts and headers read back as rendered, whether the message is written directly (plain
ASCII headers) or by the ``email`` package (a non-ASCII name, an attachment)."""

from __future__ import annotations

import re

import pytest
from temporalio.testing import ActivityEnvironment

from activities import build_activities
from relance.contracts.sending import SendRequest
from relance.dev.devsink import _parse_mail
from relance.dev.seeding import unique_id
from relance.services import mime


def _send(settings, engine, lead, template: str = "welcome_new"):
    send_email = next(a for a in build_activities(settings, engine) if a.__name__ == "send_email")
    request = SendRequest(
        lead.id,
        workflow_id=unique_id("welcome"),
        journey="welcome",
        step="welcome",
        template=template,
    )
    return ActivityEnvironment().run(send_email, request)


def _raw_header(raw: bytes, name: str) -> str:
    """A header as written on the wire, its folded lines joined back (RFC 5322 unfolding)."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    match = re.search(
        rf"^{name}:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.MULTILINE | re.IGNORECASE
    )
    assert match, f"no {name} header in {head!r}"
    return match.group(1).replace("\r\n", "").strip()


@pytest.mark.parametrize("first_name", ["Ada", "José"])
async def test_the_one_click_unsubscribe_header_holds_its_links_as_written(
    settings, engine, sink, make_lead, first_name
):
    """RFC 2369 / 8058: List-Unsubscribe is a list of URLs in angle brackets; written as encoded
    words (=?utf-8?q?...?=), which a long signed URL used to become, no mail client offers it."""
    lead = make_lead(first_name=first_name)
    assert _send(settings, engine, lead).status == "sent"
    [mail] = await sink.wait_for_mail(to=lead.email)
    header = _raw_header(mail.raw, "List-Unsubscribe")
    assert "=?" not in header, header
    unsubscribe, mailto = header.split(", ")
    assert re.fullmatch(rf"<{re.escape(settings.public_base_url)}/u/[A-Za-z0-9_.-]+>", unsubscribe)
    assert mailto.startswith(f"<mailto:{settings.unsubscribe_mailto}?subject=unsubscribe-")
    assert str(mail.message["List-Unsubscribe"]) == header
    assert max(len(line) for line in mail.raw.split(b"\r\n")) <= 998


async def test_every_part_and_header_reads_back_as_rendered(settings, engine, sink, make_lead):
    """The message written directly reads back, at the sink's parser, as the email package's
    own build of it does: the same parts, the same headers."""
    lead = make_lead(first_name='Ada "The Countess", Lovelace')
    assert _send(settings, engine, lead, "nurture_welcome_newsletter").status == "sent"
    [mail] = await sink.wait_for_mail(to=lead.email)
    assert "=?" not in mail.raw.split(b"\r\n\r\n", 1)[0].decode()  # written directly
    [to] = mail.message["To"].addresses
    assert (to.display_name, to.addr_spec) == ('Ada "The Countess", Lovelace', lead.email)
    assert mail.subject == f"Welcome to the {settings.brand_name} newsletter"
    assert "Hi Ada &#34;The Countess&#34;, Lovelace," in mail.html
    assert 'Hi Ada "The Countess", Lovelace,' in mail.text
    assert "\u2014 The" in mail.text  # UTF-8 in quoted-printable
    assert mail.html.rstrip().endswith("</html>") and "/t/o/" in mail.html


def test_a_header_is_folded_at_its_spaces_and_unfolds_to_what_was_set():
    subject = " ".join(["word"] * 40)
    raw = mime.build([("Subject", subject), ("To", "ada@example.com")], "text\n", "<p>html</p>")
    assert raw is not None
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    assert all(len(line) <= mime.MAX_LINE for line in head.split("\r\n")[:-3])
    assert _parse_mail(raw)["Subject"] == subject


@pytest.mark.parametrize(
    "value",
    [
        "Caf\u00e9 news",  # not ASCII: encoded words, by the email package
        "=?utf-8?q?looks_encoded?=",  # would be read as an encoded word
        "two\r\nlines",
        "a  run of spaces",
        "x" * (mime.MAX_WORD + 1),
    ],
)
def test_a_header_that_cannot_be_written_as_it_is_leaves_the_message_to_the_email_package(
    value,
):
    assert mime.build([("Subject", value)], "text\n", "<p>html</p>") is None

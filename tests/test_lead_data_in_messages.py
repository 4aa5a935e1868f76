"""Lead data in the messages Relance sends: rendered as text, never as a tracked link or a header.

Whatever a lead's stored name or address holds (a URL, an apostrophe, a line break, a non-ASCII
mailbox), the send goes out readable and safe, or is recorded as failed with its reason, and the
journey goes on: never an endless retry. Real welcome journeys on the time-skipping server, real
SMTP into the sink (its own sink where the test needs the server to behave differently).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowHandle

from relance.dev.devsink import DevSink, ReceivedMail
from relance.dev.seeding import unique_id
from relance.domain.models import Message
from relance.domain.settings import Settings
from relance.domain.tokens import TokenSigner
from tests.waiting import eventually
from worker import build_worker
from workflows.welcome import WelcomeInput, WelcomeJourney

EVIL = "https://evil.example/login"


async def start(client: Client, settings: Settings, lead, **knobs) -> WorkflowHandle:
    return await client.start_workflow(
        WelcomeJourney.run,
        WelcomeInput(lead_id=lead.id, **knobs),
        id=unique_id(f"welcome-{lead.id}"),
        task_queue=settings.temporal_task_queue,
    )


async def welcome_mail(
    client, settings, sink: DevSink, lead, to: str | None = None
) -> ReceivedMail:
    """The lead's welcome email, once the journey has recorded it (then the journey is ended)."""
    handle = await start(client, settings, lead)
    [mail] = await sink.wait_for_mail(to=to or lead.email)
    await wait_for_step(handle, "waiting_for_open")  # the send activity is over: safe to terminate
    await handle.terminate("test over")
    return mail


async def wait_for_step(handle: WorkflowHandle, step: str, timeout: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while (status := await handle.query(WelcomeJourney.status)).step != step:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"journey still at {status.step!r}, expected {step!r}")
        await asyncio.sleep(0.02)
    return status


def click_destinations(settings: Settings, *parts: str) -> list[str]:
    """Where every click link in these texts leads, as the click endpoint would decode it."""
    signer = TokenSigner(
        settings.secret_key, max_age_seconds=settings.tracking_token_max_age_days * 86400
    )
    base = re.escape(settings.public_base_url)
    destinations = []
    for part in parts:
        for token in re.findall(base + r"/t/c/([A-Za-z0-9_.\-]+)", part):
            decoded = signer.verify("click", token)
            assert decoded is not None, f"a click link that does not verify: {token}"
            destinations.append(decoded.url)
    return destinations


def messages_of(engine, lead) -> list[Message]:
    with Session(engine) as session:
        return list(session.exec(select(Message).where(Message.lead_id == lead.id)).all())


# Only links written in templates are tracked ---------------------------------------------------


async def test_a_url_as_first_name_is_text_never_a_tracked_link(
    client, settings, worker, sink, make_lead
):
    lead = make_lead(first_name=EVIL)
    mail = await welcome_mail(client, settings, sink, lead)

    destinations = click_destinations(settings, mail.html, mail.text)
    assert destinations, "the template's own links are tracked"
    assert all(urlsplit(url).hostname == "example.com" for url in destinations), destinations
    assert f"{settings.site_url.rstrip('/')}/guides/first-journey" in destinations
    # The name is still shown, as the lead wrote it, in both parts.
    assert f"Welcome, {EVIL}!" in mail.text and f"Welcome, {EVIL}!" in mail.html
    assert mail.subject == f"Welcome to Relance, {EVIL}!"


async def test_a_url_as_first_name_is_no_tracked_link_in_the_sms_either(
    client, settings, worker, sink, make_lead
):
    phone = f"+3361{uuid.uuid4().int % 10**7:07d}"
    lead = make_lead(first_name=EVIL, consents=("email", "sms"), phone=phone)
    result = await (
        await start(client, settings, lead)
    ).result()  # no open: the relance goes by SMS

    assert result.relanced_by == "sms"
    [sms] = await sink.wait_for_sms(to=phone)
    assert f"hi {EVIL}, your welcome guide" in sms.body
    assert click_destinations(settings, sms.body) == [
        f"{settings.site_url.rstrip('/')}/guides/first-journey"
    ]


# Subjects, text parts and SMS read as written; HTML escapes --------------------------------------


async def test_subject_text_and_sms_read_exactly_as_the_lead_wrote_the_name(
    client, settings, worker, sink, make_lead
):
    name = "Seán O'Brien & Co"
    phone = f"+3362{uuid.uuid4().int % 10**7:07d}"
    lead = make_lead(first_name=name, consents=("email", "sms"), phone=phone)
    result = await (await start(client, settings, lead)).result()

    [mail] = sink.mails_to(lead.email)
    assert mail.subject == "Welcome to Relance, Seán O'Brien & Co!"
    assert "Welcome, Seán O'Brien & Co!" in mail.text
    assert (
        "Welcome, Seán O&#x27;Brien &amp; Co!" in mail.html
        or "Welcome, Seán O&#39;Brien &amp; Co!" in mail.html
    )
    assert result.relanced_by == "sms"
    [sms] = await sink.wait_for_sms(to=phone)
    assert sms.body.startswith("Relance: hi Seán O'Brien & Co, your welcome guide")


async def test_a_name_with_line_breaks_adds_no_header_and_the_email_goes_out(
    client, settings, worker, sink, make_lead, engine
):
    lead = make_lead(first_name="Ada\r\nBcc: victim@example.net\r\nX-Injected: yes")
    mail = await welcome_mail(client, settings, sink, lead)

    assert mail.rcpt_tos == [lead.email]
    assert mail.headers["Bcc"] is None and mail.headers["X-Injected"] is None
    assert "\n" not in mail.subject and "\r" not in mail.subject
    assert mail.subject == "Welcome to Relance, Ada Bcc: victim@example.net X-Injected: yes!"
    assert mail.headers["To"].addresses[0].addr_spec == lead.email
    [row] = messages_of(engine, lead)
    assert row.status == "sent"


# Internationalised addresses -------------------------------------------------------------------


async def test_a_non_ascii_mailbox_is_sent_with_smtputf8(
    client, settings, worker, sink, make_lead, engine
):
    address = f"josé.{uuid.uuid4().hex[:6]}@example.com"
    lead = make_lead(email=address, first_name="José")
    mail = await welcome_mail(client, settings, sink, lead)

    assert mail.rcpt_tos == [address]
    assert mail.headers["To"].addresses[0].addr_spec == address
    assert mail.subject == "Welcome to Relance, José!"
    [row] = messages_of(engine, lead)
    assert row.status == "sent"


async def test_an_idn_domain_is_sent_in_its_ascii_form(
    client, settings, worker, sink, make_lead, engine
):
    local = f"ada.{uuid.uuid4().hex[:6]}"
    lead = make_lead(email=f"{local}@bücher.example")
    mail = await welcome_mail(client, settings, sink, lead, to=f"{local}@xn--bcher-kva.example")

    assert mail.rcpt_tos == [f"{local}@xn--bcher-kva.example"]
    assert b"SMTPUTF8" not in mail.raw and mail.raw.isascii()  # any server takes it
    [row] = messages_of(engine, lead)
    assert row.status == "sent"


# Failures retrying cannot fix: recorded, and the journey goes on -------------------------------


@pytest.fixture
async def plain_server(client, settings, engine) -> AsyncIterator[tuple[Settings, DevSink]]:
    """Its own SMTP server that does not offer SMTPUTF8 (and can refuse recipients), and a worker
    for it."""
    async with DevSink(smtp_port=0, http_port=0, smtputf8=False) as own_sink:
        own = settings.model_copy(
            update={
                "smtp_port": own_sink.smtp_port,
                "temporal_task_queue": f"plain-smtp-{uuid.uuid4().hex[:8]}",
            }
        )
        async with build_worker(client, own, engine):
            yield own, own_sink


async def test_a_non_ascii_mailbox_without_smtputf8_fails_once_with_its_reason(
    client, plain_server, make_lead, engine
):
    own, own_sink = plain_server
    lead = make_lead(email=f"josé.{uuid.uuid4().hex[:6]}@example.com")
    result = await asyncio.wait_for((await start(client, own, lead)).result(), timeout=30)

    assert result.outcome == "not_sent" and "SMTPUTF8" in result.reason
    [row] = messages_of(engine, lead)
    assert row.status == "failed" and "SMTPUTF8" in row.reason and "non-ASCII" in row.reason
    assert own_sink.mails == []


async def test_a_recipient_refused_for_good_is_failed_not_retried(
    client, plain_server, make_lead, engine
):
    own, own_sink = plain_server
    lead = make_lead()
    own_sink.refuse(lead.email, "550 5.1.1 No such user here")
    result = await asyncio.wait_for((await start(client, own, lead)).result(), timeout=30)

    assert result.outcome == "not_sent" and "550" in result.reason
    [row] = messages_of(engine, lead)
    assert row.status == "failed" and "No such user here" in row.reason
    assert own_sink.mails == []


async def test_a_stored_address_that_is_no_address_is_failed_with_its_reason(
    client, settings, worker, make_lead, engine
):
    lead = make_lead(email=f"not-an-address-{uuid.uuid4().hex[:6]}")
    result = await asyncio.wait_for((await start(client, settings, lead)).result(), timeout=30)

    assert result.outcome == "not_sent" and "not a valid email address" in result.reason
    [row] = messages_of(engine, lead)
    assert row.status == "failed" and "not a valid email address" in row.reason


async def test_an_sms_the_provider_refuses_is_failed_and_the_journey_relances_by_email(
    client, settings, engine, sink, make_lead
):
    own = settings.model_copy(
        update={
            "sms_api_token": "not-the-provider-token",  # answered 401
            "temporal_task_queue": f"sms-refused-{uuid.uuid4().hex[:8]}",
        }
    )
    phone = f"+3364{uuid.uuid4().int % 10**7:07d}"
    lead = make_lead(consents=("email", "sms"), phone=phone)
    async with build_worker(client, own, engine):
        result = await asyncio.wait_for((await start(client, own, lead)).result(), timeout=30)

    assert result.relanced_by == "email"
    sms_row = next(m for m in messages_of(engine, lead) if m.step == "relance_sms")
    assert sms_row.status == "failed" and "401" in sms_row.reason
    assert [m.status for m in result.messages] == ["sent", "failed", "sent"]


# A mail setting that is wrong is not the message's fault ---------------------------------------


async def test_a_login_the_mail_server_refuses_is_retried_and_the_email_goes_out_once_the_settings_are_fixed(  # noqa: E501
    dev_server_env, settings, engine, sink, make_lead
):
    """A wrong SMTP login (here: a username set for a server that offers no AUTH) must not fail
    every message for good, one by one, blamed on the address: the sends wait, retried, until
    the operator fixes the settings and restarts the worker; then each goes out once.

    On the dev server, in real time: a worker stopped while its activity is being retried would
    hold the shared time-skipping server's clock for every later test."""
    client = dev_server_env.client
    queue = f"smtp-login-{uuid.uuid4().hex[:8]}"
    wrong = settings.model_copy(
        update={
            "smtp_username": "relance",
            "smtp_password": "not-the-password",
            "temporal_task_queue": queue,
        }
    )
    lead = make_lead()
    async with build_worker(client, wrong, engine):
        handle = await start(client, wrong, lead)
        await eventually(
            lambda: [r for r in messages_of(engine, lead) if r.attempts >= 2],
            timeout=20,
            what="a second attempt at the welcome email",
        )
    [row] = messages_of(engine, lead)
    assert row.status == "sending", row.reason  # not failed for good
    assert "login" in row.reason and "SMTPUTF8" not in row.reason

    async with build_worker(
        client, settings.model_copy(update={"temporal_task_queue": queue}), engine
    ):
        [mail] = await sink.wait_for_mail(to=lead.email, timeout=30)
        await eventually(
            lambda: messages_of(engine, lead)[0].status == "sent",
            timeout=10,
            what="the send activity to record the email sent",
        )
        await handle.terminate("test over")
    assert len(sink.mails_to(lead.email)) == 1 and mail.headers["Message-ID"]

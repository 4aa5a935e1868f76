"""The dev outbox really speaks SMTP and the SMS provider's HTTP API, and shows what it got."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage

import httpx
import pytest

from relance.devsink import DevSink

TOKEN = "s3cret"


@pytest.fixture
async def sink():
    async with DevSink(smtp_port=0, http_port=0, sms_token=TOKEN) as running:
        yield running


def _send(port: int, *, to: str, subject: str) -> None:
    msg = EmailMessage()
    msg["From"] = "Relance <hello@relance.localhost>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["List-Unsubscribe"] = "<mailto:unsubscribe@relance.localhost>"
    msg.set_content("Hello Ada,\nwelcome aboard.\n")
    msg.add_alternative('<p>Hello <b>Ada</b> <a href="http://localhost:8000/c/x">go</a></p>', subtype="html")
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        smtp.send_message(msg)


def _http(sink: DevSink) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{sink.http_port}", timeout=5)


async def test_ports_are_picked(sink):
    assert sink.smtp_port > 0 and sink.http_port > 0


async def test_receives_and_parses_real_smtp_mail(sink):
    await asyncio.to_thread(_send, sink.smtp_port, to="Ada@Example.com", subject="Welcome to Relance")
    [mail] = await sink.wait_for_mail(to="ada@example.com", subject_contains="Welcome", timeout=5)
    assert mail.id >= 1
    assert mail.subject == "Welcome to Relance"
    assert mail.rcpt_tos == ["Ada@Example.com"]
    assert mail.to == "Ada@Example.com"
    assert mail.mail_from == "hello@relance.localhost"
    assert "<b>Ada</b>" in mail.html
    assert "welcome aboard" in mail.text
    assert mail.headers["List-Unsubscribe"] == "<mailto:unsubscribe@relance.localhost>"
    assert mail.received_at.tzinfo is not None
    assert sink.mails_to("ADA@example.com") == [mail]
    assert sink.mails_to("bob@example.com") == []


async def test_wait_for_mail_times_out_with_what_was_received(sink):
    await asyncio.to_thread(_send, sink.smtp_port, to="ada@example.com", subject="Only this one")
    await sink.wait_for_mail(subject_contains="Only this one")
    with pytest.raises(TimeoutError, match="Only this one"):
        await sink.wait_for_mail(to="nobody@example.com", timeout=0.1)


async def test_sms_is_stored_authenticated_validated_and_deduped(sink):
    payload = {"to": "+33612345678", "from": "Relance", "body": "Hi Ada", "reference": "ref-1"}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with _http(sink) as client:
        assert (await client.post("/sms", json=payload)).status_code == 401
        assert (await client.post("/sms", json=payload, headers={"Authorization": "Bearer wrong"})).status_code == 401
        missing = {k: v for k, v in payload.items() if k != "body"}
        assert (await client.post("/sms", json=missing, headers=auth)).status_code == 422

        first = await client.post("/sms", json=payload, headers=auth)
        assert first.status_code == 200
        assert first.json()["status"] == "accepted"
        sms_id = first.json()["id"]
        assert sms_id.startswith("sms-")

        again = await client.post("/sms", json={**payload, "body": "resent"}, headers=auth)
        assert again.status_code == 200 and again.json()["id"] == sms_id

        other = await client.post("/sms", json={**payload, "reference": "ref-2"}, headers=auth)
        assert other.json()["id"] != sms_id

    got = await sink.wait_for_sms(to="+33612345678", count=2, timeout=1)
    assert [s.reference for s in got] == ["ref-1", "ref-2"]
    assert (got[0].id, got[0].sender, got[0].body) == (sms_id, "Relance", "Hi Ada")
    with pytest.raises(TimeoutError):
        await sink.wait_for_sms(count=3, timeout=0.1)


async def test_sms_without_token_configured_needs_no_auth():
    async with DevSink(smtp_port=0, http_port=0) as open_sink, _http(open_sink) as client:
        r = await client.post("/sms", json={"to": "+33600000000", "from": "R", "body": "b", "reference": "x"})
        assert r.json() == {"id": "sms-1", "status": "accepted"}


async def test_inbox_pages(sink):
    subject = "Tom & <Jerry>"
    await asyncio.to_thread(_send, sink.smtp_port, to="ada@example.com", subject=subject)
    [mail] = await sink.wait_for_mail(subject_contains="Jerry")
    async with _http(sink) as client:
        index = await client.get("/")
        assert index.status_code == 200
        assert "Tom &amp; &lt;Jerry&gt;" in index.text and "<Jerry>" not in index.text
        assert f'href="/mail/{mail.id}"' in index.text

        page = await client.get(f"/mail/{mail.id}")
        assert page.status_code == 200
        assert "Tom &amp; &lt;Jerry&gt;" in page.text
        assert "<iframe" in page.text and 'srcdoc="' in page.text
        assert "&lt;b&gt;Ada&lt;/b&gt;" in page.text  # HTML part escaped inside srcdoc
        assert "welcome aboard" in page.text
        assert "&lt;mailto:unsubscribe@relance.localhost&gt;" in page.text

        raw = await client.get(f"/mail/{mail.id}/raw")
        assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/plain")
        assert "Subject: Tom & <Jerry>" in raw.text

        listing = (await client.get("/api/mails")).json()
        assert {"id": mail.id, "subject": subject}.items() <= listing[-1].items()

        assert (await client.get("/mail/999")).status_code == 404
        assert (await client.get("/mail/999/raw")).status_code == 404

"""The dev outbox really speaks SMTP and the SMS provider's HTTP API, shows what it got, and
keeps it across restarts."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from relance.dev import devsink
from relance.dev.devsink import DevSink
from relance.dev.serving import free_ports

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
    msg.add_alternative(
        '<p>Hello <b>Ada</b> <a href="http://localhost:8000/c/x">go</a></p>', subtype="html"
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        smtp.send_message(msg)


def _http(sink: DevSink) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{sink.http_port}", timeout=5)


async def test_ports_are_picked(sink):
    assert sink.smtp_port > 0 and sink.http_port > 0


async def test_receives_and_parses_real_smtp_mail(sink):
    await asyncio.to_thread(
        _send, sink.smtp_port, to="Ada@Example.com", subject="Welcome to Relance"
    )
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
        assert (
            await client.post("/sms", json=payload, headers={"Authorization": "Bearer wrong"})
        ).status_code == 401
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
        r = await client.post(
            "/sms", json={"to": "+33600000000", "from": "R", "body": "b", "reference": "x"}
        )
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
        assert {"id": mail.id, "subject": subject}.items() <= listing[0].items()

        assert (await client.get("/mail/999")).status_code == 404
        assert (await client.get("/mail/999/raw")).status_code == 404


# -- what a script reads, and what survives a restart ------------------------------------------

# Long enough that quoted-printable folds it (soft line breaks) and "=" becomes "=3D" on the wire.
CONFIRM_URL = "http://localhost:8000/confirm/eyJsZWFkIjoiMTIzNDU2Nzg5MCIsImtpbmQiOiJjb25maXJtIn0.a1b2c3d4e5f6?lang=fr&x=1"


def _send_qp(port: int, *, to: str, subject: str, url: str = CONFIRM_URL) -> None:
    msg = EmailMessage()
    msg["From"] = "Relance <hello@relance.localhost>"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(f"Bonjour Zoé,\nconfirmez votre adresse : {url}\n", cte="quoted-printable")
    msg.add_alternative(
        f'<p>Bonjour Zoé, <a href="{url}">confirmer</a></p>', subtype="html", cte="quoted-printable"
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        smtp.send_message(msg)


async def _sms(client: httpx.AsyncClient, to: str, body: str, reference: str) -> str:
    r = await client.post(
        "/sms",
        json={"to": to, "from": "Relance", "body": body, "reference": reference},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert r.status_code == 200, r.text
    return r.json()["id"]


async def test_a_link_in_a_quoted_printable_part_is_greppable_in_the_json(sink):
    await asyncio.to_thread(_send_qp, sink.smtp_port, to="zoe@example.com", subject="Confirmez")
    [mail] = await sink.wait_for_mail(to="zoe@example.com")
    async with _http(sink) as client:
        raw = (await client.get(f"/mail/{mail.id}/raw")).text
        assert "quoted-printable" in raw and CONFIRM_URL not in raw  # the wire form hides it

        detail = (await client.get(f"/api/mails/{mail.id}")).json()
        assert CONFIRM_URL in detail["text"] and "Zoé" in detail["text"]
        assert "\r" not in detail["text"]  # lines end as grep expects, not with the wire's CRLF
        assert f'href="{CONFIRM_URL}"' in detail["html"]
        assert detail["links"] == [CONFIRM_URL]
        assert (
            CONFIRM_URL in (await client.get(f"/api/mails/{mail.id}")).text
        )  # grep, no JSON parsing
        assert {"name": "Subject", "value": "Confirmez"} in detail["headers"]
        assert (detail["from"], detail["to"], detail["envelope_from"]) == (
            "Relance <hello@relance.localhost>",
            ["zoe@example.com"],
            "hello@relance.localhost",
        )
        assert detail["raw_url"] == f"/mail/{mail.id}/raw"

        page = (await client.get(f"/mail/{mail.id}")).text
        assert CONFIRM_URL.replace("&", "&amp;") in page  # the text part, decoded, on the page too

        missing = await client.get("/api/mails/99999")
        assert missing.status_code == 404 and missing.json() == {"detail": "no mail #99999"}


async def test_lists_are_newest_first_and_filter_like_a_script_needs(sink):
    async with _http(sink) as client:
        before = (await client.get("/api/mails", params={"limit": 1})).json()
        after = before[0]["id"] if before else 0
        for to, subject in [
            ("ann@example.com", "One"),
            ("bob@example.com", "Two"),
            ("ann@example.com", "Three"),
        ]:
            await asyncio.to_thread(_send, sink.smtp_port, to=to, subject=subject)
            await sink.wait_for_mail(to=to, subject_contains=subject)

        mine = (await client.get("/api/mails", params={"after": after})).json()
        assert [m["subject"] for m in mine] == ["Three", "Two", "One"]
        assert [m["id"] for m in mine] == sorted((m["id"] for m in mine), reverse=True)
        assert {
            "from": "Relance <hello@relance.localhost>",
            "to": ["ann@example.com"],
            "url": f"/api/mails/{mine[0]['id']}",
        }.items() <= mine[0].items()

        ann = (
            await client.get("/api/mails", params={"to": "ANN@example.com", "after": after})
        ).json()
        assert [m["subject"] for m in ann] == ["Three", "One"]
        assert [
            m["subject"]
            for m in (
                await client.get("/api/mails", params={"subject": "tw", "after": after})
            ).json()
        ] == ["Two"]
        assert [
            m["subject"]
            for m in (await client.get("/api/mails", params={"after": after, "limit": 2})).json()
        ] == ["Three", "Two"]
        assert (await client.get("/api/mails", params={"wait": 3600})).status_code == 422

        ids = [await _sms(client, "+33611111111", f"code {n}", f"list-{n}-{after}") for n in (1, 2)]
        texts = (await client.get("/api/sms", params={"to": "+33611111111"})).json()
        assert [t["id"] for t in texts][:2] == ids[::-1]
        assert {"to": "+33611111111", "from": "Relance", "body": "code 2"}.items() <= texts[
            0
        ].items()

        page = (await client.get("/")).text
        listed = [int(i) for i in re.findall(r'data-mail-id="(\d+)"', page)]
        assert listed == sorted(listed, reverse=True) and listed[0] == mine[0]["id"]
        assert page.index("code 2") < page.index("code 1")  # SMS newest first too


async def test_a_script_can_wait_for_the_next_mail(sink):
    async with _http(sink) as client:
        waiting = asyncio.create_task(
            client.get("/api/mails", params={"to": "late@example.com", "wait": 20})
        )
        await asyncio.sleep(0)  # (not a wait for an outcome: only lets the request go out first)
        started = time.monotonic()
        await asyncio.to_thread(_send, sink.smtp_port, to="late@example.com", subject="At last")
        answer = await asyncio.wait_for(waiting, 15)
        assert time.monotonic() - started < 10  # answered when the mail came, not after 20 s
        assert [m["subject"] for m in answer.json()] == ["At last"]

        # Nothing matching arrives: an empty list once the wait is over.
        nothing = await client.get("/api/mails", params={"to": "nobody@example.com", "wait": 0.2})
        assert nothing.status_code == 200 and nothing.json() == []

        waiting_sms = asyncio.create_task(
            client.get("/api/sms", params={"to": "+33622222222", "wait": 20})
        )
        await asyncio.sleep(0)
        sms_id = await _sms(client, "+33622222222", "your code", "wait-1")
        assert [t["id"] for t in (await asyncio.wait_for(waiting_sms, 15)).json()] == [sms_id]


async def test_the_json_endpoints_are_documented_in_the_sinks_openapi(sink):
    async with _http(sink) as client:
        spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    params = {p["name"] for p in paths["/api/mails"]["get"]["parameters"]}
    assert {"to", "subject", "after", "limit", "wait"} <= params
    assert "404" in paths["/api/mails/{mail_id}"]["get"]["responses"]
    raw = paths["/mail/{mail_id}/raw"]["get"]["responses"]
    assert "404" in raw and list(raw["200"]["content"]) == ["text/plain"]
    assert {"to", "after", "wait"} <= {p["name"] for p in paths["/api/sms"]["get"]["parameters"]}
    assert "401" in paths["/sms"]["post"]["responses"]
    detail = spec["components"]["schemas"]["MailDetail"]["properties"]
    assert {"text", "html", "links", "headers", "raw_url"} <= detail.keys()


async def test_the_message_page_renders_html_sandboxed_and_folds_headers(sink):
    await asyncio.to_thread(_send, sink.smtp_port, to="ada@example.com", subject="Sandboxed")
    [mail] = await sink.wait_for_mail(subject_contains="Sandboxed")
    async with _http(sink) as client:
        page = await client.get(f"/mail/{mail.id}")
    frame = re.search(r"<iframe[^>]*>", page.text, re.S).group(0)
    sandbox = re.search(r'sandbox="([^"]*)"', frame).group(1).split()
    assert "allow-scripts" not in sandbox and "allow-same-origin" not in sandbox
    assert "script-src 'none'" in page.headers["content-security-policy"]
    assert re.search(
        r"<details[^>]*>\s*<summary>Show headers</summary>.*List-Unsubscribe", page.text, re.S
    )


async def test_mail_and_sms_survive_a_restart_on_the_same_folder(tmp_path):
    async with DevSink(smtp_port=0, http_port=0, sms_token=TOKEN, folder=tmp_path) as first:
        await asyncio.to_thread(
            _send_qp, first.smtp_port, to="zoe@example.com", subject="Confirmez"
        )
        [mail] = await first.wait_for_mail(to="zoe@example.com")
        async with _http(first) as client:
            sms_id = await _sms(client, "+33633333333", "code 1234", "kept-1")

    async with (
        DevSink(smtp_port=0, http_port=0, sms_token=TOKEN, folder=tmp_path) as second,
        _http(second) as client,
    ):
        [kept] = (await client.get("/api/mails", params={"to": "zoe@example.com"})).json()
        assert (kept["id"], kept["subject"]) == (mail.id, "Confirmez")
        assert CONFIRM_URL in (await client.get(f"/api/mails/{mail.id}")).json()["text"]
        assert (await client.get(f"/mail/{mail.id}/raw")).content == mail.raw
        assert "Confirmez" in (await client.get("/")).text
        assert [t["id"] for t in (await client.get("/api/sms")).json()] == [sms_id]
        assert (
            await _sms(client, "+33633333333", "resent", "kept-1") == sms_id
        )  # still deduplicated
        assert await _sms(client, "+33633333333", "new", "kept-2") != sms_id

        await asyncio.to_thread(_send, second.smtp_port, to="zoe@example.com", subject="Later")
        [later] = await second.wait_for_mail(subject_contains="Later")
        assert later.id > mail.id  # ids go on: a script's after= still works across the restart


async def test_only_the_newest_are_kept_on_disk_too(tmp_path, monkeypatch):
    monkeypatch.setattr(devsink, "MAX_KEPT", 2)
    async with DevSink(smtp_port=0, http_port=0, folder=tmp_path) as first:
        for n in range(3):
            await asyncio.to_thread(_send, first.smtp_port, to="ada@example.com", subject=f"n{n}")
            await first.wait_for_mail(subject_contains=f"n{n}")
    async with DevSink(smtp_port=0, http_port=0, folder=tmp_path) as second:
        assert [m.subject for m in second.mails] == ["n1", "n2"]


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"the sink did not listen on {port} within {timeout} s")


def test_make_runs_inbox_keeps_its_mail_in_the_data_folder(tmp_path):
    """`python -m relance.dev.devsink`, as `make run` starts it: stopped and started again, the
    confirmation mail is still in the inbox, and it lives under the data folder."""
    smtp_port, http_port = free_ports(2)
    env = {
        **os.environ,
        "RELANCE_DATA_DIR": str(tmp_path / "var"),
        "RELANCE_SMTP_PORT": str(smtp_port),
        "RELANCE_MAILSINK_HTTP_PORT": str(http_port),
        "RELANCE_SMS_API_TOKEN": "",
    }

    def run_sink() -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "relance.dev.devsink"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        _wait_for_port(http_port, process)
        return process

    process = run_sink()
    try:
        _send_qp(smtp_port, to="zoe@example.com", subject="Confirmez")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    assert (tmp_path / "var" / "inbox" / "inbox.sqlite3").exists()

    process = run_sink()
    try:
        [mail] = httpx.get(f"http://127.0.0.1:{http_port}/api/mails", timeout=5).json()
        assert mail["subject"] == "Confirmez"
        assert (
            CONFIRM_URL
            in httpx.get(f"http://127.0.0.1:{http_port}{mail['url']}", timeout=5).json()["text"]
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


async def test_the_readmes_script_finds_the_confirmation_link(sink):
    """The README's example, run as written (host and address aside): wait for the confirmation
    mail, then grep its link out of the JSON."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    script = (
        readme.split("To follow the confirmation link")[1].split("```sh\n", 1)[1].split("```", 1)[0]
    )
    script = script.replace("localhost:8025", f"127.0.0.1:{sink.http_port}").replace(
        "ada@example.com", "readme@example.com"
    )
    shell = await asyncio.create_subprocess_exec(
        "bash", "-c", script, stdout=asyncio.subprocess.PIPE
    )
    await asyncio.sleep(
        0
    )  # (only lets the script's wait start first; the outcome is awaited below)
    await asyncio.to_thread(
        _send_qp,
        sink.smtp_port,
        to="readme@example.com",
        subject="Please confirm",
        url="http://localhost:8000/confirm/" + "tok=en." * 20,
    )
    out, _ = await asyncio.wait_for(shell.communicate(), 40)
    assert out.decode().strip() == "http://localhost:8000/confirm/" + "tok=en." * 20

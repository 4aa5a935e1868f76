"""The dev outbox: a local SMTP server and SMS provider that keep everything they receive.

``make run`` starts it (``python -m relance.devsink``) so journeys can send real email and SMS
on a laptop without reaching anybody; the inbox page on ``mailsink_http_port`` shows what went out,
with the HTML rendered so the tracking pixel loads and links can be clicked. The test-suite starts
a :class:`DevSink` on port 0 and uses it as the real SMTP server and SMS provider::

    async with DevSink(smtp_port=0, http_port=0) as sink:
        ...  # point smtp_port / sms_provider_url at sink.smtp_port / sink.http_port
        [mail] = await sink.wait_for_mail(to="ada@example.com")

SMTP runs in aiosmtpd's own thread; the HTTP side (``POST /sms`` and the inbox pages) is a
uvicorn server running as a task in the caller's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import hmac
import html
import logging
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import HTMLResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from relance.serving import ServedApp, listening_socket

log = logging.getLogger("relance.devsink")

MAX_KEPT = 1000  # per kind; the oldest are dropped first
DROP_AFTER_ACCEPT = "drop-after-accept"


@dataclass
class ReceivedMail:
    id: int
    mail_from: str
    rcpt_tos: list[str]
    received_at: datetime
    message: EmailMessage
    raw: bytes = b""

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def to(self) -> str:
        return str(self.message["To"] or "")

    @property
    def headers(self) -> EmailMessage:
        """The parsed message itself: ``mail.headers["List-Unsubscribe"]``."""
        return self.message

    def _part(self, subtype: str) -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        return part.get_content() if part is not None else ""

    @property
    def html(self) -> str:
        return self._part("html")

    @property
    def text(self) -> str:
        return self._part("plain")


@dataclass
class ReceivedSms:
    id: str
    to: str
    sender: str
    body: str
    reference: str
    received_at: datetime


class SmsIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    to: str
    sender: str = Field(alias="from")
    body: str
    reference: str


class _SmtpHandler:
    def __init__(self, sink: DevSink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:  # noqa: N802
        refusal = self.sink._refusal_of(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        fault = self.sink._next_fault()
        if fault and fault != DROP_AFTER_ACCEPT:
            return fault  # an SMTP error reply: nothing is kept
        self.sink._store_mail(envelope.mail_from or "", list(envelope.rcpt_tos), raw)
        if fault == DROP_AFTER_ACCEPT:
            server.transport.close()  # accepted, but the client never hears it
        return "250 Message accepted for delivery"


class DevSink:
    def __init__(self, *, host: str = "127.0.0.1", smtp_port: int, http_port: int, sms_token: str = "",
                 smtputf8: bool = True):
        """``smtputf8``: offer SMTPUTF8 (mail to non-ASCII mailbox names, ``josé@...``), as modern
        servers do; False plays an older server."""
        self.host = host
        self.smtputf8 = smtputf8
        self._refused: dict[str, str] = {}  # see refuse
        self.smtp_port = smtp_port
        self.http_port = http_port
        self.sms_token = sms_token
        self.mails: list[ReceivedMail] = []
        self.sms: list[ReceivedSms] = []
        self._lock = threading.Lock()  # mails arrive on aiosmtpd's thread
        self._mail_seq = 0
        self._sms_seq = 0
        self._sms_by_reference: dict[str, str] = {}
        self.faults: list[str] = []  # see fail_next
        self._controller: Controller | None = None
        self._http: ServedApp | None = None
        self.app = self._build_app()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        # Bind here first: Controller cannot use port 0, and only reports a busy port after ready_timeout.
        with contextlib.closing(listening_socket(self.host, self.smtp_port)) as probe:
            self.smtp_port = probe.getsockname()[1]
        controller = Controller(
            _SmtpHandler(self), hostname=self.host, port=self.smtp_port,
            ready_timeout=5.0, server_hostname="localhost", enable_SMTPUTF8=self.smtputf8,
        )
        await asyncio.to_thread(controller.start)
        self._controller = controller
        try:
            self._http = ServedApp(self.app, host=self.host, port=self.http_port)
            self.http_port = self._http.port
            await self._http.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.stop()
            self._http = None
        if self._controller is not None:
            await asyncio.to_thread(self._controller.stop)
            self._controller = None

    async def __aenter__(self) -> DevSink:
        await self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()

    # -- a misbehaving server, to see what journeys do then ------------------------------------

    def fail_next(self, *faults: str) -> None:
        """Answer the next messages with these faults, in order: an SMTP reply such as
        ``"451 4.3.0 Try again later"`` or ``"550 5.1.1 No such mailbox"`` (nothing kept), or
        ``DROP_AFTER_ACCEPT`` (kept, then the connection closes before the reply)."""
        with self._lock:
            self.faults.extend(faults)

    def refuse(self, address: str, reply: str = "550 5.1.1 No such user") -> None:
        """Answer RCPT TO for this address with ``reply`` (a mailbox the server refuses)."""
        with self._lock:
            self._refused[address.lower()] = reply

    def _refusal_of(self, address: str) -> str | None:
        with self._lock:
            return self._refused.get(address.lower())

    def _next_fault(self) -> str | None:
        with self._lock:
            return self.faults.pop(0) if self.faults else None

    # -- storage -----------------------------------------------------------------------------

    def _store_mail(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> ReceivedMail:
        message = _parse_mail(raw)
        with self._lock:
            self._mail_seq += 1
            mail = ReceivedMail(self._mail_seq, mail_from, rcpt_tos, datetime.now(timezone.utc), message, raw)
            self.mails.append(mail)
            del self.mails[:-MAX_KEPT]
        log.info('mail sink: received "%s" for %s', mail.subject, ", ".join(rcpt_tos))
        return mail

    def _store_sms(self, sms: SmsIn) -> str:
        with self._lock:
            if sms.reference in self._sms_by_reference:
                return self._sms_by_reference[sms.reference]
            self._sms_seq += 1
            sms_id = f"sms-{self._sms_seq}"
            self._sms_by_reference[sms.reference] = sms_id
            self.sms.append(ReceivedSms(sms_id, sms.to, sms.sender, sms.body, sms.reference, datetime.now(timezone.utc)))
            del self.sms[:-MAX_KEPT]
        log.info("mail sink: SMS to %s accepted", sms.to)
        return sms_id

    def get_mail(self, mail_id: int) -> ReceivedMail | None:
        with self._lock:
            return next((m for m in self.mails if m.id == mail_id), None)

    def mails_to(self, address: str) -> list[ReceivedMail]:
        address = address.lower()
        with self._lock:
            return [m for m in self.mails if address in (r.lower() for r in m.rcpt_tos)]

    # -- waiting (tests) ---------------------------------------------------------------------

    async def wait_for_mail(
        self, *, to: str | None = None, subject_contains: str | None = None, count: int = 1, timeout: float = 10.0
    ) -> list[ReceivedMail]:
        def matches(m: ReceivedMail) -> bool:
            return (to is None or to.lower() in (r.lower() for r in m.rcpt_tos)) and (
                subject_contains is None or subject_contains in m.subject
            )

        def describe(m: ReceivedMail) -> str:
            return f"#{m.id} to {', '.join(m.rcpt_tos)}: {m.subject!r}"

        wanted = f"{count} mail(s)" + (f" to {to}" if to else "") + (
            f" with {subject_contains!r} in the subject" if subject_contains else ""
        )
        return await self._wait(self.mails, matches, describe, count, timeout, wanted)

    async def wait_for_sms(self, *, to: str | None = None, count: int = 1, timeout: float = 10.0) -> list[ReceivedSms]:
        return await self._wait(
            self.sms, lambda s: to is None or s.to == to, lambda s: f"{s.id} to {s.to}: {s.body!r}",
            count, timeout, f"{count} SMS" + (f" to {to}" if to else ""),
        )

    async def _wait(self, items, matches, describe, count, timeout, wanted):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with self._lock:
                snapshot = list(items)
            found = [item for item in snapshot if matches(item)]
            if len(found) >= count:
                return found
            if loop.time() >= deadline:
                received = "; ".join(describe(i) for i in snapshot) or "nothing"
                raise TimeoutError(f"waited {timeout}s for {wanted}, {len(found)} matched; received: {received}")
            await asyncio.sleep(0.02)

    # -- HTTP --------------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="Relance dev outbox", docs_url=None, redoc_url=None, openapi_url=None)

        @app.post("/sms")
        async def receive_sms(sms: SmsIn, authorization: str = Header(default="")) -> dict:
            if self.sms_token and not hmac.compare_digest(authorization, f"Bearer {self.sms_token}"):
                raise HTTPException(401, "bad or missing bearer token", headers={"WWW-Authenticate": "Bearer"})
            return {"id": self._store_sms(sms), "status": "accepted"}

        @app.get("/", response_class=HTMLResponse)
        async def inbox() -> str:
            with self._lock:
                mails, texts = list(reversed(self.mails)), list(reversed(self.sms))
            mail_rows = "".join(
                f'<tr><td>{_when(m.received_at)}</td><td>{_e(", ".join(m.rcpt_tos))}</td>'
                f'<td><a href="/mail/{m.id}">{_e(m.subject) or "(no subject)"}</a></td></tr>'
                for m in mails
            ) or '<tr><td colspan="3" class="none">No mail yet.</td></tr>'
            sms_rows = "".join(
                f"<tr><td>{_when(s.received_at)}</td><td>{_e(s.to)}</td><td>{_e(s.body)}</td></tr>" for s in texts
            ) or '<tr><td colspan="3" class="none">No SMS yet.</td></tr>'
            return _page(
                "Dev outbox",
                f"<h2>Mail ({len(mails)})</h2><table><tr><th>Received</th><th>To</th><th>Subject</th></tr>"
                f"{mail_rows}</table><h2>SMS ({len(texts)})</h2><table><tr><th>Received</th><th>To</th>"
                f"<th>Body</th></tr>{sms_rows}</table>",
                refresh=True,
            )

        @app.get("/mail/{mail_id}", response_class=HTMLResponse)
        async def show_mail(mail_id: int) -> str:
            mail = self._mail_or_404(mail_id)
            names = ("From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post")
            rows = "".join(f"<tr><th>{n}</th><td>{_e(str(mail.message[n] or ''))}</td></tr>" for n in names)
            body = f'<p><a href="/">&larr; inbox</a> · <a href="/mail/{mail.id}/raw">raw</a></p><table>{rows}</table>'
            if mail.html:
                # Links open in a new tab: tracked redirects usually land on sites that refuse framing.
                srcdoc = _e(_with_base_target(mail.html))
                body += f'<h2>HTML</h2><iframe title="HTML part" srcdoc="{srcdoc}"></iframe>'
            if mail.text:
                body += f"<h2>Text</h2><pre>{_e(mail.text)}</pre>"
            return _page(mail.subject or "(no subject)", body)

        @app.get("/mail/{mail_id}/raw", response_class=PlainTextResponse)
        async def raw_mail(mail_id: int) -> str:
            return self._mail_or_404(mail_id).raw.decode("utf-8", "replace")

        @app.get("/api/mails")
        async def list_mails() -> list[dict]:
            with self._lock:
                mails = list(self.mails)
            return [
                {"id": m.id, "to": m.rcpt_tos, "subject": m.subject, "received_at": m.received_at.isoformat()}
                for m in mails
            ]

        return app

    def _mail_or_404(self, mail_id: int) -> ReceivedMail:
        mail = self.get_mail(mail_id)
        if mail is None:
            raise HTTPException(404, f"no mail #{mail_id}")
        return mail


def _parse_mail(raw: bytes) -> EmailMessage:
    """The message as sent; headers in UTF-8 (SMTPUTF8, RFC 6532: ``To: José <josé@...>``) are read
    as UTF-8, which the byte parser alone does not do."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
    if not head.isascii():
        utf8 = email.message_from_string(head.decode("utf-8", "replace") + "\n\n", policy=email.policy.default)
        for name in {name.lower(): name for name, value in utf8.items() if not value.isascii()}.values():
            values = utf8.get_all(name)
            del message[name]
            for value in values:
                message[name] = str(value)
    return message


def _e(value: str) -> str:
    return html.escape(value, quote=True)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _with_base_target(document: str) -> str:
    base = '<base target="_blank">'
    head = re.search(r"<head\b[^>]*>", document, re.IGNORECASE)
    return document[: head.end()] + base + document[head.end() :] if head else base + document


_CSS = """body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:960px;padding:0 1rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #e4e4e4;vertical-align:top}
th{color:#555;font-weight:600;white-space:nowrap}td.none{color:#888}a{color:#0b5cad}
iframe{width:100%;height:640px;border:1px solid #ccc;border-radius:4px;background:#fff}
pre{white-space:pre-wrap;background:#f6f6f6;padding:1rem;border-radius:4px}"""


def _page(title: str, body: str, *, refresh: bool = False) -> str:
    meta = '<meta http-equiv="refresh" content="5">' if refresh else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}<title>{_e(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>{body}</body></html>"
    )


async def _serve_forever() -> int:
    import signal

    from relance.settings import get_settings

    settings = get_settings()
    sink = DevSink(smtp_port=settings.smtp_port, http_port=settings.mailsink_http_port, sms_token=settings.sms_api_token)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await sink.start()
    except OSError as exc:
        log.error("mail sink: cannot listen on %s (SMTP %s, inbox %s): %s",
                  sink.host, settings.smtp_port, settings.mailsink_http_port, exc)
        return 1
    log.info("mail sink: SMTP on %s:%s, inbox on http://%s:%s", sink.host, sink.smtp_port, sink.host, sink.http_port)
    try:
        await stopping.wait()
        log.info("mail sink: stopping")
    finally:
        await sink.stop()
    return 0


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP command at INFO
    try:
        return asyncio.run(_serve_forever())
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())

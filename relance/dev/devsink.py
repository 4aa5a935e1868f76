"""The dev outbox: a local SMTP server and SMS provider that keep everything they receive.

``make run`` starts it (``python -m relance.dev.devsink``) so journeys can send real email and SMS
on a laptop without reaching anybody. What it receives is kept in the data folder
(``var/inbox/inbox.sqlite3``), so a pending confirmation link is still there after a restart.
The inbox page on ``mailsink_http_port`` lists what went out, newest first, and shows one mail
with its HTML part rendered in a sandboxed frame (no scripts, its own opaque origin) so the
tracking pixel loads and links can be clicked. Scripts use the JSON API (``/api/mails``,
``/api/mails/{id}``, ``/api/sms``, described at ``/openapi.json``), where the text and HTML
parts are decoded: a link in a quoted-printable part can be grepped there.

The test-suite starts a :class:`DevSink` on port 0, in memory, and uses it as the real SMTP
server and SMS provider::

    async with DevSink(smtp_port=0, http_port=0) as sink:
        ...  # point smtp_port / sms_provider_url at sink.smtp_port / sink.http_port
        [mail] = await sink.wait_for_mail(to="ada@example.com")

SMTP runs in aiosmtpd's own thread; the HTTP side (``POST /sms``, the inbox pages and the JSON
API) is a uvicorn server running as a task in the caller's event loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email
import email.policy
import hmac
import json
import logging
import re
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Annotated

from aiosmtpd.controller import Controller
from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, Field

from relance.dev.serving import ServedApp, listening_socket

log = logging.getLogger("relance.dev.devsink")

MAX_KEPT = 1000  # per kind; the oldest are dropped first
MAX_WAIT_SECONDS = 60
DROP_AFTER_ACCEPT = "drop-after-accept"
TEMPLATES = Path(__file__).resolve().parent / "devsink_templates"

# The inbox pages run no script at all; a mail's HTML part inherits this policy in its srcdoc
# frame (and the frame's sandbox forbids scripts anyway): images and styles load, as in a
# mail client, so the tracking pixel is fetched when the mail is opened.
_PAGE_POLICY = (
    "default-src 'none'; script-src 'none'; object-src 'none'; img-src * data:; "
    "style-src 'unsafe-inline' *; font-src * data:; frame-src 'self'; form-action 'none'; "
    "frame-ancestors 'none'"
)


@dataclass
class ReceivedMail:
    id: int
    mail_from: str
    rcpt_tos: list[str]
    received_at: datetime
    message: EmailMessage
    raw: bytes = b""
    # The client's address and port: mails with the same came over one SMTP connection (not kept
    # across restarts).
    peer: str = ""

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def to(self) -> str:
        return str(self.message["To"] or "")

    @property
    def sender(self) -> str:
        """The From header as a reader sees it (``Relance <hello@...>``), else the envelope
        sender."""
        return str(self.message["From"] or self.mail_from)

    @property
    def headers(self) -> EmailMessage:
        """The parsed message itself: ``mail.headers["List-Unsubscribe"]``."""
        return self.message

    def _part(self, subtype: str) -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        return part.get_content() if part is not None else ""

    @property
    def html(self) -> str:
        """The HTML part, decoded (quoted-printable or base64 undone, in its charset)."""
        return self._part("html")

    @property
    def text(self) -> str:
        """The plain-text part, decoded."""
        return self._part("plain")

    @property
    def links(self) -> list[str]:
        """Every link target in the HTML part (href), then URLs in the text part; each once."""
        found = _hrefs(self.html) + _URL.findall(self.text)
        return list(dict.fromkeys(found))


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


# -- what the JSON API answers ----------------------------------------------------------------


class MailSummary(BaseModel):
    id: int = Field(description="Increasing: a later mail has a larger id, also across restarts.")
    sender: str = Field(alias="from", description="The From header (as decoded text).")
    to: list[str] = Field(description="The envelope recipients (RCPT TO).")
    subject: str
    received_at: datetime
    url: str = Field(description="This mail as JSON, with its decoded parts.")

    model_config = ConfigDict(populate_by_name=True)


class HeaderOut(BaseModel):
    name: str
    value: str = Field(description="Decoded (RFC 2047 encoded words undone).")


class MailDetail(MailSummary):
    envelope_from: str = Field(description="MAIL FROM, as the SMTP client gave it.")
    headers: list[HeaderOut] = Field(description="Every header, in order.")
    text: str | None = Field(description="The text/plain part, decoded; null when there is none.")
    html: str | None = Field(description="The text/html part, decoded; null when there is none.")
    links: list[str] = Field(
        description="Link targets in the HTML part, then URLs in the text part."
    )
    raw_url: str = Field(
        description="The message as received (.eml bytes, quoted-printable and all)."
    )


class SmsOut(BaseModel):
    id: str = Field(description="sms-N, N increasing, also across restarts.")
    to: str
    sender: str = Field(alias="from")
    body: str
    reference: str = Field(
        description="The sender's idempotency reference: a resend with it is not kept twice."
    )
    received_at: datetime

    model_config = ConfigDict(populate_by_name=True)


class SmsAccepted(BaseModel):
    id: str
    status: str = "accepted"


class ErrorOut(BaseModel):
    detail: str


def _summary(mail: ReceivedMail) -> MailSummary:
    return MailSummary(
        id=mail.id,
        sender=mail.sender,
        to=mail.rcpt_tos,
        subject=mail.subject,
        received_at=mail.received_at,
        url=f"/api/mails/{mail.id}",
    )


def _detail(mail: ReceivedMail) -> MailDetail:
    return MailDetail(
        **_summary(mail).model_dump(),
        envelope_from=mail.mail_from,
        headers=[HeaderOut(name=name, value=str(value)) for name, value in mail.message.items()],
        text=_lines(mail.text),
        html=_lines(mail.html),
        links=mail.links,
        raw_url=f"/mail/{mail.id}/raw",
    )


def _lines(part: str) -> str | None:
    """A decoded part with the wire's CRLF line ends as plain newlines (what grep and jq expect)."""
    return part.replace("\r\n", "\n") or None


def _sms_out(sms: ReceivedSms) -> SmsOut:
    return SmsOut(
        id=sms.id,
        to=sms.to,
        sender=sms.sender,
        body=sms.body,
        reference=sms.reference,
        received_at=sms.received_at,
    )


# -- keeping what arrived across restarts -----------------------------------------------------


class _Store:
    """The inbox on disk: one SQLite file holding each mail as received (raw bytes) and each SMS.
    A mail is written before SMTP answers 250, so what the sender was told is kept is kept."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "inbox.sqlite3"
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS mail (id INTEGER PRIMARY KEY, mail_from TEXT NOT NULL,
                rcpt_tos TEXT NOT NULL, received_at TEXT NOT NULL, raw BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS sms (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
                "to" TEXT NOT NULL, sender TEXT NOT NULL, body TEXT NOT NULL,
                reference TEXT NOT NULL UNIQUE, received_at TEXT NOT NULL);
        """)

    def load(self) -> tuple[list[ReceivedMail], list[ReceivedSms]]:
        mails = [
            ReceivedMail(
                id,
                mail_from,
                json.loads(rcpt_tos),
                datetime.fromisoformat(at),
                _parse_mail(raw),
                raw,
            )
            for id, mail_from, rcpt_tos, at, raw in self.db.execute(
                "SELECT id, mail_from, rcpt_tos, received_at, raw FROM mail ORDER BY id"
            )
        ]
        texts = [
            ReceivedSms(id, to, sender, body, reference, datetime.fromisoformat(at))
            for id, to, sender, body, reference, at in self.db.execute(
                'SELECT id, "to", sender, body, reference, received_at FROM sms ORDER BY seq'
            )
        ]
        return mails, texts

    def add_mail(self, mail: ReceivedMail, drop_up_to: int) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO mail VALUES (?, ?, ?, ?, ?)",
                (
                    mail.id,
                    mail.mail_from,
                    json.dumps(mail.rcpt_tos),
                    mail.received_at.isoformat(),
                    mail.raw,
                ),
            )
            self.db.execute("DELETE FROM mail WHERE id <= ?", (drop_up_to,))

    def add_sms(self, sms: ReceivedSms, seq: int, drop_up_to: int) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO sms VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    seq,
                    sms.id,
                    sms.to,
                    sms.sender,
                    sms.body,
                    sms.reference,
                    sms.received_at.isoformat(),
                ),
            )
            self.db.execute("DELETE FROM sms WHERE seq <= ?", (drop_up_to,))

    def close(self) -> None:
        self.db.close()


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
        peer = ":".join(str(part) for part in session.peer[:2]) if session.peer else ""
        self.sink._store_mail(envelope.mail_from or "", list(envelope.rcpt_tos), raw, peer)
        if fault == DROP_AFTER_ACCEPT:
            server.transport.close()  # accepted, but the client never hears it
        return "250 Message accepted for delivery"


class DevSink:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        smtp_port: int,
        http_port: int,
        sms_token: str = "",
        smtputf8: bool = True,
        folder: Path | None = None,
    ):
        """``smtputf8``: offer SMTPUTF8 (mail to non-ASCII mailbox names, ``josé@...``), as modern
        servers do; False plays an older server. ``folder``: keep what arrives there, and start
        with what an earlier sink on the same folder kept; None keeps everything in memory only."""
        self.host = host
        self.smtputf8 = smtputf8
        self.folder = folder
        self._refused: dict[str, str] = {}  # see refuse
        self.smtp_port = smtp_port
        self.http_port = http_port
        self.sms_token = sms_token
        self.mails: list[ReceivedMail] = []
        self.sms: list[ReceivedSms] = []
        self._lock = threading.Lock()  # mails arrive on aiosmtpd's thread
        # Every Message-ID received and how many times, kept beyond the last MAX_KEPT mails (a
        # benchmark of 100,000 messages counts its duplicates and missing ones here).
        self.message_ids: collections.Counter[str] = collections.Counter()
        self._mail_seq = 0
        self._sms_seq = 0
        self._sms_by_reference: dict[str, str] = {}
        self._store: _Store | None = None
        self.faults: list[str] = []  # see fail_next
        self._controller: Controller | None = None
        self._http: ServedApp | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arrived: asyncio.Event | None = None  # set (and replaced) whenever something arrives
        self._templates = Environment(
            loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True)
        )
        self._templates.filters["when"] = _when
        self.app = self._build_app()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()
        if self.folder is not None:
            self._open_store(self.folder)
        # Bind here first: Controller cannot use port 0, and only reports a busy port after
        # ready_timeout.
        with contextlib.closing(listening_socket(self.host, self.smtp_port)) as probe:
            self.smtp_port = probe.getsockname()[1]
        controller = Controller(
            _SmtpHandler(self),
            hostname=self.host,
            port=self.smtp_port,
            ready_timeout=5.0,
            server_hostname="localhost",
            enable_SMTPUTF8=self.smtputf8,
        )
        try:
            await asyncio.to_thread(controller.start)
            self._controller = controller
            self._http = ServedApp(self.app, host=self.host, port=self.http_port)
            self.http_port = self._http.port
            await self._http.start()
        except BaseException:
            await self.stop()
            raise

    def _open_store(self, folder: Path) -> None:
        store = _Store(folder)
        mails, texts = store.load()
        with self._lock:
            self._store = store
            self.mails, self.sms = mails, texts
            self._mail_seq = max((m.id for m in mails), default=0)
            self._sms_seq = max((_sms_number(s.id) for s in texts), default=0)
            self._sms_by_reference = {s.reference: s.id for s in texts}
        if mails or texts:
            log.info(
                "mail sink: %d mail(s) and %d SMS kept from before, in %s",
                len(mails),
                len(texts),
                store.path,
            )

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.stop()
            self._http = None
        if self._controller is not None:
            await asyncio.to_thread(self._controller.stop)
            self._controller = None
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

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

    def _store_mail(
        self, mail_from: str, rcpt_tos: list[str], raw: bytes, peer: str = ""
    ) -> ReceivedMail:
        message = _parse_mail(raw)
        with self._lock:
            self._mail_seq += 1
            mail = ReceivedMail(
                self._mail_seq, mail_from, rcpt_tos, datetime.now(UTC), message, raw, peer
            )
            if self._store is not None:
                self._store.add_mail(mail, drop_up_to=mail.id - MAX_KEPT)
            self.mails.append(mail)
            del self.mails[:-MAX_KEPT]
            self.message_ids[message.get("Message-ID", "")] += 1
        log.info('mail sink: received "%s" for %s', mail.subject, ", ".join(rcpt_tos))
        self._announce()
        return mail

    def _store_sms(self, sms: SmsIn) -> str:
        with self._lock:
            if sms.reference in self._sms_by_reference:
                return self._sms_by_reference[sms.reference]
            self._sms_seq += 1
            sms_id = f"sms-{self._sms_seq}"
            kept = ReceivedSms(
                sms_id, sms.to, sms.sender, sms.body, sms.reference, datetime.now(UTC)
            )
            if self._store is not None:
                self._store.add_sms(kept, self._sms_seq, drop_up_to=self._sms_seq - MAX_KEPT)
            self._sms_by_reference[sms.reference] = sms_id
            self.sms.append(kept)
            del self.sms[:-MAX_KEPT]
        log.info("mail sink: SMS to %s accepted", sms.to)
        self._announce()
        return sms_id

    def _announce(self) -> None:
        """Wake the HTTP requests waiting for something to arrive (mail comes on another thread)."""
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is closing: nobody is waiting
                self._loop.call_soon_threadsafe(self._wake_waiters)

    def _wake_waiters(self) -> None:
        arrived, self._arrived = self._arrived, asyncio.Event()
        if arrived is not None:
            arrived.set()

    def get_mail(self, mail_id: int) -> ReceivedMail | None:
        with self._lock:
            return next((m for m in self.mails if m.id == mail_id), None)

    def mails_to(self, address: str) -> list[ReceivedMail]:
        address = address.lower()
        with self._lock:
            return [m for m in self.mails if address in (r.lower() for r in m.rcpt_tos)]

    # -- waiting (tests) ---------------------------------------------------------------------

    async def wait_for_mail(
        self,
        *,
        to: str | None = None,
        subject_contains: str | None = None,
        count: int = 1,
        timeout: float = 10.0,
    ) -> list[ReceivedMail]:
        def matches(m: ReceivedMail) -> bool:
            return (to is None or to.lower() in (r.lower() for r in m.rcpt_tos)) and (
                subject_contains is None or subject_contains in m.subject
            )

        def describe(m: ReceivedMail) -> str:
            return f"#{m.id} to {', '.join(m.rcpt_tos)}: {m.subject!r}"

        wanted = (
            f"{count} mail(s)"
            + (f" to {to}" if to else "")
            + (f" with {subject_contains!r} in the subject" if subject_contains else "")
        )
        return await self._wait(self.mails, matches, describe, count, timeout, wanted)

    async def wait_for_sms(
        self, *, to: str | None = None, count: int = 1, timeout: float = 10.0
    ) -> list[ReceivedSms]:
        return await self._wait(
            self.sms,
            lambda s: to is None or s.to == to,
            lambda s: f"{s.id} to {s.to}: {s.body!r}",
            count,
            timeout,
            f"{count} SMS" + (f" to {to}" if to else ""),
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
                raise TimeoutError(
                    f"waited {timeout}s for {wanted}, {len(found)} matched; received: {received}"
                )
            await asyncio.sleep(0.02)

    async def _newest_matching(self, kind: str, matches, limit: int, wait: float) -> list:
        """Newest first; when nothing matches yet, wait up to ``wait`` seconds for a match."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            arrived = (
                self._arrived
            )  # taken before looking, so nothing arriving in between is missed
            with self._lock:
                found = [item for item in reversed(getattr(self, kind)) if matches(item)][:limit]
            remaining = deadline - loop.time()
            if found or remaining <= 0 or arrived is None:
                return found
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), remaining)

    # -- HTTP --------------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI(
            title="Relance dev outbox",
            description=(
                "What `make run` sends, kept instead of delivered: mail over SMTP (port "
                "`smtp_port`), "
                "SMS through `POST /sms` (the SMS provider API Relance speaks). Lists are newest "
                "first; "
                "text and HTML parts are decoded. A script waiting for a mail asks "
                "`GET /api/mails?to=ada@example.com&wait=30`: the answer comes as soon as one "
                "matches."
            ),
            docs_url=None,
            redoc_url=None,
            openapi_url="/openapi.json",
        )
        not_found = {404: {"model": ErrorOut, "description": "No such mail (or no longer kept)."}}

        @app.middleware("http")
        async def page_policy(request: Request, call_next):
            response = await call_next(request)
            response.headers["X-Content-Type-Options"] = (
                "nosniff"  # a raw mail is text, never a page
            )
            if response.headers.get("content-type", "").startswith("text/html"):
                response.headers["Content-Security-Policy"] = _PAGE_POLICY
            return response

        @app.post(
            "/sms",
            response_model=SmsAccepted,
            tags=["provider"],
            responses={
                401: {
                    "model": ErrorOut,
                    "description": "Bearer token missing or wrong "
                    "(only when the sink was started with one).",
                }
            },
        )
        async def receive_sms(sms: SmsIn, authorization: str = Header(default="")) -> SmsAccepted:
            """The SMS provider API: accept one SMS. A resend with the same `reference` is not
            kept twice and answers the first one's id."""
            if self.sms_token and not hmac.compare_digest(
                authorization, f"Bearer {self.sms_token}"
            ):
                raise HTTPException(
                    401, "bad or missing bearer token", headers={"WWW-Authenticate": "Bearer"}
                )
            return SmsAccepted(id=self._store_sms(sms))

        @app.get(
            "/api/mails",
            response_model=list[MailSummary],
            response_model_by_alias=True,
            tags=["inbox"],
        )
        async def list_mails(
            to: Annotated[
                str | None,
                Query(
                    description="Only mail to this address (an envelope "
                    "recipient, case-insensitive)."
                ),
            ] = None,
            subject: Annotated[
                str | None,
                Query(description="Only mail whose subject contains this (case-insensitive)."),
            ] = None,
            after: Annotated[
                int | None, Query(ge=0, description="Only mail newer than this id.")
            ] = None,
            limit: Annotated[int, Query(ge=1, le=MAX_KEPT)] = 100,
            wait: Annotated[
                float,
                Query(
                    ge=0,
                    le=MAX_WAIT_SECONDS,
                    description=(
                        "When nothing matches yet, wait up to this many seconds for a matching "
                        "mail to "
                        "arrive, then answer (an empty list if none came)."
                    ),
                ),
            ] = 0,
        ) -> list[MailSummary]:
            """Mail received, newest first, with the filters given."""

            def matches(m: ReceivedMail) -> bool:
                return (
                    (to is None or to.lower() in (r.lower() for r in m.rcpt_tos))
                    and (subject is None or subject.lower() in m.subject.lower())
                    and (after is None or m.id > after)
                )

            return [_summary(m) for m in await self._newest_matching("mails", matches, limit, wait)]

        @app.get(
            "/api/mails/{mail_id}",
            response_model=MailDetail,
            response_model_by_alias=True,
            tags=["inbox"],
            responses=not_found,
        )
        async def mail_as_json(mail_id: int) -> MailDetail:
            """One mail with every header and its text and HTML parts decoded, and the links in
            it."""
            return _detail(self._mail_or_404(mail_id))

        @app.get(
            "/mail/{mail_id}/raw",
            tags=["inbox"],
            response_class=PlainTextResponse,
            responses={**not_found, 200: {"description": "The .eml bytes as received."}},
        )
        async def raw_mail(mail_id: int) -> Response:
            """The message exactly as received over SMTP (an .eml file; parts stay encoded)."""
            mail = self._mail_or_404(mail_id)
            return Response(
                mail.raw,
                media_type="text/plain; charset=utf-8",
                headers={"Content-Disposition": f'inline; filename="mail-{mail.id}.eml"'},
            )

        @app.get(
            "/api/sms", response_model=list[SmsOut], response_model_by_alias=True, tags=["inbox"]
        )
        async def list_sms(
            to: Annotated[
                str | None, Query(description="Only SMS to this number (as sent, E.164).")
            ] = None,
            after: Annotated[
                int | None, Query(ge=0, description="Only SMS newer than sms-N.")
            ] = None,
            limit: Annotated[int, Query(ge=1, le=MAX_KEPT)] = 100,
            wait: Annotated[
                float,
                Query(
                    ge=0,
                    le=MAX_WAIT_SECONDS,
                    description=("When nothing matches yet, wait up to this many seconds for one."),
                ),
            ] = 0,
        ) -> list[SmsOut]:
            """SMS received, newest first."""

            def matches(s: ReceivedSms) -> bool:
                return (to is None or s.to == to) and (after is None or _sms_number(s.id) > after)

            return [_sms_out(s) for s in await self._newest_matching("sms", matches, limit, wait)]

        @app.get("/", response_class=HTMLResponse, include_in_schema=False)
        async def inbox() -> str:
            with self._lock:
                mails, texts = list(reversed(self.mails)), list(reversed(self.sms))
            return self._render(
                "inbox.html",
                title="Dev inbox",
                mails=mails,
                texts=texts,
                smtp_port=self.smtp_port,
                refresh=True,
            )

        @app.get("/mail/{mail_id}", response_class=HTMLResponse, include_in_schema=False)
        async def show_mail(mail_id: int) -> str:
            mail = self._mail_or_404(mail_id)
            # Links open in a new tab: tracked redirects usually land on sites that refuse framing.
            html_part = _with_base_target(mail.html) if mail.html else ""
            return self._render(
                "mail.html", title=mail.subject or "(no subject)", mail=mail, html_part=html_part
            )

        return app

    def _render(self, name: str, **context) -> str:
        return self._templates.get_template(name).render(**context)

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
        utf8 = email.message_from_string(
            head.decode("utf-8", "replace") + "\n\n", policy=email.policy.default
        )
        for name in {
            name.lower(): name for name, value in utf8.items() if not value.isascii()
        }.values():
            values = utf8.get_all(name)
            del message[name]
            for value in values:
                message[name] = str(value)
    return message


def _sms_number(sms_id: str) -> int:
    return int(sms_id.removeprefix("sms-"))


_URL = re.compile(r"https?://[^\s<>\"')\]]+")


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "a":
            self.found += [value for name, value in attrs if name == "href" and value]


def _hrefs(document: str) -> list[str]:
    parser = _Hrefs()
    parser.feed(document)
    parser.close()
    return parser.found


def _when(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _with_base_target(document: str) -> str:
    base = '<base target="_blank">'
    head = re.search(r"<head\b[^>]*>", document, re.IGNORECASE)
    return document[: head.end()] + base + document[head.end() :] if head else base + document


async def _serve_forever() -> int:
    import signal

    from relance.domain.settings import get_settings

    settings = get_settings()
    sink = DevSink(
        smtp_port=settings.smtp_port,
        http_port=settings.mailsink_http_port,
        sms_token=settings.sms_api_token,
        folder=settings.data_dir / "inbox",
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await sink.start()
    except OSError as exc:
        log.error(
            "mail sink: cannot listen on %s (SMTP %s, inbox %s): %s",
            sink.host,
            settings.smtp_port,
            settings.mailsink_http_port,
            exc,
        )
        return 1
    log.info(
        "mail sink: SMTP on %s:%s, inbox on http://%s:%s (kept in %s)",
        sink.host,
        sink.smtp_port,
        sink.host,
        sink.http_port,
        sink.folder,
    )
    try:
        await stopping.wait()
        log.info("mail sink: stopping")
    finally:
        await sink.stop()
    return 0


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("mail.log").setLevel(
        logging.WARNING
    )  # aiosmtpd logs every SMTP command at INFO
    try:
        return asyncio.run(_serve_forever())
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Email over the configured SMTP server: journey emails (activities/email.py), the sales task
notices (activities/sales.py) and the MQL notification to the sales inbox
(relance/services/mql.py) alike.

Connections are reused: each process keeps a few open to the server (``SmtpPool``) and sends
message after message over them, instead of connecting, greeting, STARTTLS and logging in for
each. A connection is retired after ``RELANCE_SMTP_CONNECTION_MAX_MESSAGES`` messages or
``RELANCE_SMTP_CONNECTION_MAX_AGE_SECONDS``, and at once after any failure. A kept connection
the server has closed meanwhile (its idle timeout, a restart) is found when the next message is
announced, before anything of the message went out: that message goes over a new connection
instead, once, so it is neither lost nor sent twice.

A failure is a ``SendFailure`` that says what a retry can do: ``permanent`` when none can fix it
(a recipient refused for good, a 5xx answer, a non-ASCII mailbox and no SMTPUTF8),
``maybe_delivered`` when the connection ended after the message went out. A refusal of the mail
settings themselves (STARTTLS, login, the sender address) is retried: a wrong password makes the
sends wait for the operator's fix, it does not fail every message for good.
"""

from __future__ import annotations

import smtplib
import threading
import time
from email.message import EmailMessage
from email.utils import parseaddr

from relance.contracts.sending import SendFailure
from relance.domain.settings import Settings

IDLE_KEPT = 8  # connections kept open between messages, per server and process


class _SMTP(smtplib.SMTP):
    """smtplib's client, noting how far the conversation went: whether the server answered the
    connection, and whether the message itself went out (the server said 354 to DATA); and how
    old the connection is and how many messages it carried."""

    connected = False
    content_sent = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.opened_at = time.monotonic()
        self.messages = 0

    def connect(self, *args, **kwargs):
        reply = super().connect(*args, **kwargs)
        self.connected = True
        return reply

    def getreply(self):
        code, message = super().getreply()
        if code == 354:
            self.content_sent = (
                True  # what follows is the message: from now on the server may keep it
            )
        return code, message


class SmtpPool:
    """Open connections to the configured SMTP server, shared by the threads of one process
    (activities run in a thread pool): a connection serves one message at a time, taken from
    the pool and put back once the server accepted the message."""

    def __init__(self, s: Settings) -> None:
        self.settings = s
        self._idle: list[_SMTP] = []
        self._lock = threading.Lock()
        self.opened = 0  # connections opened so far (for the tests and the benchmark)

    def deliver(self, mime: EmailMessage | bytes, to: str, sender: str = "") -> None:
        """One message (see ``deliver``); ``sender``: the envelope sender of a message handed
        over as bytes."""
        smtp = self._take()
        if smtp is not None:
            try:
                self._send(smtp, mime, to, sender)
            except _Stale:
                smtp.close()  # closed by the server while kept: nothing of the message went out
            else:
                self._put_back(smtp)
                return
        smtp = self._connect()
        self._send(smtp, mime, to, sender)
        self._put_back(smtp)

    def close(self) -> None:
        """QUIT every kept connection."""
        with self._lock:
            idle, self._idle = self._idle, []
        for smtp in idle:
            _hang_up(smtp)

    def _take(self) -> _SMTP | None:
        """A kept connection still young enough, or None."""
        while True:
            with self._lock:
                if not self._idle:
                    return None
                smtp = self._idle.pop()
            if self._usable(smtp):
                return smtp
            _hang_up(smtp)

    def _usable(self, smtp: _SMTP) -> bool:
        s = self.settings
        return (
            smtp.messages < s.smtp_connection_max_messages
            and time.monotonic() - smtp.opened_at < s.smtp_connection_max_age_seconds
        )

    def _put_back(self, smtp: _SMTP) -> None:
        smtp.content_sent = False
        if self._usable(smtp):
            with self._lock:
                if len(self._idle) < IDLE_KEPT:
                    self._idle.append(smtp)
                    return
        _hang_up(smtp)

    def _connect(self) -> _SMTP:
        s = self.settings
        smtp = _SMTP(timeout=s.smtp_timeout_seconds)
        try:
            smtp.connect(s.smtp_host, s.smtp_port)
            _set_up(smtp, s)
        except SendFailure:
            smtp.close()
            raise
        except (OSError, smtplib.SMTPException) as err:
            smtp.close()
            if not smtp.connected:
                raise SendFailure(f"could not reach the mail server: {_describe(err)}") from err
            raise SendFailure(
                f"the mail server ended the connection before taking the message: {_describe(err)}"
            ) from err
        with self._lock:
            self.opened += 1
        return smtp

    def _send(self, smtp: _SMTP, mime: EmailMessage | bytes, to: str, sender: str) -> None:
        """The message over ``smtp``; raises SendFailure, or _Stale when a kept connection turns
        out closed by the server before anything of the message went out. After a failure the
        conversation's state is unknown: the connection is closed, never reused."""
        try:
            if isinstance(mime, bytes):  # written already, headers in ASCII (services/mime.py)
                smtp.sendmail(sender, [to], mime)
            else:
                smtp.send_message(mime, to_addrs=[to])
        except (OSError, smtplib.SMTPException, UnicodeEncodeError) as err:
            smtp.close()
            if smtp.messages > 0 and not smtp.content_sent and _closed_by_server(err):
                raise _Stale from err
            raise _failure(err, smtp, to) from err
        smtp.messages += 1


def _closed_by_server(err: BaseException) -> bool:
    """The server hung up (or said 421, closing) before the message: what a kept connection
    meets after the server's idle timeout or restart."""
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        return any(code == 421 for code, _ in err.recipients.values())
    if isinstance(err, smtplib.SMTPResponseException):
        return err.smtp_code == 421
    return isinstance(err, OSError | smtplib.SMTPServerDisconnected)


def _failure(err: BaseException, smtp: _SMTP, to: str) -> SendFailure:
    """What a failed send means for the message, and for its retries."""
    if isinstance(err, smtplib.SMTPSenderRefused):  # our sender address: the settings
        return SendFailure(
            f"SMTP {err.smtp_code}: the mail server refuses the sender {err.sender!r} "
            f"({_text(err.smtp_error)}); check RELANCE_MAIL_FROM"
        )
    if isinstance(err, smtplib.SMTPNotSupportedError):
        return SendFailure(
            f"the address {to} has a non-ASCII mailbox name and the mail server does not offer "
            f"SMTPUTF8, which it needs ({err})",
            permanent=True,
        )
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        code, answer = next(iter(err.recipients.values()))
        return SendFailure(
            f"SMTP {code}: recipient refused: {_text(answer)}", permanent=500 <= code < 600
        )
    if isinstance(err, smtplib.SMTPResponseException):  # an answer: the server did not take it
        return SendFailure(
            f"SMTP {err.smtp_code}: {_text(err.smtp_error)}", permanent=500 <= err.smtp_code < 600
        )
    if isinstance(err, UnicodeEncodeError):
        return SendFailure(
            f"the message cannot be encoded for the mail server: {err}", permanent=True
        )
    if smtp.content_sent:  # refused, timed out, dropped: after the message went out
        return SendFailure(
            f"the connection to the mail server ended after the message went out: {_describe(err)}",
            maybe_delivered=True,
        )
    return SendFailure(
        f"the mail server ended the connection before taking the message: {_describe(err)}"
    )


class _Stale(Exception):
    """A kept connection the server had closed: the message did not go out over it."""


POOLS_KEPT = 4  # servers (or accounts) a process keeps connections to; one in production
_pools: dict[tuple, SmtpPool] = {}  # oldest first
_pools_lock = threading.Lock()


def pool_for(s: Settings) -> SmtpPool:
    """This process's pool for the server and account the settings name (a process that
    changes its mail settings hangs up the oldest server's connections)."""
    key = (
        s.smtp_host,
        s.smtp_port,
        s.smtp_username,
        s.smtp_password,
        s.smtp_starttls,
        s.smtp_timeout_seconds,
        s.smtp_connection_max_messages,
        s.smtp_connection_max_age_seconds,
    )
    retired = []
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = SmtpPool(s)
            while len(_pools) > POOLS_KEPT:
                retired.append(_pools.pop(next(iter(_pools))))
    for old in retired:
        old.close()
    return pool


def deliver(s: Settings, mime: EmailMessage | bytes, to: str) -> None:
    """One message over the configured SMTP server (journey emails and internal emails alike),
    over a connection of this process's pool: an ``EmailMessage``, or its bytes as sent (CRLF
    line ends, ASCII headers: relance/services/mime.py).

    Raises SendFailure: ``permanent`` when no retry can fix it, ``maybe_delivered`` when the
    message went out but the server's answer never came."""
    # The envelope sender: the From address, as ``send_message`` takes it from the From header.
    sender = parseaddr(s.mail_from)[1] if isinstance(mime, bytes) else ""
    pool_for(s).deliver(mime, to, sender)


def _set_up(smtp: smtplib.SMTP, s: Settings) -> None:
    """STARTTLS and login as configured. A refusal here is about the mail settings (a wrong
    password, a server without STARTTLS or AUTH), never about the message: it is retried, so
    the messages wait for the operator's fix instead of being failed for good, one by one."""
    try:
        if s.smtp_starttls:
            smtp.starttls()
        if s.smtp_username:
            smtp.login(s.smtp_username, s.smtp_password)
    except (smtplib.SMTPNotSupportedError, smtplib.SMTPResponseException) as err:
        raise SendFailure(
            "the mail server refused the STARTTLS or login the settings ask for "
            f"({_describe(err)}); "
            "check RELANCE_SMTP_STARTTLS, _USERNAME and _PASSWORD; will retry"
        ) from err


def _hang_up(smtp: smtplib.SMTP) -> None:
    """QUIT, quietly: once the server accepted the messages, how the goodbye goes changes
    nothing."""
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


def _text(answer: bytes | str) -> str:
    return answer.decode(errors="replace") if isinstance(answer, bytes) else str(answer)


def _describe(err: BaseException) -> str:
    return str(err) or type(err).__name__

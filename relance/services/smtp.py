"""One email over the configured SMTP server: journey emails (activities/email.py), the sales
task notices (activities/sales.py) and the MQL notification to the sales inbox
(relance/services/mql.py) alike.

A failure is a ``SendFailure`` that says what a retry can do: ``permanent`` when none can fix it
(a recipient refused for good, a 5xx answer, a non-ASCII mailbox and no SMTPUTF8),
``maybe_delivered`` when the connection ended after the message went out. A refusal of the mail
settings themselves (STARTTLS, login, the sender address) is retried: a wrong password makes the
sends wait for the operator's fix, it does not fail every message for good.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from relance.contracts.sending import SendFailure
from relance.domain.settings import Settings


class _SMTP(smtplib.SMTP):
    """smtplib's client, noting how far the conversation went: whether the server answered the
    connection, and whether the message itself went out (the server said 354 to DATA)."""

    connected = False
    content_sent = False

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


def deliver(s: Settings, mime: EmailMessage, to: str) -> None:
    """One message over the configured SMTP server (journey emails and internal emails alike).

    Raises SendFailure: ``permanent`` when no retry can fix it, ``maybe_delivered`` when the
    message went out but the server's answer never came."""
    smtp = _SMTP(timeout=s.smtp_timeout_seconds)
    try:
        smtp.connect(s.smtp_host, s.smtp_port)
        _set_up(smtp, s)
        smtp.send_message(mime, to_addrs=[to])
    except SendFailure:
        raise
    except smtplib.SMTPSenderRefused as err:  # our sender address: the settings, not this message
        raise SendFailure(
            f"SMTP {err.smtp_code}: the mail server refuses the sender {err.sender!r} "
            f"({_text(err.smtp_error)}); check RELANCE_MAIL_FROM"
        ) from err
    except smtplib.SMTPNotSupportedError as err:
        raise SendFailure(
            f"the address {to} has a non-ASCII mailbox name and the mail server does not offer "
            f"SMTPUTF8, which it needs ({err})",
            permanent=True,
        ) from err
    except smtplib.SMTPRecipientsRefused as err:
        code, answer = next(iter(err.recipients.values()))
        raise SendFailure(
            f"SMTP {code}: recipient refused: {_text(answer)}", permanent=500 <= code < 600
        ) from err
    except smtplib.SMTPResponseException as err:  # an answer: the server did not take the message
        raise SendFailure(
            f"SMTP {err.smtp_code}: {_text(err.smtp_error)}", permanent=500 <= err.smtp_code < 600
        ) from err
    except UnicodeEncodeError as err:
        raise SendFailure(
            f"the message cannot be encoded for the mail server: {err}", permanent=True
        ) from err
    except (OSError, smtplib.SMTPException) as err:  # refused, timed out, dropped
        if smtp.content_sent:
            raise SendFailure(
                f"the connection to the mail server ended after the message went out: {_describe(err)}",
                maybe_delivered=True,
            ) from err
        if not smtp.connected:
            raise SendFailure(f"could not reach the mail server: {_describe(err)}") from err
        raise SendFailure(
            f"the mail server ended the connection before taking the message: {_describe(err)}"
        ) from err
    else:
        _hang_up(smtp)
    finally:
        smtp.close()


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
            f"the mail server refused the STARTTLS or login the settings ask for ({_describe(err)}); "
            "check RELANCE_SMTP_STARTTLS, _USERNAME and _PASSWORD; will retry"
        ) from err


def _hang_up(smtp: smtplib.SMTP) -> None:
    """QUIT, quietly: once the server accepted the message, how the goodbye goes changes nothing."""
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        pass


def _text(answer: bytes | str) -> str:
    return answer.decode(errors="replace") if isinstance(answer, bytes) else str(answer)


def _describe(err: BaseException) -> str:
    return str(err) or type(err).__name__

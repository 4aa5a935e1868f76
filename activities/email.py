"""Send one journey email over SMTP: render, check consent, send once.

The message is real MIME (text and HTML alternatives) with a stable ``Message-ID`` derived
from the message row, a tracking pixel, click-tracked links and RFC 8058 one-click
unsubscribe headers.

Addresses are sent as the mail system expects them: an internationalised domain in its ASCII
(IDNA) form, which any server takes; a non-ASCII mailbox name (``josé@...``) with SMTPUTF8 when
the server offers it. A send that no retry can fix (an address that is not one, a non-ASCII
mailbox and no SMTPUTF8, a recipient refused for good, a 5xx answer) is recorded ``failed``
with its reason and the journey goes on; connection failures, timeouts and 4xx answers are
retried by Temporal, and the row says whether the message may have gone out meanwhile. So is a
refusal of the mail settings themselves (STARTTLS, login, the sender address): a wrong password
makes the sends wait for the operator's fix, it does not fail every message for good.
"""

from __future__ import annotations

import smtplib
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate
from functools import partial

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.engine import Engine
from temporalio import activity

from activities.frequency import FrequencyCap
from activities.sending import SendFailure, SendLedger, SendRequest, SendResult
from relance.domain.models import Lead
from relance.domain.rendering import Renderer, Tracking, header_text
from relance.domain.settings import Settings
from relance.services.journeys import rules_for


def template_context(settings: Settings, lead: Lead) -> dict:
    """What a template may use about the lead and the brand."""
    return {
        "first_name": lead.first_name,
        "locale": lead.locale,
        "brand_name": settings.brand_name,
        "site_url": settings.site_url.rstrip("/"),
    }


def recipient(email: str, name: str | None = None) -> Address:
    """The address to send to, as the mail system wants it: the domain in ASCII (IDNA) whenever
    the mailbox name is ASCII; else as written (it then needs SMTPUTF8). Raises a permanent
    SendFailure when the stored address is not an email address at all."""
    try:
        valid = validate_email(
            email,
            check_deliverability=False,
            allow_smtputf8=True,
            globally_deliverable=False,
            test_environment=True,
        )  # the syntax only: whether it is deliverable is the server's say
    except EmailNotValidError as err:
        raise SendFailure(f"{email!r} is not a valid email address: {err}", permanent=True) from err
    local, _, domain = (valid.ascii_email or valid.normalized).rpartition("@")
    return Address(display_name=header_text(name or ""), username=local, domain=domain)


class EmailActivities:
    def __init__(self, settings: Settings, engine: Engine, renderer: Renderer) -> None:
        self.settings = settings
        self.ledger = SendLedger(
            engine,
            FrequencyCap(settings.frequency_cap_messages, settings.frequency_cap_days),
            suppression_key=settings.suppression_hash_key,
            rules=partial(rules_for, settings),
        )
        self.renderer = renderer

    @activity.defn(name="send_email")
    def send_email(self, request: SendRequest) -> SendResult:
        claim = self.ledger.claim(request, "email")
        if claim.result is not None:
            activity.logger.info(
                "email %s for step %s: %s %s",
                claim.result.message_id,
                request.step,
                claim.result.status,
                claim.result.reason or "(already sent)",
            )
            return claim.result
        message, lead = claim.message, claim.lead
        try:
            to = recipient(lead.email, lead.first_name)
            tracking = Tracking(message.id, lead.id, request.workflow_id)
            context = {**template_context(self.settings, lead), **claim.extras.context}
            rendered = self.renderer.email(request.template, context, tracking)
            mime = self._mime(request, message.id, to, rendered, claim.extras.attachments)
            self._deliver(mime, to.addr_spec)
        except SendFailure as failure:
            return self.ledger.failed_or_retried(message, failure, channel="email")
        activity.logger.info(
            "email %s sent for %s step %s", message.id, request.journey, request.step
        )
        return self.ledger.mark_sent(message, subject=rendered.subject)

    def _mime(
        self, request: SendRequest, message_id: str, to: Address, rendered, attachments
    ) -> EmailMessage:
        mime = EmailMessage()
        try:
            mime["From"] = self.settings.mail_from
            mime["To"] = to
            mime["Subject"] = rendered.subject
            mime["Date"] = formatdate(localtime=False)
            mime["Message-ID"] = f"<{message_id}@{self.settings.mail_domain}>"
            # The one-click link does the unsubscribe; the mailto is only an address a person may write
            # to, and Relance reads no mailbox: empty, no mailto is offered (README, Unsubscribe).
            unsubscribe = f"<{rendered.unsubscribe_url}>"
            if self.settings.unsubscribe_mailto:
                unsubscribe += f", <mailto:{self.settings.unsubscribe_mailto}?subject=unsubscribe-{message_id}>"
            mime["List-Unsubscribe"] = unsubscribe
            mime["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            mime["X-Relance-Journey"] = f"{request.journey}/{request.step}"
        except (
            ValueError
        ) as err:  # the rendering keeps lead data out of headers; this is the last guard
            raise SendFailure(
                f"the message has a header that cannot be sent: {err}", permanent=True
            ) from err
        mime.set_content(rendered.text)
        mime.add_alternative(rendered.html, subtype="html")
        for attachment in attachments:
            maintype, _, subtype = attachment.content_type.partition("/")
            mime.add_attachment(
                attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename
            )
        return mime

    def _deliver(self, mime: EmailMessage, to: str) -> None:
        deliver(self.settings, mime, to)


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

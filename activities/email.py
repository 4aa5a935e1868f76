"""Send one journey email over SMTP: render, check consent, send once.

The message is real MIME (text and HTML alternatives) with a stable ``Message-ID`` derived
from the message row, a tracking pixel, click-tracked links and RFC 8058 one-click
unsubscribe headers.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import formataddr, formatdate

from sqlalchemy.engine import Engine
from temporalio import activity

from activities.frequency import FrequencyCap
from activities.sending import SendLedger, SendRequest, SendResult
from relance.models import Lead
from relance.rendering import Renderer, Tracking
from relance.settings import Settings


def template_context(settings: Settings, lead: Lead) -> dict:
    """What a template may use about the lead and the brand."""
    return {
        "first_name": lead.first_name,
        "locale": lead.locale,
        "brand_name": settings.brand_name,
        "site_url": settings.site_url.rstrip("/"),
    }


class EmailActivities:
    def __init__(self, settings: Settings, engine: Engine, renderer: Renderer) -> None:
        self.settings = settings
        self.ledger = SendLedger(engine, FrequencyCap(settings.frequency_cap_messages, settings.frequency_cap_days),
                                 suppression_key=settings.suppression_hash_key, rules=settings.rules_for)
        self.renderer = renderer

    @activity.defn(name="send_email")
    def send_email(self, request: SendRequest) -> SendResult:
        claim = self.ledger.claim(request, "email")
        if claim.result is not None:
            activity.logger.info("email %s for step %s: %s %s", claim.result.message_id, request.step,
                                 claim.result.status, claim.result.reason or "(already sent)")
            return claim.result
        message, lead = claim.message, claim.lead
        tracking = Tracking(message.id, lead.id, request.workflow_id)
        context = {**template_context(self.settings, lead), **claim.extras.context}
        rendered = self.renderer.email(request.template, context, tracking)

        mime = EmailMessage()
        mime["From"] = self.settings.mail_from
        mime["To"] = formataddr((lead.first_name or "", lead.email))
        mime["Subject"] = rendered.subject
        mime["Date"] = formatdate(localtime=False)
        mime["Message-ID"] = f"<{message.id}@{self.settings.mail_domain}>"
        mime["List-Unsubscribe"] = f"<{rendered.unsubscribe_url}>, <mailto:{self.settings.unsubscribe_mailto}?subject=unsubscribe-{message.id}>"
        mime["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        mime["X-Relance-Journey"] = f"{request.journey}/{request.step}"
        mime.set_content(rendered.text)
        mime.add_alternative(rendered.html, subtype="html")
        for attachment in claim.extras.attachments:
            maintype, _, subtype = attachment.content_type.partition("/")
            mime.add_attachment(attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename)

        try:
            self._deliver(mime, lead.email)
        except smtplib.SMTPResponseException as err:
            if 500 <= err.smtp_code < 600:  # permanent: retrying will not help; the journey goes on without it
                activity.logger.warning("email %s refused by the SMTP server: %s", message.id, err.smtp_code)
                return self.ledger.mark_failed(message, f"SMTP {err.smtp_code}: {err.smtp_error.decode(errors='replace')}")
            raise  # 4xx, connection refused or dropped: Temporal retries with backoff
        activity.logger.info("email %s sent for %s step %s", message.id, request.journey, request.step)
        return self.ledger.mark_sent(message, subject=rendered.subject)

    def _deliver(self, mime: EmailMessage, to: str) -> None:
        deliver(self.settings, mime, to)


def deliver(s: Settings, mime: EmailMessage, to: str) -> None:
    """One message over the configured SMTP server (journey emails and internal emails alike)."""
    with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds) as smtp:
        if s.smtp_starttls:
            smtp.starttls()
        if s.smtp_username:
            smtp.login(s.smtp_username, s.smtp_password)
        smtp.send_message(mime, to_addrs=[to])

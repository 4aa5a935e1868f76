"""Send one journey email over SMTP: render, check consent, send once.

The message is real MIME (text and HTML alternatives) with a stable ``Message-ID`` derived
from the message row, a tracking pixel, click-tracked links and RFC 8058 one-click
unsubscribe headers. A message whose headers are all plain ASCII and that has no attachment
(a broadcast's, most journeys') is written straight to its bytes (relance/services/mime.py);
the others are built by the ``email`` package.

Addresses are sent as the mail system expects them: an internationalised domain in its ASCII
(IDNA) form, which any server takes; a non-ASCII mailbox name (``josé@...``) with SMTPUTF8 when
the server offers it. A send that no retry can fix (an address that is not one, a non-ASCII
mailbox and no SMTPUTF8, a recipient refused for good, a 5xx answer) is recorded ``failed``
with its reason and the journey goes on; connection failures, timeouts and 4xx answers are
retried by Temporal, and the row says whether the message may have gone out meanwhile. So is a
refusal of the mail settings themselves (STARTTLS, login, the sender address): a wrong password
makes the sends wait for the operator's fix, it does not fail every message for good (the
SMTP conversation itself: relance/services/smtp.py).
"""

from __future__ import annotations

import email.policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate

from email_validator import EmailNotValidError, validate_email
from temporalio import activity

from activities.channels import ChannelProvider, provider
from activities.sending import Claim, Delivery
from relance.contracts.sending import SendFailure, SendRequest, SendResult
from relance.domain.rendering import Tracking, header_text
from relance.services import mime as raw_mime
from relance.services import smtp


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


@provider("email")
class EmailActivities(ChannelProvider):
    @activity.defn(name="send_email", no_thread_cancel_exception=True)
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
        delivery = self.deliver(request, claim)
        if delivery.failure is not None:
            return self.ledger.failed_or_retried(claim.message, delivery.failure, channel="email")
        activity.logger.info(
            "email %s sent for %s step %s", claim.message.id, request.journey, request.step
        )
        return self.ledger.mark_sent(claim.message, subject=delivery.subject)

    def deliver(self, request: SendRequest, claim: Claim) -> Delivery:
        """Render the claimed message and hand it to the mail server (no database: the caller
        records the outcome, one message or a broadcast's wave at once)."""
        message, lead = claim.message, claim.lead
        try:
            to = recipient(lead.email, lead.first_name)
            tracking = Tracking(message.id, lead.id, request.workflow_id)
            context = self.context(claim)
            rendered = self.renderer.email(request.template, context, tracking)
            mime = self._mime(request, message.id, to, rendered, claim.extras.attachments)
            self._deliver(mime, to.addr_spec)
        except SendFailure as failure:
            return Delivery(message, failure=failure)
        return Delivery(message, subject=rendered.subject)

    def _mime(
        self, request: SendRequest, message_id: str, to: Address, rendered, attachments
    ) -> EmailMessage | bytes:
        """The message: its bytes written directly when every header is plain ASCII and it has
        no attachment (relance/services/mime.py), else built by the ``email`` package."""
        # The one-click link does the unsubscribe; the mailto is only an address a person may
        # write to, and Relance reads no mailbox: empty, no mailto is offered (README,
        # Unsubscribe).
        unsubscribe = f"<{rendered.unsubscribe_url}>"
        if self.settings.unsubscribe_mailto:
            unsubscribe += (
                f", <mailto:{self.settings.unsubscribe_mailto}?subject=unsubscribe-{message_id}>"
            )
        headers = [
            ("From", self.settings.mail_from),
            ("To", str(to)),
            ("Subject", rendered.subject),
            ("Date", formatdate(localtime=False)),
            ("Message-ID", f"<{message_id}@{self.settings.mail_domain}>"),
            ("List-Unsubscribe", unsubscribe),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("X-Relance-Journey", f"{request.journey}/{request.step}"),
        ]
        if not attachments:
            raw = raw_mime.build(headers, rendered.text, rendered.html)
            if raw is not None:
                return raw
        # Headers set as written are sent as written (not refolded); the others are the email
        # package's header objects, folded (and encoded) by it.
        mime = EmailMessage(policy=email.policy.default.clone(refold_source="none"))
        try:
            mime["From"] = self.settings.mail_from
            mime["To"] = to
            for name, value in headers[2:]:
                folded = raw_mime.fold(name, value) if name == "List-Unsubscribe" else None
                if folded is not None:  # its URLs as written, never encoded words
                    mime.set_raw(name, folded[len(name) + 2 :])
                else:
                    mime[name] = value
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

    def _deliver(self, mime: EmailMessage | bytes, to: str) -> None:
        smtp.deliver(self.settings, mime, to)

"""Send one journey message as a signed HTTP POST to the configured receiver (the webhook channel).

What a WhatsApp or push gateway, or a Zapier-like automation, takes: ``POST {webhook_url}`` with
a JSON body::

    {"type": "message", "delivery_id": "...", "message_id": "...", "lead_id": "...",
     "journey": "welcome", "step": "relance_webhook", "kind": "marketing",
     "template": "welcome_relance", "subject": "...", "body": "...", "unsubscribe_url": "..."}

signed as relance/domain/webhook_signing.py says (``X-Relance-Timestamp``, ``X-Relance-Signature:
sha256=<HMAC-SHA256 of "<timestamp>.<body>">`` with ``webhook_secret``, else the secret key).
``delivery_id`` (also ``X-Relance-Delivery``) is the message's id: a retried send reuses it, so
the receiver can drop a second copy, as mailboxes do with an email's Message-ID. The receiver
gets the lead's id, never an address: it knows its own users.

A 2xx answer is delivered (its JSON ``id``, if any, is kept as the provider's id). A 5xx or 429
answer, a connection refused or a timeout is retried by Temporal (the activity's retry policy);
any other 4xx is the receiver refusing the message for good: recorded ``failed``, the journey goes
on. The message is rendered from ``templates/webhook/<template>.jinja`` (blocks ``subject`` and
``body``, text with tracked links); the JSON is serialised here, so lead data in the text is
escaped and never adds or changes a field.
"""

from __future__ import annotations

import json
import time

from temporalio import activity

from activities.channels import ChannelProvider, post_to_provider, provider
from relance.contracts.channels import template_file
from relance.contracts.sending import SendFailure, SendRequest, SendResult
from relance.domain.models import Message
from relance.domain.rendering import Tracking, header_text
from relance.domain.webhook_signing import signed_headers


@provider("webhook")
class WebhookActivities(ChannelProvider):
    @activity.defn(name="send_webhook", no_thread_cancel_exception=True)
    def send_webhook(self, request: SendRequest) -> SendResult:
        not_configured = "" if self.settings.webhook_url else "no webhook receiver is configured"
        claim = self.ledger.claim(request, "webhook", channel_blocked=not_configured)
        if claim.result is not None:
            return claim.result
        message, lead = claim.message, claim.lead
        tracking = Tracking(message.id, lead.id, request.workflow_id)
        blocks = self.renderer.text_blocks(
            template_file("webhook", request.template),
            self.context(claim),
            tracking,
            ("subject", "body"),
        )
        subject = header_text(blocks["subject"])
        body = self.payload(request, message, subject, blocks["body"], tracking)
        try:
            provider_id = self._post(body, message.id)
        except SendFailure as failure:
            return self.ledger.failed_or_retried(message, failure, channel="webhook")
        activity.logger.info(
            "webhook %s accepted by the receiver for %s step %s",
            message.id,
            request.journey,
            request.step,
        )
        return self.ledger.mark_sent(message, subject=subject, provider_id=provider_id)

    def payload(
        self, request: SendRequest, message: Message, subject: str, body: str, tracking: Tracking
    ) -> bytes:
        return json.dumps(
            {
                "type": "message",
                "delivery_id": message.id,
                "message_id": message.id,
                "lead_id": message.lead_id,
                "journey": request.journey,
                "step": request.step,
                "kind": request.kind,
                "template": request.template,
                "subject": subject,
                "body": body,
                "unsubscribe_url": self.renderer.unsubscribe_url(tracking),
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()

    def _post(self, body: bytes, delivery_id: str) -> str | None:
        """Hand one message to the receiver; its id. Raises SendFailure (activities/sending.py)."""
        headers = signed_headers(
            self.settings.webhook_signing_secret, body, delivery_id, timestamp=int(time.time())
        )
        return post_to_provider(
            self.settings.webhook_url,
            "webhook receiver",
            timeout=self.settings.webhook_timeout_seconds,
            content=body,
            headers=headers,
        )

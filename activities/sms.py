"""Send one journey SMS through the HTTP SMS provider (httpx).

The provider interface is plain JSON: ``POST {sms_provider_url}`` with
``{"to", "from", "body", "reference"}`` and ``Authorization: Bearer <sms_api_token>``; a 2xx
answer with ``{"id": ...}`` means accepted. ``reference`` is the send key, so a provider that
deduplicates by reference never delivers a retried send twice.
"""

from __future__ import annotations

from temporalio import activity

from activities.channels import ChannelProvider, post_to_provider, provider
from activities.sending import Claim, Delivery
from relance.contracts.sending import SendFailure, SendRequest, SendResult
from relance.domain.rendering import Tracking


@provider("sms")
class SmsActivities(ChannelProvider):
    def blocked(self) -> str:
        return "" if self.settings.sms_provider_url else "no SMS provider is configured"

    @activity.defn(name="send_sms", no_thread_cancel_exception=True)
    def send_sms(self, request: SendRequest) -> SendResult:
        claim = self.ledger.claim(request, "sms", channel_blocked=self.blocked())
        if claim.result is not None:
            return claim.result
        delivery = self.deliver(request, claim)
        if delivery.failure is not None:
            return self.ledger.failed_or_retried(claim.message, delivery.failure, channel="sms")
        activity.logger.info(
            "sms %s accepted by the provider for %s step %s",
            claim.message.id,
            request.journey,
            request.step,
        )
        return self.ledger.mark_sent(claim.message, subject=None, provider_id=delivery.provider_id)

    def deliver(self, request: SendRequest, claim: Claim) -> Delivery:
        """Render the claimed SMS and hand it to the provider (no database)."""
        message, lead = claim.message, claim.lead
        body = self.renderer.sms(
            request.template,
            self.context(claim),
            Tracking(message.id, lead.id, request.workflow_id),
        )
        headers = (
            {"Authorization": f"Bearer {self.settings.sms_api_token}"}
            if self.settings.sms_api_token
            else {}
        )
        try:
            provider_id = self._post(lead.phone, body, message.id, headers)
        except SendFailure as failure:
            return Delivery(message, failure=failure)
        return Delivery(message, provider_id=provider_id)

    def _post(self, to: str, body: str, reference: str, headers: dict) -> str | None:
        """Hand one SMS to the provider; its id. Raises SendFailure (see activities/sending.py)."""
        return post_to_provider(
            self.settings.sms_provider_url,
            "SMS provider",
            timeout=10.0,
            json={"to": to, "from": self.settings.sms_sender, "body": body, "reference": reference},
            headers=headers,
        )

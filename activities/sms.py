"""Send one journey SMS through the HTTP SMS provider (httpx).

The provider interface is plain JSON: ``POST {sms_provider_url}`` with
``{"to", "from", "body", "reference"}`` and ``Authorization: Bearer <sms_api_token>``; a 2xx
answer with ``{"id": ...}`` means accepted. ``reference`` is the send key, so a provider that
deduplicates by reference never delivers a retried send twice.
"""

from __future__ import annotations

import httpx
from temporalio import activity

from activities.channels import ChannelProvider, provider
from relance.contracts.sending import SendFailure, SendRequest, SendResult
from relance.domain.rendering import Tracking


@provider("sms")
class SmsActivities(ChannelProvider):
    @activity.defn(name="send_sms")
    def send_sms(self, request: SendRequest) -> SendResult:
        not_configured = "" if self.settings.sms_provider_url else "no SMS provider is configured"
        claim = self.ledger.claim(request, "sms", channel_blocked=not_configured)
        if claim.result is not None:
            return claim.result
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
            return self.ledger.failed_or_retried(message, failure, channel="sms")
        activity.logger.info(
            "sms %s accepted by the provider for %s step %s",
            message.id,
            request.journey,
            request.step,
        )
        return self.ledger.mark_sent(message, subject=None, provider_id=provider_id)

    def _post(self, to: str, body: str, reference: str, headers: dict) -> str | None:
        """Hand one SMS to the provider; its id. Raises SendFailure (see activities/sending.py)."""
        try:
            response = httpx.post(
                self.settings.sms_provider_url,
                json={
                    "to": to,
                    "from": self.settings.sms_sender,
                    "body": body,
                    "reference": reference,
                },
                headers=headers,
                timeout=10.0,
            )
        except (
            httpx.ConnectError,
            httpx.ConnectTimeout,
            httpx.PoolTimeout,
        ) as err:  # nothing went out
            raise SendFailure(
                f"could not reach the SMS provider: {str(err) or type(err).__name__}"
            ) from err
        except httpx.TransportError as err:  # the request went out, the answer never came
            raise SendFailure(
                f"the SMS provider did not answer: {str(err) or type(err).__name__}",
                maybe_delivered=True,
            ) from err
        if response.status_code >= 500 or response.status_code == 429:
            raise SendFailure(f"the SMS provider answered {response.status_code}")
        if response.status_code >= 400:
            raise SendFailure(
                f"SMS provider refused: {response.status_code} {response.text[:200]}",
                permanent=True,
            )
        try:
            return str(response.json().get("id", "")) or None
        except (ValueError, AttributeError):  # accepted all the same: an answer without an id
            return None

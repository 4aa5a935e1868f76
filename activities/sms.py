"""Send one journey SMS through the HTTP SMS provider (httpx).

The provider interface is plain JSON: ``POST {sms_provider_url}`` with
``{"to", "from", "body", "reference"}`` and ``Authorization: Bearer <sms_api_token>``; a 2xx
answer with ``{"id": ...}`` means accepted. ``reference`` is the send key, so a provider that
deduplicates by reference never delivers a retried send twice.
"""

from __future__ import annotations

import httpx
from sqlalchemy.engine import Engine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.email import template_context
from activities.frequency import FrequencyCap
from activities.sending import SendLedger, SendRequest, SendResult
from relance.rendering import Renderer, Tracking
from relance.settings import Settings


class SmsActivities:
    def __init__(self, settings: Settings, engine: Engine, renderer: Renderer) -> None:
        self.settings = settings
        self.ledger = SendLedger(engine, FrequencyCap(settings.frequency_cap_messages, settings.frequency_cap_days),
                                 suppression_key=settings.suppression_hash_key, rules=settings.rules_for)
        self.renderer = renderer

    @activity.defn(name="send_sms")
    def send_sms(self, request: SendRequest) -> SendResult:
        not_configured = "" if self.settings.sms_provider_url else "no SMS provider is configured"
        claim = self.ledger.claim(request, "sms", channel_blocked=not_configured)
        if claim.result is not None:
            return claim.result
        message, lead = claim.message, claim.lead
        body = self.renderer.sms(request.template, {**template_context(self.settings, lead), **claim.extras.context},
                                 Tracking(message.id, lead.id, request.workflow_id))
        headers = {"Authorization": f"Bearer {self.settings.sms_api_token}"} if self.settings.sms_api_token else {}
        response = httpx.post(
            self.settings.sms_provider_url,
            json={"to": lead.phone, "from": self.settings.sms_sender, "body": body, "reference": message.id},
            headers=headers,
            timeout=10.0,
        )
        if response.status_code >= 500 or response.status_code == 429:
            raise ApplicationError(f"SMS provider answered {response.status_code}; will retry", type="SmsTemporary")
        if response.status_code >= 400:
            activity.logger.warning("sms %s refused by the provider: %s", message.id, response.status_code)
            return self.ledger.mark_failed(message, f"SMS provider refused: {response.status_code} {response.text[:200]}")
        provider_id = str(response.json().get("id", "")) or None
        activity.logger.info("sms %s accepted by the provider for %s step %s", message.id, request.journey, request.step)
        return self.ledger.mark_sent(message, subject=None, provider_id=provider_id)

"""The premium-content offer: a very active lead is offered premium content, once.

    activity count over 30 days passes the threshold (checked where activity is recorded)
        ─► premium-offer email (the send ledger checks consent; over the frequency cap it is
           skipped, not deferred) ─► recorded on the lead, sent or skipped: never again

Id ``premium-<lead id>``, started with REJECT_DUPLICATE; the send ledger (key
``premium-<lead id>:premium_offer``) and ``leads.premium_offered_at`` make it once per lead
ever, even after Temporal has forgotten the closed workflow. Its result is the offer's send
(its status, not an outcome: not a ``JourneyResult``).
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import workflow

from workflows.journey import Journey

with workflow.unsafe.imports_passed_through():
    from relance.contracts.reengagement import PremiumRecord, record_premium_offer

JOURNEY = "premium"


@dataclass
class PremiumInput:
    lead_id: str


@dataclass
class PremiumResult:
    status: str  # sent | skipped
    reason: str
    message_id: str | None


@workflow.defn(name="PremiumOfferJourney")
class PremiumOfferJourney(Journey):
    NAME = JOURNEY

    @workflow.init
    def __init__(self, input: PremiumInput) -> None:
        super().__init__(input.lead_id)

    @workflow.run
    async def run(self, input: PremiumInput) -> PremiumResult:
        self.enter("sending_offer", "The lead is very active: sending the premium-content offer")
        result = await self.send("premium_offer", "premium_offer", over_cap="skip")
        # Recorded even when skipped (no consent): the offer is a moment, not a debt to pay later.
        await self.activity(record_premium_offer, PremiumRecord(input.lead_id))
        self.enter(
            "completed",
            f"Premium offer {result.status}" + (f" ({result.reason})" if result.reason else ""),
        )
        return PremiumResult(result.status, result.reason, result.message_id)

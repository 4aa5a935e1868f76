"""The premium-content offer (seed 001: "if a user is very active, offer premium content").

    activity count over 30 days passes the threshold (checked where activity is recorded)
        ─► consent for email? ─► premium-offer email ─► recorded on the lead: never again

Id ``premium-<lead id>``, started with REJECT_DUPLICATE; the send ledger (key
``premium-<lead id>:premium_offer``) and ``leads.premium_offered_at`` make it once per lead
ever, even after Temporal has forgotten the closed workflow.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import workflow

from workflows.journey import Journey
from workflows.steps import ACTIVITY_OPTIONS

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
        await workflow.execute_activity(
            record_premium_offer,
            PremiumRecord(input.lead_id),
            **ACTIVITY_OPTIONS,
        )
        self.enter(
            "completed",
            f"Premium offer {result.status}" + (f" ({result.reason})" if result.reason else ""),
        )
        return PremiumResult(result.status, result.reason, result.message_id)

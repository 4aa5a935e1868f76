"""After a purchase (seed 002: "clients fidèles"): score it, then

    first purchase  ─► thank-you email with a promo code for the next order
    repeat purchase ─► the lead joins the "loyal customers" list

One run per order (id ``purchase-<order id>``), so a shop retrying the event counts it once.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import workflow

from relance.contracts import search_attributes as sa
from workflows.journey import Journey
from workflows.steps import ACTIVITY_OPTIONS

with workflow.unsafe.imports_passed_through():
    from relance.contracts.commerce import (
        PromoRequest,
        PurchaseRef,
        issue_promo_code,
        record_purchase,
    )
    from relance.contracts.scoring import ScoreChange, add_score

JOURNEY = "purchase"


@dataclass
class PurchaseInput:
    order_id: str
    first_purchase_percent_off: int = 10


@dataclass
class PurchaseResult:
    lead_id: str
    first_purchase: bool
    score: int
    thank_you: str | None  # sent | skipped | None (not a first purchase)
    promo_code: str | None
    added_to_list: str | None


@workflow.defn(name="PurchaseFollowUp")
class PurchaseFollowUp(Journey):
    NAME = JOURNEY

    @workflow.init
    def __init__(self, input: PurchaseInput) -> None:
        super().__init__(lead_id="")  # the order says whose it is (record_purchase)

    @workflow.run
    async def run(self, input: PurchaseInput) -> PurchaseResult:
        facts = await workflow.execute_activity(
            record_purchase, PurchaseRef(input.order_id), **ACTIVITY_OPTIONS
        )
        self.lead_id = facts.lead_id
        workflow.upsert_search_attributes([sa.LEAD_ID.value_set(facts.lead_id)])
        score = await workflow.execute_activity(
            add_score,
            ScoreChange(
                lead_id=facts.lead_id,
                event="purchase",
                key=f"purchase:{input.order_id}",
                reason=f"purchase (order {input.order_id})",
            ),
            **ACTIVITY_OPTIONS,
        )
        self.set_score(score.score)
        if not facts.first_purchase:
            workflow.set_current_details(
                f"Repeat purchase: the lead is on the {facts.added_to_list!r} list"
            )
            return PurchaseResult(
                facts.lead_id, False, score.score, None, None, facts.added_to_list
            )

        code = None
        about = f"order:{input.order_id}"
        if input.first_purchase_percent_off > 0:
            code = await workflow.execute_activity(
                issue_promo_code,
                PromoRequest(
                    facts.lead_id,
                    f"{workflow.info().workflow_id}:next-order",
                    input.first_purchase_percent_off,
                ),
                **ACTIVITY_OPTIONS,
            )
            about += f",promo:{code}"
        # The lead's own order: sent at once, counted by the frequency cap but never held by it.
        sent = await self.send_now(
            "thank_you", "purchase_thank_you", about=about, over_cap="exempt"
        )
        workflow.set_current_details(f"First purchase: thank-you {sent.status}, promo code {code}")
        return PurchaseResult(facts.lead_id, True, score.score, sent.status, code, None)

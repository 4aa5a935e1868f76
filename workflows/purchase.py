"""After a purchase: record and score it, then thank a first-time buyer or keep a loyal one.

    purchase ─► recorded (whose order it is, whether it is their first) ─► scored
        first purchase  ─► thank-you email with a promo code for the next order (sent at once)
        repeat purchase ─► the lead joins the "loyal customers" list

One run per order (id ``purchase-<order id>``), so a shop retrying the event counts it once. Its
result is the order's follow-up (no outcome, no reason: not a ``JourneyResult``).
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import workflow

from relance.contracts import search_attributes as sa
from workflows.journey import Journey

with workflow.unsafe.imports_passed_through():
    from relance.contracts.commerce import PurchaseRef, record_purchase

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
        facts = await self.activity(record_purchase, PurchaseRef(input.order_id))
        self.lead_id = facts.lead_id
        workflow.upsert_search_attributes([sa.LEAD_ID.value_set(facts.lead_id)])
        score = await self.add_score(
            "purchase", f"purchase:{input.order_id}", f"purchase (order {input.order_id})"
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
            code = await self.promo_code("next-order", input.first_purchase_percent_off)
            about += f",promo:{code}"
        # The lead's own order: sent at once, counted by the frequency cap but never held by it.
        sent = await self.send_now(
            "thank_you", "purchase_thank_you", about=about, over_cap="exempt"
        )
        workflow.set_current_details(f"First purchase: thank-you {sent.status}, promo code {code}")
        return PurchaseResult(facts.lead_id, True, score.score, sent.status, code, None)

"""Promo codes and purchases: what the abandoned-cart and purchase journeys ask for."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity


@dataclass
class PromoRequest:
    lead_id: str
    issued_for: str  # workflow id + step: asking twice gives the same code
    percent_off: int
    prefix: str = "RL"  # the code's first letters (RL-7K2QX9PM)
    valid_days: int = 0  # days the code can be used from its issue (0: no end)


@dataclass
class PurchaseRef:
    order_id: str


@dataclass
class PurchaseFacts:
    lead_id: str
    first_purchase: bool
    orders: int
    added_to_list: str | None


# The activities, as journeys call them (``workflow.execute_activity(issue_promo_code, ...)``):
# only the name and the types count here; the worker runs the implementation registered under
# the same name (activities/commerce.py CommerceActivities). tests/test_layers.py checks both agree.


@activity.defn(name="issue_promo_code")
def issue_promo_code(request: PromoRequest) -> str:
    raise NotImplementedError("run by the worker: CommerceActivities.issue_promo_code")


@activity.defn(name="record_purchase")
def record_purchase(ref: PurchaseRef) -> PurchaseFacts:
    raise NotImplementedError("run by the worker: CommerceActivities.record_purchase")

"""Shop events over HTTP on the real dev server: signal-with-start, purchases, lists, bad input."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from relance.domain.models import Cart, Order
from tests.conftest import LiveStack
from tests.test_api_welcome_e2e import sign_up_body

ITEM = {
    "sku": "B-1",
    "name": "The Shining",
    "qty": 1,
    "unit_price": 12.5,
    "url": "https://example.com/b/1",
}


async def new_lead(live: LiveStack) -> tuple[str, str]:
    email = f"shop-{uuid.uuid4().hex[:10]}@example.com"
    response = await live.http.post("/leads", json=sign_up_body(email))
    return response.json()["lead"]["id"], email


def cart_event(lead_id: str, cart_id: str, items=(ITEM,)) -> dict:
    return {
        "type": "cart_updated",
        "lead": lead_id,
        "cart": {
            "id": cart_id,
            "items": list(items),
            "currency": "EUR",
            "total": 12.5 * len(items),
        },
    }


def purchase_event(lead_id: str, order_id: str) -> dict:
    return {
        "type": "purchase",
        "lead": lead_id,
        "order": {"id": order_id, "items": [ITEM], "total": 12.5},
    }


async def test_twenty_concurrent_cart_events_make_exactly_one_journey(live: LiveStack):
    lead_id, _ = await new_lead(live)
    cart_id = f"c-{uuid.uuid4().hex[:8]}"
    responses = await asyncio.gather(
        *(live.http.post("/events/track", json=cart_event(lead_id, cart_id)) for _ in range(20))
    )
    assert [r.status_code for r in responses] == [202] * 20
    assert {r.json()["workflow_id"] for r in responses} == {f"cart-{lead_id}"}

    runs = [wf async for wf in live.temporal.list_workflows(f'WorkflowId = "cart-{lead_id}"')]
    assert len(runs) == 1
    status = await live.temporal.get_workflow_handle(f"cart-{lead_id}").query("status")
    assert status["updates"] == 20 and status["step"] == "waiting_for_reminder_1"

    emptied = await live.http.post("/events/track", json=cart_event(lead_id, cart_id, items=()))
    assert emptied.status_code == 202
    result = await live.temporal.get_workflow_handle(f"cart-{lead_id}").result()
    assert result["outcome"] == "emptied"


async def test_first_purchase_gets_a_promo_then_a_repeat_joins_the_loyal_list(live: LiveStack):
    lead_id, email = await new_lead(live)
    first, again = f"o-{uuid.uuid4().hex[:8]}", f"o-{uuid.uuid4().hex[:8]}"

    response = await live.http.post("/events/track", json=purchase_event(lead_id, first))
    assert response.status_code == 202 and response.json()["workflow_id"] == f"purchase-{first}"
    result = await live.temporal.get_workflow_handle(f"purchase-{first}").result()
    assert result["first_purchase"] and result["thank_you"] == "sent"
    [mail] = await live.sink.wait_for_mail(to=email)
    assert mail.subject.startswith("Thank you for your order") and result["promo_code"] in mail.text

    retried = await live.http.post("/events/track", json=purchase_event(lead_id, first))
    assert retried.status_code == 202 and "already recorded" in retried.json()["detail"]

    await live.http.post("/events/track", json=purchase_event(lead_id, again))
    repeat = await live.temporal.get_workflow_handle(f"purchase-{again}").result()
    assert not repeat["first_purchase"] and repeat["added_to_list"] == "loyal-customers"
    members = (await live.http.get("/lists/loyal-customers/members")).json()
    assert lead_id in [m["lead_id"] for m in members]
    assert {"name": "loyal-customers", "members": len(members)} in (
        await live.http.get("/lists")
    ).json()
    assert len(live.sink.mails_to(email)) == 1  # one thank-you, however often the shop retried
    lead = (await live.http.get(f"/leads/{lead_id}")).json()
    rules = live.settings.scoring_rules().events  # the sign-up form counts too
    assert lead["score"] == rules["form_submitted"] + 2 * rules["purchase"]


def counts(live: LiveStack) -> tuple[int, int]:
    with Session(live.engine) as session:
        return (
            session.exec(select(func.count()).select_from(Cart)).one(),
            session.exec(select(func.count()).select_from(Order)).one(),
        )


@pytest.mark.parametrize(
    "case",
    [
        "unknown lead",
        "unknown type",
        "qty 0",
        "no order id",
        "bad currency",
        "bad cart id",
        "missing cart",
    ],
)
async def test_bad_shop_events_are_refused_and_store_nothing(live: LiveStack, case: str):
    lead_id, _ = await new_lead(live)
    bodies = {
        "unknown lead": cart_event(uuid.uuid4().hex, "c-1"),
        "unknown type": {"type": "wishlist", "lead": lead_id},
        "qty 0": cart_event(lead_id, "c-2", items=({**ITEM, "qty": 0},)),
        "no order id": {"type": "purchase", "lead": lead_id, "order": {"total": 3}},
        "bad currency": {
            **cart_event(lead_id, "c-3"),
            "cart": {**cart_event(lead_id, "c-3")["cart"], "currency": "euro"},
        },
        "bad cart id": cart_event(lead_id, "c 4/../x"),
        "missing cart": {"type": "cart_updated", "lead": lead_id},
    }
    before = counts(live)
    response = await live.http.post("/events/track", json=bodies[case])
    assert response.status_code == (404 if case == "unknown lead" else 422), response.text
    assert response.json()["detail"]
    assert counts(live) == before


async def test_an_unknown_list_is_404_and_shop_events_need_the_key(live: LiveStack):
    assert (await live.http.get("/lists/nobody-here/members")).status_code == 404
    assert (await live.public.post("/events/track", json={"type": "purchase"})).status_code == 401

"""Goals and exits: reaching a goal, from the API or from another journey, ends every
running journey of the lead that declares it, wherever it is; the others go on."""

from __future__ import annotations

from relance.contracts.catalogue import goals_of
from tests.conftest import LiveStack
from tests.test_api_cart_e2e import purchase_event
from tests.test_api_nurturing_e2e import sign_up, state_when
from tests.waiting import eventually


async def test_a_purchase_from_the_api_ends_every_journey_that_declares_it(live: LiveStack):
    lead = (await sign_up(live, journeys=["welcome"]))["lead"]
    lead_id = lead["id"]
    assert (await live.http.post(f"/leads/{lead_id}/journeys/nurturing")).status_code == 201
    await state_when(live, lead_id, lambda s: s["step"] == "waiting_for_case_study")
    welcome = live.temporal.get_workflow_handle(f"welcome-{lead_id}")

    async def waiting_for_open():  # the welcome is waiting for an open, 48 h ahead
        return (await welcome.query("status"))["step"] == "waiting_for_open"

    await eventually(waiting_for_open, timeout=15, what="the welcome to wait for an open")

    response = await live.http.post(
        "/events/track", json=purchase_event(lead_id, f"order-goal-{lead_id[:8]}")
    )
    assert response.status_code == 202, response.text
    assert sorted(response.json()["converted"]) == sorted(
        [f"welcome-{lead_id}", f"nurture-{lead_id}"]
    )

    welcome_result = await welcome.result()
    assert welcome_result["outcome"] == "converted" and "purchase" in welcome_result["reason"]
    nurturing = await state_when(live, lead_id, lambda s: s["status"] == "COMPLETED")
    assert nurturing["result"]["outcome"] == "goal_reached"
    assert nurturing["result"]["steps_sent"] == ["welcome_newsletter"]  # nothing more went out


async def test_a_demo_booked_ends_only_the_journeys_that_declare_it(live: LiveStack):
    lead_id = (await sign_up(live, journeys=["welcome"]))["lead"]["id"]
    welcome = live.temporal.get_workflow_handle(f"welcome-{lead_id}")
    assert "demo_booked" not in goals_of("welcome")
    response = await live.http.post("/events/track", json={"type": "demo_booked", "lead": lead_id})
    assert (
        response.status_code == 202 and response.json()["converted"] == []
    )  # no nurturing: nobody to end
    assert (await welcome.describe()).status.name == "RUNNING"
    await welcome.terminate("test over")  # it waits on a 48 h timer, no activity running

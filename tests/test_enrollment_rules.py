"""Enrollment rules (issue 7): exclusions checked at entry, and at most N journeys at once per lead."""

from __future__ import annotations

from tests.conftest import LiveStack
from tests.test_api_cart_e2e import purchase_event
from tests.test_api_nurturing_e2e import sign_up


async def test_a_customer_is_not_enrolled_into_nurturing(live: LiveStack):
    lead_id = (await sign_up(live))["lead"]["id"]
    bought = await live.http.post("/events/track", json=purchase_event(lead_id, f"order-rules-{lead_id[:8]}"))
    assert bought.status_code == 202
    response = await live.http.post(f"/leads/{lead_id}/journeys/nurturing")
    assert response.status_code == 409
    assert response.json()["status"] == "refused" and "is a customer" in response.json()["detail"]
    state = await live.http.get(f"/leads/{lead_id}/journeys/nurturing")
    assert state.status_code == 404  # never started


async def test_a_lead_in_too_many_journeys_is_not_enrolled_in_another(live: LiveStack):
    lead_id = (await sign_up(live, journeys=["welcome"]))["lead"]["id"]
    previous = live.settings.max_concurrent_journeys
    live.settings.max_concurrent_journeys = 1  # the app's own settings object
    try:
        response = await live.http.post(f"/leads/{lead_id}/journeys/nurturing")
    finally:
        live.settings.max_concurrent_journeys = previous
    assert response.status_code == 409, response.text
    assert f"already in 1 journeys (at most 1): welcome-{lead_id}" in response.json()["detail"]
    assert (await live.http.post(f"/leads/{lead_id}/journeys/nurturing")).status_code == 201  # limit back to 5
    for journey in ("welcome", "nurture"):
        await live.temporal.get_workflow_handle(f"{journey}-{lead_id}").terminate("test over")  # on timers

"""Run by tests/test_catalogue.py in a pytest of its own, with the tiny journey registered
(``-p tests.tiny_journey``): the worker runs it and the API enrolls into it, as into any journey
of the catalogue. Not a test_*.py file: the suite, whose catalogue is the shipped one, skips it."""

from __future__ import annotations

import asyncio

from relance.contracts import catalogue
from relance.contracts import search_attributes as sa
from tests.conftest import LiveStack
from tests.test_api_nurturing_e2e import sign_up


async def test_the_tiny_journey(live: LiveStack):
    assert "tiny" in catalogue.JOURNEYS, "run with -p tests.tiny_journey"
    schema = (await live.http.get("/openapi.json")).json()
    journey = schema["components"]["schemas"]["EnrollmentPublic"]["properties"]["journey"]
    assert "tiny" in journey["examples"] and "`tiny`" in journey["description"]
    sign_up_journeys = schema["components"]["schemas"]["LeadCreate"]["properties"]["journeys"]
    assert "tiny" in sign_up_journeys["items"]["enum"]
    lead_id = (await sign_up(live, journeys=["tiny"]))["lead"]["id"]
    result = await asyncio.wait_for(
        live.temporal.get_workflow_handle(f"tiny-{lead_id}").result(), timeout=30
    )
    assert result == {"outcome": "greeted", "greeting": f"hello from relance-e2e, {lead_id}"}
    state = (await live.http.get(f"/leads/{lead_id}/journeys/tiny")).json()
    assert (state["journey"], state["status"], state["step"]) == ("tiny", "COMPLETED", "greeted")
    again = await live.http.post(f"/leads/{lead_id}/journeys/tiny")  # closed: cooldown applies
    assert again.status_code == 409 and "cooldown" in again.json()["detail"], again.text
    described = await live.temporal.get_workflow_handle(f"tiny-{lead_id}").describe()
    assert described.workflow_type == "TinyJourney"
    assert described.typed_search_attributes.get(sa.JOURNEY) == "tiny"

"""Which score is the lead's: after an open, the outbox scores it in the database once the journey
is told, and the journey (its status query, its ``Score`` search attribute in the Temporal UI)
still holds the score it read before. The journey status answers the lead's score, the
authoritative one, as ``score`` — the same as ``GET /leads/{id}`` — and the journey's own as
``journey_score``, which matches the search attribute and may lag."""

from __future__ import annotations

from relance.contracts import search_attributes as sa
from tests.conftest import LiveStack
from tests.test_api_welcome_e2e import double_opt_in, enroll, journey_when, links, welcome_mail  # noqa: F401 (fixture)


async def test_after_an_open_the_status_answers_the_leads_score_and_names_the_journeys(
    double_opt_in: LiveStack,
):
    live = double_opt_in
    rules = live.settings.scoring_rules().events
    lead_id, email = await enroll(live)
    mail = await welcome_mail(live, email)
    await journey_when(live, lead_id, lambda s: s["step"] == "waiting_for_open")
    before = rules["form_submitted"]  # what the journey read before sending the welcome

    [pixel] = links(mail.html, "o")
    assert (await live.public.get(pixel)).status_code == 200
    after = before + rules["email_opened"]
    # Wait (with a deadline) until the open is scored in the database.
    state = await journey_when(live, lead_id, lambda s: s["opened"] and s["score"] == after)

    lead = (await live.http.get(f"/leads/{lead_id}")).json()
    assert state["score"] == lead["score"] == after  # the status and the lead agree: the database's
    description = await live.temporal.get_workflow_handle(f"welcome-{lead_id}").describe()
    search_attribute = description.typed_search_attributes.get(sa.SCORE)
    assert (
        state["journey_score"] == search_attribute == before
    )  # the journey's snapshot, said as such

    spec = (await live.http.get("/openapi.json")).json()["components"]["schemas"][
        "JourneyStatusPublic"
    ]
    assert "authoritative" in spec["properties"]["score"]["description"]
    assert "Score" in spec["properties"]["journey_score"]["description"]

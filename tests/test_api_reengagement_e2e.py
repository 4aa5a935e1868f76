"""Re-engagement end to end on the real dev server: a sweep by hand over HTTP starts the journey of
an inactive lead, a visit or a click on the real tracking link ends it; page views make a very
active lead's premium offer go out once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from relance.domain.models import Lead, ScoreEvent, utcnow
from tests.conftest import LiveStack
from tests.test_api_welcome_e2e import links, sign_up_body
from tests.waiting import settled_hits


async def inactive_lead(live: LiveStack, days: int = 90) -> tuple[str, str]:
    """A lead signed up over HTTP, then made quiet for ``days`` (as if the sign-up was long ago)."""
    email = f"quiet-{uuid.uuid4().hex[:10]}@example.com"
    response = await live.http.post("/leads", json=sign_up_body(email))
    lead_id = response.json()["lead"]["id"]
    with Session(live.engine) as session:
        session.execute(
            update(Lead)
            .where(col(Lead.id) == lead_id)
            .values(last_activity_at=utcnow() - timedelta(days=days))
        )
        session.commit()
    return lead_id, email


async def sweep(live: LiveStack, body: dict | None = None) -> dict:
    response = await live.http.post("/sweeps/re-engagement", json=body)
    assert response.status_code == 202, response.text
    workflow_id = response.json()["workflow_id"]
    for _ in range(200):
        state = (await live.http.get(f"/sweeps/re-engagement/{workflow_id}")).json()
        if state["status"] == "COMPLETED":
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"the sweep did not complete: {state}")


async def reengagement_step(live: LiveStack, lead_id: str, step: str) -> dict:
    handle = live.temporal.get_workflow_handle(f"reengage-{lead_id}")
    for _ in range(200):
        status = await handle.query("status")
        if status["step"] == step:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"journey at {status['step']!r}, expected {step!r}")


async def test_a_sweep_by_hand_enrolls_the_inactive_lead_and_a_visit_ends_it_as_re_engaged(
    live: LiveStack,
):
    lead_id, email = await inactive_lead(live)
    state = await sweep(live)
    assert state["result"]["started"] >= 1

    [mail] = await live.sink.wait_for_mail(to=email)
    assert mail.subject == "We miss you, Grace: the best of Relance lately"
    await reengagement_step(live, lead_id, "waiting_after_email_1")
    journey = live.temporal.get_workflow_handle(f"reengage-{lead_id}")
    run_id = (await journey.describe()).run_id
    await sweep(live)  # running it again starts nothing for this lead: same run, still one email
    assert (await journey.describe()).run_id == run_id and len(live.sink.mails_to(email)) == 1

    visit = await live.http.post(
        "/events/track",
        json={"type": "page_view", "lead": lead_id, "url": "https://example.com/blog/new"},
    )
    assert visit.status_code == 202, visit.text
    assert visit.json()["workflow_id"] == f"reengage-{lead_id}"
    result = await live.temporal.get_workflow_handle(f"reengage-{lead_id}").result()
    assert result["outcome"] == "re_engaged" and result["reaction"] == "page_view"

    lead = (await live.http.get(f"/leads/{lead_id}")).json()
    assert (
        lead["score"]
        == sum(live.settings.scoring_rules().events[e] for e in ("form_submitted", "reengaged"))
        and lead["reengagement_status"] == "re_engaged"
    )
    assert utcnow() - timedelta(minutes=1) < datetime.fromisoformat(lead["last_activity_at"])


async def test_a_click_in_a_re_engagement_email_ends_the_journey_through_the_outbox(
    live: LiveStack,
):
    lead_id, email = await inactive_lead(live, days=200)
    await sweep(live, {"inactive_days": 150})
    [mail] = await live.sink.wait_for_mail(to=email)
    await reengagement_step(live, lead_id, "waiting_after_email_1")

    response = await live.public.get(links(mail.html, "c")[0])
    assert (
        response.status_code == 302
        and response.headers["location"] == "https://example.com/articles/best"
    )
    result = await live.temporal.get_workflow_handle(f"reengage-{lead_id}").result()
    assert result["outcome"] == "re_engaged" and result["reaction"] == "clicked"

    # The click scores email_clicked once per message (the outbox scores the clicks of journeys
    # that do not score their own), however many times the link is followed.
    assert (await live.public.get(links(mail.html, "c")[0])).status_code == 302
    rules = live.settings.scoring_rules().events
    expected = rules["form_submitted"] + rules["reengaged"] + rules["email_clicked"]
    await settled_hits(live.engine, lead_id, kind="clicked", count=2)
    # A third click, settled in a later batch than the second: by then the outbox has scored
    # whatever the second would have made it score.
    assert (await live.public.get(links(mail.html, "c")[0])).status_code == 302
    await settled_hits(live.engine, lead_id, kind="clicked", count=3)
    assert (await live.http.get(f"/leads/{lead_id}")).json()["score"] == expected
    with Session(live.engine) as session:
        [click] = session.exec(
            select(ScoreEvent).where(
                ScoreEvent.lead_id == lead_id, ScoreEvent.event == "email_clicked"
            )
        ).all()
    assert click.reason.startswith("clicked a link in the email_1") and click.reason.endswith(
        "of the reengage journey"
    )
    assert click.points == rules["email_clicked"]


async def test_a_very_active_lead_gets_the_premium_offer_once(live: LiveStack):
    email = f"busy-{uuid.uuid4().hex[:10]}@example.com"
    lead_id = (await live.http.post("/leads", json=sign_up_body(email))).json()["lead"]["id"]
    threshold = live.settings.premium_offer_threshold  # the sign-up form counts as one activity
    for n in range(threshold + 5):
        response = await live.http.post(
            "/events/track",
            json={"type": "page_view", "lead": lead_id, "url": f"https://example.com/p/{n}"},
        )
        assert response.status_code == 202, response.text
    result = await live.temporal.get_workflow_handle(f"premium-{lead_id}").result()
    assert result["status"] == "sent"
    [offer] = await live.sink.wait_for_mail(to=email)
    assert offer.subject == "Grace, a premium corner for our most active readers"
    offered = await live.temporal.get_workflow_handle(f"premium-{lead_id}").describe()
    response = await live.http.post(
        "/events/track", json={"type": "page_view", "lead": lead_id, "url": "https://example.com/x"}
    )
    assert response.status_code == 202, response.text
    # The visit's follow-ups (a premium offer when due) are acted on before it is answered: the
    # offer's journey is still the one run, over, so no second offer can be on its way.
    latest = await live.temporal.get_workflow_handle(f"premium-{lead_id}").describe()
    assert (latest.run_id, latest.status.name) == (offered.run_id, "COMPLETED")
    assert len(live.sink.mails_to(email)) == 1
    assert (await live.http.get(f"/leads/{lead_id}")).json()["premium_offered_at"] is not None


async def test_opening_another_journeys_email_ends_the_re_engagement_too(live: LiveStack):
    """The outbox dispatcher passes the open of a welcome email on to the lead's re-engagement
    journey."""
    lead_id, email = await inactive_lead(live, days=300)
    await sweep(live, {"inactive_days": 250})
    await reengagement_step(live, lead_id, "waiting_after_email_1")
    enrolled = await live.http.post(f"/leads/{lead_id}/journeys/welcome")
    assert enrolled.status_code == 201, enrolled.text
    [welcome] = await live.sink.wait_for_mail(
        to=email, subject_contains="more from Relance"
    )  # a known contact

    assert (await live.public.get(links(welcome.html, "o")[0])).status_code == 200
    result = await live.temporal.get_workflow_handle(f"reengage-{lead_id}").result()
    assert result["outcome"] == "re_engaged" and result["reaction"] == "opened"

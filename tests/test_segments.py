"""Segments (hot / warm / cold) and lifecycle stages, shown on the lead and filterable,
paginated."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session

from relance.dev.seeding import unique_id
from relance.domain.models import Lead, LeadActivity, Order, SalesTask, utcnow
from tests.conftest import LiveStack


def seed(
    engine, *, score: int, form: bool = False, task: str | None = None, order: bool = False
) -> str:
    with Session(engine) as session:
        lead = Lead(email=f"{unique_id('seg')}@example.com", score=score)
        session.add(lead)
        session.flush()
        if form:
            session.add(LeadActivity(lead_id=lead.id, kind="form"))
        if task:
            status, outcome = task.split(":") if ":" in task else (task, None)
            session.add(
                SalesTask(
                    task_key=unique_id("t"),
                    lead_id=lead.id,
                    workflow_id="w",
                    reason="r",
                    due_at=utcnow() + timedelta(days=2),
                    status=status,
                    outcome=outcome,
                )
            )
        if order:
            session.add(Order(id=unique_id("o"), lead_id=lead.id, total=10))
        session.commit()
        return lead.id


async def test_segment_and_stage_are_derived_and_shown(live: LiveStack):
    cases = {
        seed(live.engine, score=0): ("cold", "subscriber"),
        seed(live.engine, score=20, form=True): ("warm", "lead"),
        seed(live.engine, score=50, form=True): ("hot", "mql"),
        seed(live.engine, score=55, task="open"): ("hot", "sql"),
        seed(live.engine, score=10, task="done:meeting_booked"): ("cold", "sql"),
        seed(live.engine, score=60, task="done:not_interested"): ("hot", "mql"),
        seed(live.engine, score=5, task="open", order=True): ("cold", "customer"),
    }
    for lead_id, (segment, stage) in cases.items():
        lead = (await live.http.get(f"/leads/{lead_id}")).json()
        assert (lead["segment"], lead["stage"]) == (segment, stage), lead


async def test_leads_filter_by_segment_and_stage_a_page_at_a_time(live: LiveStack):
    hot_mql = {seed(live.engine, score=70 + i, form=True) for i in range(5)}
    seed(live.engine, score=70, task="open")  # hot but sql
    seen, after, pages = [], None, 0
    while True:
        assert pages < 100, "the pages never end: the cursor does not move on"
        params = {"segment": "hot", "stage": "mql", "limit": 2} | (
            {"after": after} if after else {}
        )
        r = await live.http.get("/leads", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["leads"]) <= 2 and all(
            (l["segment"], l["stage"]) == ("hot", "mql") for l in body["leads"]
        )
        seen += [l["id"] for l in body["leads"]]
        pages += 1
        after = body["next"]
        if after is None:
            break
    assert hot_mql <= set(seen) and len(seen) == len(set(seen)) and pages >= 3
    bad = await live.http.get("/leads", params={"segment": "lukewarm"})
    assert bad.status_code == 422 and "segment" in bad.text


async def test_a_new_leads_sign_up_answers_what_reading_the_lead_back_answers(live: LiveStack):
    """A new lead is written in one go and its answer built from what was written (no read-back):
    it must be the lead as stored — its score (the form and the fit rules), consents, segment,
    stage — for a plain sign-up, and for one with a fit rule and two rows of one channel."""
    threshold = live.settings.score_mql_threshold
    proof = {"source_url": "https://example.com/form", "wording_version": "v1"}
    cases = [
        {"consents": [{"channel": "email", **proof}]},
        {
            "country": "FR",  # a fit rule
            "phone": "+33612345678",
            "consents": [
                {"channel": "email", **proof},
                {"channel": "sms", "granted": False},
                {"channel": "sms", **proof},  # the latest row of a channel is its current one
            ],
        },
    ]
    for case in cases:
        body = {"email": f"{unique_id('new')}@example.com", "first_name": "Ada", **case}
        saved = await live.http.post("/leads", json=body)
        assert saved.status_code == 201, saved.text
        answered = saved.json()["lead"]
        stored = (await live.http.get(f"/leads/{answered['id']}")).json()
        assert answered == stored
        assert answered["stage"] == ("mql" if answered["score"] >= threshold else "lead")
    assert stored["country"] == "FR" and stored["consents"]["sms"] == "granted"
    assert stored["score"] > 0  # the form and the fit rule scored


def test_a_new_lead_over_the_mql_threshold_at_sign_up_is_scored_and_notified_once(engine, settings):
    """The form then the fit rule, in that order, as each is applied to a lead already known:
    two score changes with their reasons, one crossing of the threshold, one sales notification."""
    from sqlmodel import select

    from api.crud import save_sign_up
    from api.schemas import LeadCreate
    from relance.domain.models import MqlNotification, ScoreEvent

    form = settings.scoring_rules().events["form_submitted"]
    settings = settings.model_copy(update={"score_mql_threshold": form + 1})  # crossed by the fit
    data = LeadCreate.model_validate(
        {
            "email": f"{unique_id('mql')}@example.com",
            "country": "FR",
            "consents": [
                {
                    "channel": "email",
                    "source_url": "https://example.com/form",
                    "wording_version": "v1",
                }
            ],
        }
    )
    with Session(engine) as session:
        public, created = save_sign_up(
            session=session, data=data, default_phone_region="FR", settings=settings
        )
    assert created and public.stage == "mql"
    with Session(engine) as session:
        events = session.exec(select(ScoreEvent).where(ScoreEvent.lead_id == public.id)).all()
        notes = session.exec(
            select(MqlNotification).where(MqlNotification.lead_id == public.id)
        ).all()
        lead = session.get(Lead, public.id)
    assert [e.event for e in events] == ["form_submitted", "fit"]
    assert public.score == lead.score == form + 5
    assert [(n.score, n.threshold, n.reason) for n in notes] == [
        (lead.score, form + 1, "fit rule target_country: country is FR")
    ]
    assert lead.last_activity_at is not None and lead.last_signup_at is not None

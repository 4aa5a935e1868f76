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

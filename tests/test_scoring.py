"""Scoring rules as configuration: the YAML file, checked at start; page views, forms and fit
scored by the API per the rules, each change a score event with its reason, idempotently."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from api import crud
from api.main import create_app
from api.schemas import LeadCreate
from relance.dev.seeding import make_lead_factory, unique_id
from relance.domain.models import Lead, MqlNotification, ScoreEvent
from relance.domain.scoring import Change, apply_scores
from relance.domain.scoring_rules import RulesError, load_rules
from tests.conftest import EMAIL_CONSENT

ROOT = Path(__file__).resolve().parent.parent


def test_the_shipped_rules_give_the_issue_numbers(settings):
    rules = settings.scoring_rules()
    assert {
        k: rules.events[k] for k in ("email_opened", "email_clicked", "form_submitted", "purchase")
    } == {"email_opened": 1, "email_clicked": 3, "form_submitted": 15, "purchase": 25}
    assert rules.page_points("https://shop.example.com/pricing?plan=pro") == ("pricing", 10)
    assert rules.page_points("https://shop.example.com/blog/hello") == ("page_view", 0)
    assert rules.decay.percent == 10 and rules.decay.every_days == 30


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("events: {email_clicked: 3}", "events: give points (0 is fine) for email_opened"),
        (
            "events: {email_opened: 1, email_clicked: 3, form_submitted: 15, purchase: 25, "
            "reengaged: 10, page_view: 0}\n"
            "pages: [{name: pricing, url_pattern: '/pricing(', points: 10}]",
            "pages.0.url_pattern",
        ),
        (
            "events: {email_opened: 1, email_clicked: 3, form_submitted: 15, purchase: 25, "
            "reengaged: 10, page_view: 0}\n"
            "fit: [{name: fr, field: salary, in: [FR], points: 5}]",
            "fit.0.field",
        ),
        (
            "events: {email_opened: one, email_clicked: 3, form_submitted: 15, purchase: 25, "
            "reengaged: 10, page_view: 0}",
            "events.email_opened",
        ),
        ("events: [1, 2", "not valid YAML"),
        ("- just a list", "expected a mapping"),
    ],
)
def test_a_broken_rules_file_is_reported_with_its_place(tmp_path, text, where):
    path = tmp_path / "scoring.yaml"
    path.write_text(text)
    with pytest.raises(RulesError) as err:
        load_rules(path)
    assert str(path) in str(err.value) and where in str(err.value)


def test_the_api_and_the_worker_refuse_to_start_with_broken_rules(tmp_path, settings):
    path = tmp_path / "scoring.yaml"
    path.write_text("events: {email_clicked: lots}")
    with pytest.raises(RulesError, match="events.email_clicked"):
        create_app(settings.model_copy(update={"scoring_rules_file": path}))
    run = subprocess.run(
        [sys.executable, "worker.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"RELANCE_SCORING_RULES_FILE": str(path), "PATH": "/usr/bin:/bin"},
    )
    assert (
        run.returncode != 0
        and "events.email_clicked" in run.stderr
        and "Traceback" not in run.stderr
    )


def events_of(engine, lead_id: str) -> list[ScoreEvent]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(ScoreEvent).where(ScoreEvent.lead_id == lead_id).order_by(col(ScoreEvent.id))
            )
        )


def sign_up(engine, settings, **fields) -> Lead:
    data = LeadCreate(
        email=f"{unique_id('score')}@example.com",
        consents=[
            {
                "channel": "email",
                "source_url": "https://example.com/demo-form",
                "wording_version": "v1",
            }
        ],
        **fields,
    )
    with Session(engine) as session:
        lead, _ = crud.upsert_lead(
            session=session, data=data, default_phone_region="FR", settings=settings
        )
        return lead


def test_a_form_scores_once_and_fit_rules_score_once(engine, settings):
    lead = sign_up(engine, settings, country="FR")
    assert lead.score == 15 + 5
    assert [(e.event, e.points) for e in events_of(engine, lead.id)] == [
        ("form_submitted", 15),
        ("fit", 5),
    ]
    assert (
        "demo-form" in events_of(engine, lead.id)[0].reason
        and "country is FR" in events_of(engine, lead.id)[1].reason
    )
    with Session(
        engine
    ) as session:  # the same form again the same day (a double submit): nothing more
        again, created = crud.upsert_lead(
            session=session,
            data=LeadCreate(
                email=lead.email,
                consents=[
                    {
                        "channel": "email",
                        "source_url": "https://example.com/demo-form",
                        "wording_version": "v1",
                    }
                ],
            ),
            default_phone_region="FR",
            settings=settings,
        )
    assert not created and again.score == 20 and len(events_of(engine, lead.id)) == 2
    other = sign_up(engine, settings, country="US")  # no fit
    assert other.score == 15


def test_a_pricing_page_view_scores_ten_once_a_day(engine, settings):
    lead = sign_up(engine, settings)
    for url in (
        "https://shop.example.com/pricing",
        "https://shop.example.com/pricing?plan=pro",
        "https://shop.example.com/blog/post",
    ):
        with Session(engine) as session:
            crud.save_page_view(session=session, lead_id=lead.id, url=url, settings=settings)
    with Session(engine) as session:
        assert session.get(Lead, lead.id).score == 15 + 10
    pricing = [e for e in events_of(engine, lead.id) if e.event == "page_view"]
    assert len(pricing) == 1 and pricing[0].points == 10 and "pricing page" in pricing[0].reason


async def test_page_view_through_the_api_scores_and_shows_on_the_lead(live):
    created = (
        await live.http.post(
            "/leads", json={"email": f"{unique_id('pv')}@example.com", "consents": [EMAIL_CONSENT]}
        )
    ).json()["lead"]
    for _ in range(2):  # the shop retries
        r = await live.http.post(
            "/events/track",
            json={
                "type": "page_view",
                "lead": created["id"],
                "url": "https://shop.example.com/en/pricing",
            },
        )
        assert r.status_code == 202, r.text
    lead = (await live.http.get(f"/leads/{created['id']}")).json()
    assert lead["score"] == 15 + 10


async def test_concurrent_identical_page_views_score_once(live):
    import asyncio

    created = (
        await live.http.post("/leads", json={"email": f"{unique_id('race')}@example.com"})
    ).json()["lead"]
    view = {"type": "page_view", "lead": created["id"], "url": "https://shop.example.com/pricing"}
    responses = await asyncio.gather(
        *(live.http.post("/events/track", json=view) for _ in range(10))
    )
    assert [r.status_code for r in responses] == [202] * 10
    assert (await live.http.get(f"/leads/{created['id']}")).json()["score"] == 15 + 10


def test_a_batch_of_scores_counts_each_key_once_and_tells_sales_of_the_change_that_crossed(
    engine, settings
):
    """The outbox scores a stamp's opens and clicks together (``apply_scores``): exactly what
    applying them one by one gives — a key counted before, or twice in the batch, counts once;
    the change that takes the score across the MQL threshold queues one notification with its
    reason; a lead a journey raised to mql is no news."""
    check_a_batch_of_scores(engine, settings.score_mql_threshold)


def check_a_batch_of_scores(engine, threshold: int) -> None:
    """The scenario, on any database (tests/test_postgres.py runs it on PostgreSQL)."""
    make_lead = make_lead_factory(engine)
    near, raised, other = make_lead(), make_lead(), make_lead()
    with Session(engine) as session:
        for lead, score, floor in ((near, threshold - 2, None), (raised, threshold - 1, "mql")):
            row = session.get(Lead, lead.id)
            row.score, row.stage_floor = score, floor
            session.add(row)
        session.add(
            ScoreEvent(lead_id=near.id, key="open:m0", event="email_opened", points=1, reason="x")
        )
        session.commit()

    def opened(message: str) -> Change:
        return Change("email_opened", f"open:{message}", f"opened message {message}", 1)

    changes = [
        (near.id, opened("m0")),  # counted before this batch
        (near.id, opened("m1")),
        (near.id, opened("m1")),  # the same hit twice in the batch
        (near.id, opened("m2")),  # threshold - 2 + 1 + 1: this one crosses
        (near.id, opened("m3")),
        (raised.id, opened("r1")),
        (other.id, Change("email_clicked", "w:click:o1", "clicked a link", 3)),
    ]
    with Session(engine) as session:
        counted = apply_scores(session, changes, mql_threshold=threshold)
        session.commit()

    assert counted == 5
    with Session(engine) as session:
        scores = {lead.id: session.get(Lead, lead.id).score for lead in (near, raised, other)}
        notified = session.exec(
            select(MqlNotification).where(
                col(MqlNotification.lead_id).in_([near.id, raised.id, other.id])
            )
        ).all()
        keys = session.exec(select(ScoreEvent.key).where(col(ScoreEvent.lead_id) == near.id)).all()
    assert scores == {near.id: threshold + 1, raised.id: threshold, other.id: 3}
    assert [(n.lead_id, n.score, n.reason) for n in notified] == [
        (near.id, threshold, "opened message m2")
    ]
    assert sorted(keys) == ["open:m0", "open:m1", "open:m2", "open:m3"]

"""Score decay: -10 % per 30 days without activity, each decay a score event with its reason,
applied by a daily sweep (a Temporal Schedule) in pages. On a database of its own, since the
sweep looks at every lead."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, col, select
from temporalio.worker import Worker

from activities import build_activities
from activities.scoring import decay_page
from relance.contracts.scoring import DecayInput, DecayPage
from relance.dev.seeding import unique_id
from relance.domain.db import make_engine
from relance.domain.models import Lead, ScoreEvent
from relance.services import migrate
from relance.services.schedules import SCORE_DECAY_SCHEDULE_ID, ensure_score_decay_schedule
from tests.test_reengagement_schedule import listed
from workflows.decay import ScoreDecaySweep

NOW = datetime(2026, 6, 1, 5, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def own(tmp_path_factory, settings):
    url = f"sqlite:///{tmp_path_factory.mktemp('decay') / 'decay.db'}"
    migrate.upgrade(url)
    return make_engine(url), settings.model_copy(update={"database_url": url})


def lead_with(engine, score: int, inactive_days: float) -> str:
    with Session(engine) as session:
        lead = Lead(
            email=f"{unique_id('decay')}@example.com",
            score=score,
            created_at=NOW - timedelta(days=400),
            last_activity_at=NOW - timedelta(days=inactive_days),
        )
        session.add(lead)
        session.commit()
        return lead.id


def score_and_events(engine, lead_id: str) -> tuple[int, list[ScoreEvent]]:
    with Session(engine) as session:
        return session.get(Lead, lead_id).score, list(
            session.exec(
                select(ScoreEvent).where(ScoreEvent.lead_id == lead_id).order_by(col(ScoreEvent.id))
            )
        )


def test_ten_percent_per_thirty_days_without_activity_once_per_period(own):
    engine, settings = own
    idle, active, long_idle = (
        lead_with(engine, 100, 31),
        lead_with(engine, 100, 29),
        lead_with(engine, 100, 65),
    )
    first = decay_page(engine, settings, DecayPage(now=NOW, limit=500))
    assert first.decayed >= 3 and first.next_cursor is None
    score, events = score_and_events(engine, idle)
    assert score == 90 and [(e.event, e.points) for e in events] == [("decay", -10)]
    assert "10 % after 30 days without activity" in events[0].reason
    assert score_and_events(engine, active) == (100, [])
    assert score_and_events(engine, long_idle)[0] == 81  # two periods: 100 -> 90 -> 81
    # The same day again (a retried page, a second run): nothing more.
    decay_page(engine, settings, DecayPage(now=NOW + timedelta(hours=3)))
    assert score_and_events(engine, idle)[0] == 90
    # Thirty days later, still idle: one more period.
    decay_page(engine, settings, DecayPage(now=NOW + timedelta(days=30)))
    assert score_and_events(engine, idle)[0] == 81
    # Decay is not activity: the last activity stays where it was.
    with Session(engine) as session:
        assert session.get(Lead, idle).last_activity_at.replace(tzinfo=UTC) == NOW - timedelta(
            days=31
        )


def test_small_scores_reach_zero_and_never_go_below(own):
    engine, settings = own
    lead_id = lead_with(engine, 2, 200)  # six periods
    decay_page(engine, settings, DecayPage(now=NOW))
    score, events = score_and_events(engine, lead_id)
    assert score == 0 and [e.points for e in events] == [-1, -1]


async def test_the_sweep_runs_in_pages(own, time_skipping_env):
    engine, settings = own
    later = NOW + timedelta(days=400)  # every lead of this database is idle by then
    with Session(engine) as session:
        expected = len(session.exec(select(Lead.id).where(col(Lead.score) > 0)).all())
    queue = unique_id("decay")
    async with Worker(
        time_skipping_env.client,
        task_queue=queue,
        workflows=[ScoreDecaySweep],
        activities=build_activities(settings, engine),
        activity_executor=ThreadPoolExecutor(4),
    ):
        result = await time_skipping_env.client.execute_workflow(
            ScoreDecaySweep.run,
            DecayInput(batch_size=2, now=later),
            id=unique_id("score-decay"),
            task_queue=queue,
        )
    assert expected >= 3 and result.leads == expected and result.pages == -(-expected // 2)
    assert result.decayed >= expected and result.points < 0
    with Session(engine) as session:  # every lead with points lost some, each with its score event
        assert all(
            e.event == "decay"
            for e in session.exec(select(ScoreEvent).where(ScoreEvent.created_at == later))
        )


async def test_the_decay_schedule_is_created_once(dev_server_env, settings):
    client = dev_server_env.client
    await ensure_score_decay_schedule(client, settings)
    await ensure_score_decay_schedule(
        client, settings.model_copy(update={"score_decay_schedule_hour": 3})
    )
    description = await client.get_schedule_handle(SCORE_DECAY_SCHEDULE_ID).describe()
    [calendar] = description.schedule.spec.calendars
    assert [(r.start, r.end) for r in calendar.hour] == [(3, 3)]
    assert description.schedule.action.workflow == "ScoreDecaySweep"
    assert await listed(client, SCORE_DECAY_SCHEDULE_ID) == 1
    await client.get_schedule_handle(SCORE_DECAY_SCHEDULE_ID).delete()

"""The re-engagement sweep on a real dev server, over a seeded scratch database.

The journeys the sweep starts go to a task queue no worker polls: these tests are about who
gets a journey (the journey itself is tested in tests/test_reengagement_journey.py), and they
stay there, started and waiting, exactly as Temporal recorded the sweep's start.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, insert
from sqlalchemy.engine import Engine
from sqlmodel import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import build_activities
from activities.reengagement import ReEngagementActivities
from relance.contracts import search_attributes
from relance.contracts.reengagement import SweepInput
from relance.domain.db import make_engine, session_scope
from relance.domain.models import Consent, Lead, utcnow
from relance.domain.settings import Settings
from relance.services import migrate
from relance.services.schedules import sweep_input
from relance.services.temporal import bundled_binary
from worker import build_worker
from workflows.reengagement import ReEngagementInput, ReEngagementJourney
from workflows.sweep import ReEngagementSweep, SweepResult

SWEEP_QUEUE = "sweep"
JOURNEY_QUEUE = "reengage-no-worker"  # journeys are started here and wait: nobody polls it


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server of their own: the 20,000 journeys must not slow the other end-to-end tests."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=bundled_binary("temporal"), search_attributes=search_attributes.ALL
    )
    yield env
    await env.shutdown()


@pytest.fixture
def scratch_engine(tmp_path) -> Engine:
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    migrate.upgrade(url)
    return make_engine(url)


def sweep_settings(settings: Settings, engine: Engine) -> Settings:
    return settings.model_copy(
        update={"database_url": str(engine.url), "temporal_task_queue": JOURNEY_QUEUE}
    )


def seed(
    engine: Engine,
    *,
    count: int,
    last_activity_days_ago: float | None,
    created_days_ago: float = 400,
    consent: str | None = "granted",
    status: str | None = None,
    status_days_ago: float = 0,
) -> list[str]:
    """Bulk-insert ``count`` leads (and their latest email consent) straight into the database."""
    now = utcnow()
    ids = [uuid.uuid4().hex for _ in range(count)]
    last = (
        now - timedelta(days=last_activity_days_ago) if last_activity_days_ago is not None else None
    )
    leads = [
        dict(
            id=i,
            email=f"{i}@example.com",
            locale="en",
            time_zone="UTC",
            score=0,
            created_at=now - timedelta(days=created_days_ago),
            updated_at=now,
            last_activity_at=last,
            reengagement_status=status,
            reengagement_at=now - timedelta(days=status_days_ago) if status else None,
        )
        for i in ids
    ]
    with session_scope(engine) as session:
        session.execute(insert(Lead), leads)
        if consent == "withdrawn":  # granted first, then withdrawn: the latest row counts
            session.execute(
                insert(Consent),
                [
                    dict(
                        lead_id=i,
                        channel="email",
                        purpose="marketing",
                        status="granted",
                        recorded_at=now - timedelta(days=300),
                    )
                    for i in ids
                ],
            )
        if consent:
            session.execute(
                insert(Consent),
                [
                    dict(
                        lead_id=i,
                        channel="email",
                        purpose="marketing",
                        status=consent,
                        recorded_at=now - timedelta(days=200),
                    )
                    for i in ids
                ],
            )
    return ids


async def run_sweep(
    client: Client, settings: Settings, engine: Engine, **knobs
) -> tuple[SweepResult, str]:
    async with build_worker(
        client, sweep_settings(settings, engine), engine, task_queue=SWEEP_QUEUE
    ):
        handle = await client.start_workflow(
            ReEngagementSweep.run,
            SweepInput(**knobs),
            id=f"sweep-{uuid.uuid4().hex}",
            task_queue=SWEEP_QUEUE,
        )
        return await handle.result(), handle.id


async def journey_state(client: Client, lead_id: str) -> WorkflowExecutionStatus | None:
    try:
        return (await client.get_workflow_handle(f"reengage-{lead_id}").describe()).status
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def test_the_sweep_starts_journeys_only_for_inactive_consenting_not_enrolled_leads_once(
    server, settings, scratch_engine
):
    client = server.client
    inactive = seed(scratch_engine, count=3, last_activity_days_ago=90)
    never_active_old = seed(
        scratch_engine, count=1, last_activity_days_ago=None, created_days_ago=90
    )
    never_active_new = seed(
        scratch_engine, count=1, last_activity_days_ago=None, created_days_ago=10
    )
    recently_active = seed(scratch_engine, count=2, last_activity_days_ago=20)
    no_consent = seed(scratch_engine, count=1, last_activity_days_ago=90, consent=None)
    withdrawn = seed(scratch_engine, count=1, last_activity_days_ago=90, consent="withdrawn")
    suppressed_by_sunset = seed(
        scratch_engine,
        count=1,
        last_activity_days_ago=200,
        consent="withdrawn",
        status="sunset_suppressed",
    )
    enrolled_in_db = seed(scratch_engine, count=1, last_activity_days_ago=90, status="in_journey")
    # Already in a running journey that the database does not know of yet (an overlapping sweep).
    [running] = seed(scratch_engine, count=1, last_activity_days_ago=90)
    await client.start_workflow(
        ReEngagementJourney.run,
        ReEngagementInput(running),
        id=f"reengage-{running}",
        task_queue=JOURNEY_QUEUE,
    )
    # Came back after an earlier re-engagement (ended 80 days ago), then went quiet again: eligible
    # again; but not a lead whose earlier run ended within the re-enrollment cooldown (30 days).
    again = seed(
        scratch_engine, count=1, last_activity_days_ago=70, status="re_engaged", status_days_ago=80
    )
    cooling = seed(
        scratch_engine, count=1, last_activity_days_ago=70, status="converted", status_days_ago=10
    )

    first, _ = await run_sweep(client, settings, scratch_engine, inactive_days=60, batch_size=2)

    expected = set(inactive + never_active_old + again)
    assert first.started == len(expected) and first.already_enrolled == 1
    for lead_id in expected | {running}:
        assert await journey_state(client, lead_id) == WorkflowExecutionStatus.RUNNING, lead_id
    for lead_id in (
        never_active_new
        + recently_active
        + no_consent
        + withdrawn
        + suppressed_by_sunset
        + enrolled_in_db
        + cooling
    ):
        assert await journey_state(client, lead_id) is None, lead_id
    with session_scope(scratch_engine) as session:
        assert {session.get(Lead, i).reengagement_status for i in expected | {running}} == {
            "in_journey"
        }

    second, _ = await run_sweep(client, settings, scratch_engine, inactive_days=60, batch_size=2)
    assert (second.started, second.already_enrolled, second.leads) == (0, 0, 0)


async def test_a_one_shot_campaign_can_use_another_inactivity(server, settings, scratch_engine):
    quiet_for_40_days = seed(scratch_engine, count=2, last_activity_days_ago=40)
    default, _ = await run_sweep(server.client, settings, scratch_engine, **sweep_input(settings))
    assert default.started == 0
    campaign, _ = await run_sweep(server.client, settings, scratch_engine, inactive_days=30)
    assert campaign.started == 2
    for lead_id in quiet_for_40_days:
        assert await journey_state(server.client, lead_id) == WorkflowExecutionStatus.RUNNING


async def largest_history(client: Client, workflow_id: str, first_run_id: str) -> tuple[int, int]:
    """Follow the continue-as-new chain from the first run: (runs, events in the largest
    history)."""
    run_id, runs, largest = first_run_id, 0, 0
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs, largest = runs + 1, max(largest, len(history.events))
        last = history.events[-1]
        run_id = (
            last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
            else None
        )
    return runs, largest


class CountedStarts(ReEngagementActivities):
    """The sweep's activities, with the journey start counted instead of sent to Temporal.

    Temporal's dev server takes about 100 starts a second on a loaded 2-core machine, so 20,000
    real starts would take 200 s and measure the server, not the sweep. Real starts are tested
    above; here the sweep itself runs for real (its pages, cursor, continue-as-new and history)."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        super().__init__(settings, engine)
        self.started: list[str] = []
        self._seen: set[str] = set()

    async def start_journey(self, lead_id: str) -> bool:
        if lead_id in self._seen:
            return False
        self._seen.add(lead_id)
        self.started.append(lead_id)
        return True


async def test_a_sweep_over_20000_leads_completes_with_small_histories(
    server, settings, scratch_engine
):
    seeded_at = time.monotonic()
    inactive = seed(scratch_engine, count=20_000, last_activity_days_ago=75)
    seed(scratch_engine, count=2_000, last_activity_days_ago=5)
    seeded_at = time.monotonic() - seeded_at

    client, knobs = server.client, sweep_settings(settings, scratch_engine)
    counted = CountedStarts(knobs, scratch_engine)
    activities = [
        a for a in build_activities(knobs, scratch_engine) if a.__name__ != "enroll_inactive_page"
    ]
    swept_at = time.monotonic()
    async with Worker(
        client,
        task_queue=SWEEP_QUEUE,
        workflows=[ReEngagementSweep],
        activities=[*activities, counted.enroll_inactive_page],
        activity_executor=ThreadPoolExecutor(max_workers=4),
    ):
        handle = await client.start_workflow(
            ReEngagementSweep.run,
            SweepInput(inactive_days=60, batch_size=500, pages_per_run=10),
            id=f"sweep-{uuid.uuid4().hex}",
            task_queue=SWEEP_QUEUE,
        )
        result: SweepResult = await handle.result()
    swept_at = time.monotonic() - swept_at
    print(f"seeded 22,000 leads in {seeded_at:.1f} s; swept 20,000 in {swept_at:.1f} s")

    assert result.started == 20_000 and result.leads == 20_000 and result.pages == 40
    assert sorted(counted.started) == sorted(inactive)  # each inactive lead once, no active one
    first_run = (await handle.describe()).raw_description.workflow_execution_info.first_run_id
    runs, largest = await largest_history(client, handle.id, first_run)
    print(f"{runs} runs, largest history {largest} events")
    assert runs == result.runs == 4  # continued as new every 10 pages
    assert largest < 10_000
    with session_scope(scratch_engine) as session:
        assert (
            session.exec(select(func.count()).where(Lead.reengagement_status == "in_journey")).one()
            == 20_000
        )

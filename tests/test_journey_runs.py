"""A journey's run in ``journey_runs`` (what the reports count), recorded at no Temporal action
for its entry: the worker writes the entry with the run's first activity, at the workflow's start
time however late that activity comes, once however often it is retried or told."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select
from temporalio.api.enums.v1 import EventType
from temporalio.testing import ActivityEnvironment

from activities.runs import RunEntries, write_run
from relance.contracts.definitions import DefinedJourneyInput, workflow_id
from relance.contracts.runs import JourneyRunRecord
from relance.contracts.signals import CLICKED, TrackingSignal
from relance.dev.seeding import unique_id
from relance.domain.models import JourneyRun, as_utc
from relance.services.definitions import checked, compile_definition
from tests.waiting import eventually
from worker import build_worker
from workflows.defined import DefinedJourney

# A journey that waits before its first step that runs an activity (the invitation). Seconds, on
# the dev server's real clock: a journey stopped mid-activity would freeze the shared
# time-skipping server's clock for the tests after it.
LATE_FIRST_STEP = {
    "name": "late first step",
    "topic": "newsletter",
    "nodes": [
        {"id": "pause", "type": "delay", "duration": "PT4S", "next": "invite"},
        {"id": "invite", "type": "message", "template": "nurture_white_paper", "next": "click"},
        {
            "id": "click",
            "type": "wait_for",
            "event": "clicked",
            "message": "invite",
            "within": "1h",
            "then": "done",
            "timeout": "done",
        },
        {"id": "done", "type": "exit"},
    ],
}


def runs_of(engine, lead_id: str) -> list[JourneyRun]:
    with Session(engine) as session:
        return list(session.exec(select(JourneyRun).where(JourneyRun.lead_id == lead_id)).all())


def scheduled(history) -> list[str]:
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def test_a_run_whose_first_activity_comes_late_is_entered_at_its_start_for_free(
    dev_server_env, settings, engine, sink, make_lead
):
    client = dev_server_env.client
    key = f"t_runs_{uuid.uuid4().hex[:8]}"
    compiled = compile_definition(checked({"key": key, **LATE_FIRST_STEP}), version=1)
    lead = make_lead()
    own = settings.model_copy(update={"temporal_task_queue": unique_id("runs")})
    async with build_worker(client, own, engine):
        handle = await client.start_workflow(
            DefinedJourney.run,
            DefinedJourneyInput(lead.id, compiled),
            id=workflow_id(key, lead.id),
            task_queue=own.temporal_task_queue,
        )
        started = (await handle.describe()).start_time
        await sink.wait_for_mail(to=lead.email, timeout=60)
        assert datetime.now(UTC) - started >= timedelta(seconds=4)  # the invitation came late

        # Waiting for the click: entered (at the start, not when the invitation went), not ended.
        [run] = await eventually(
            lambda: runs_of(engine, lead.id), timeout=30, what="the run's entry"
        )
        assert run.journey == key and run.closed_at is None and run.outcome is None
        assert abs(as_utc(run.entered_at) - started) < timedelta(seconds=1)  # its first task
        # No activity of its own was spent on the entry.
        assert "record_journey_run" not in scheduled(await handle.fetch_history())

        invite = (await handle.query(DefinedJourney.status)).messages[0].message_id
        await handle.signal(CLICKED, TrackingSignal(invite, "https://example.com/p"))
        result = await handle.result()

    [run] = runs_of(engine, lead.id)
    assert run.closed_at is not None and run.outcome == result.outcome.value
    assert abs(as_utc(run.entered_at) - started) < timedelta(seconds=1)  # its first task
    assert scheduled(await handle.fetch_history()).count("record_journey_run") == 1  # the end


async def test_an_entry_told_again_by_a_retry_or_another_worker_is_one_row_and_keeps_its_end(
    engine, make_lead
):
    """A retried activity carries the same entry; a worker that restarted (or another one) has
    not seen it yet; an activity may even run after the end was written (a late retry)."""
    lead = make_lead()
    entered = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    entry = JourneyRunRecord("journey-x", "ignored", lead.id, "x", entered)
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info, workflow_id=f"journey-x-{lead.id}", workflow_run_id="run-1"
    )
    header = env.payload_converter.to_payload(entry)

    first, restarted = RunEntries(engine), RunEntries(engine)
    await env.run(first.enter, header)
    await env.run(first.enter, header)  # a retry on the same worker
    await env.run(restarted.enter, header)  # on a worker that has not seen the run
    [run] = runs_of(engine, lead.id)
    # The row is the run the activity belongs to, at the workflow's start.
    assert (run.workflow_id, run.run_id) == (f"journey-x-{lead.id}", "run-1")
    assert as_utc(run.entered_at) == entered and run.closed_at is None

    ended = dataclasses.replace(
        entry,
        workflow_id=run.workflow_id,
        run_id="run-1",
        closed_at=entered + timedelta(days=2),
        outcome="clicked",
    )
    write_run(engine, ended)
    await env.run(RunEntries(engine).enter, header)  # a late retry after the end
    [run] = runs_of(engine, lead.id)
    assert run.outcome == "clicked" and as_utc(run.closed_at) == ended.closed_at

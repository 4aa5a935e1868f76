"""The Temporal Schedules Relance keeps: the daily re-engagement sweep and the daily score decay.

``ensure_reengagement_schedule`` is called at every worker start: it creates the schedule, or
updates it to the current settings when it exists already, so running it twice leaves one
schedule (visible in the Temporal UI's Schedules page and with ``temporal schedule list``).
"""

from __future__ import annotations

import logging

from temporalio.client import (Client, Schedule, ScheduleActionStartWorkflow, ScheduleAlreadyRunningError,
                               ScheduleCalendarSpec, ScheduleOverlapPolicy, SchedulePolicy, ScheduleRange,
                               ScheduleSpec, ScheduleState, ScheduleUpdate, ScheduleUpdateInput)

from relance.settings import Settings
from workflows.decay import DecayInput, ScoreDecaySweep
from workflows.sweep import ReEngagementSweep, SweepInput

log = logging.getLogger("relance.schedules")

REENGAGEMENT_SCHEDULE_ID = "reengagement-sweep"
SCORE_DECAY_SCHEDULE_ID = "score-decay"


def sweep_input(settings: Settings, *, inactive_days: float | None = None) -> SweepInput:
    return SweepInput(inactive_days=inactive_days if inactive_days is not None else settings.reengagement_inactive_days,
                      batch_size=settings.reengagement_batch_size)


def reengagement_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ReEngagementSweep.run,
            sweep_input(settings),
            id=REENGAGEMENT_SCHEDULE_ID,  # Temporal appends the scheduled time
            task_queue=settings.temporal_task_queue,
            static_summary="daily re-engagement sweep",
        ),
        spec=ScheduleSpec(calendars=[ScheduleCalendarSpec(
            hour=[ScheduleRange(settings.reengagement_schedule_hour)],
            minute=[ScheduleRange(settings.reengagement_schedule_minute)],
            second=[ScheduleRange(0)],
            comment="daily re-engagement sweep (UTC)",
        )]),
        # A sweep still running (a huge base) is not doubled by the next day's.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(paused=not settings.reengagement_schedule_enabled,
                            note="RELANCE_REENGAGEMENT_SCHEDULE_ENABLED is false" if not settings.reengagement_schedule_enabled
                            else "created by the Relance worker"),
    )


def score_decay_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ScoreDecaySweep.run,
            DecayInput(batch_size=settings.score_decay_batch_size),
            id=SCORE_DECAY_SCHEDULE_ID,  # Temporal appends the scheduled time
            task_queue=settings.temporal_task_queue,
            static_summary="daily score decay",
        ),
        spec=ScheduleSpec(calendars=[ScheduleCalendarSpec(
            hour=[ScheduleRange(settings.score_decay_schedule_hour)],
            minute=[ScheduleRange(settings.score_decay_schedule_minute)],
            second=[ScheduleRange(0)],
            comment="daily score decay (UTC)",
        )]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note="created by the Relance worker"),
    )


async def _ensure(client: Client, schedule_id: str, schedule: Schedule) -> None:
    try:
        await client.create_schedule(schedule_id, schedule)
        log.info("created schedule %r", schedule_id)
    except ScheduleAlreadyRunningError:
        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(update)
        log.info("updated schedule %r", schedule_id)


async def ensure_reengagement_schedule(client: Client, settings: Settings) -> None:
    """Create the daily sweep's schedule, or bring the existing one to the current settings."""
    await _ensure(client, REENGAGEMENT_SCHEDULE_ID, reengagement_schedule(settings))


async def ensure_score_decay_schedule(client: Client, settings: Settings) -> None:
    """Create the daily score decay's schedule, or bring the existing one to the current settings."""
    await _ensure(client, SCORE_DECAY_SCHEDULE_ID, score_decay_schedule(settings))

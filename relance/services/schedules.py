"""The Temporal Schedules Relance keeps: the daily re-engagement sweep, the daily score decay and
the hourly sweep of the defined journeys' date and segment triggers (every hour, so a birthday
at 09:00 is honoured in every lead's time zone).

``ensure_reengagement_schedule`` is called at every worker start: it creates the schedule, or
updates it to the current settings when it exists already, so running it twice leaves one
schedule (visible in the Temporal UI's Schedules page and with ``temporal schedule list``).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from relance.contracts import catalogue
from relance.domain.settings import Settings

log = logging.getLogger("relance.services.schedules")

REENGAGEMENT_SCHEDULE_ID = "reengagement-sweep"
SCORE_DECAY_SCHEDULE_ID = "score-decay"


REENGAGEMENT_SWEEP = catalogue.entry("reengagement-sweep")
SCORE_DECAY = catalogue.entry("score-decay")
TRIGGER_SWEEP_SCHEDULE_ID = "trigger-sweep"
TRIGGER_SWEEP = catalogue.entry("trigger-sweep")


def sweep_input(settings: Settings, *, inactive_days: float | None = None) -> dict:
    return REENGAGEMENT_SWEEP.input(settings, inactive_days=inactive_days)


def _daily(
    workflow_type: str,
    input: dict,
    *,
    schedule_id: str,
    settings: Settings,
    hour: int,
    minute: int,
    what: str,
    paused_because: str = "",
) -> Schedule:
    """A workflow started every day at hour:minute UTC; a run still going is not doubled by the
    next."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            workflow_type,
            args=[input],
            id=schedule_id,  # Temporal appends the scheduled time
            task_queue=settings.temporal_task_queue,
            static_summary=what,
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    hour=[ScheduleRange(hour)],
                    minute=[ScheduleRange(minute)],
                    second=[ScheduleRange(0)],
                    comment=f"{what} (UTC)",
                )
            ]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(
            paused=bool(paused_because), note=paused_because or "created by the Relance worker"
        ),
    )


def reengagement_schedule(settings: Settings) -> Schedule:
    return _daily(
        REENGAGEMENT_SWEEP.workflow_type,
        sweep_input(settings),
        schedule_id=REENGAGEMENT_SCHEDULE_ID,
        settings=settings,
        hour=settings.reengagement_schedule_hour,
        minute=settings.reengagement_schedule_minute,
        what="daily re-engagement sweep",
        paused_because=""
        if settings.reengagement_schedule_enabled
        else "RELANCE_REENGAGEMENT_SCHEDULE_ENABLED is false",
    )


def score_decay_schedule(settings: Settings) -> Schedule:
    return _daily(
        SCORE_DECAY.workflow_type,
        SCORE_DECAY.input(settings),
        schedule_id=SCORE_DECAY_SCHEDULE_ID,
        settings=settings,
        hour=settings.score_decay_schedule_hour,
        minute=settings.score_decay_schedule_minute,
        what="daily score decay",
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
    """Create the daily score decay's schedule, or bring the existing one to the current
    settings."""
    await _ensure(client, SCORE_DECAY_SCHEDULE_ID, score_decay_schedule(settings))


def trigger_sweep_schedule(settings: Settings) -> Schedule:
    """Every hour on the hour (UTC): the date triggers due in the leads' zones, the segments'
    new members. A run still going is not doubled by the next."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            TRIGGER_SWEEP.workflow_type,
            args=[TRIGGER_SWEEP.input(settings)],
            id=TRIGGER_SWEEP_SCHEDULE_ID,  # Temporal appends the scheduled time
            task_queue=settings.temporal_task_queue,
            static_summary="hourly date and segment triggers",
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note="created by the Relance worker"),
    )


async def ensure_trigger_sweep_schedule(client: Client, settings: Settings) -> None:
    """Create the hourly trigger sweep's schedule, or bring the existing one up to date."""
    await _ensure(client, TRIGGER_SWEEP_SCHEDULE_ID, trigger_sweep_schedule(settings))

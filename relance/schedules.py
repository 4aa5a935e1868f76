"""The Temporal Schedules Relance keeps: the daily re-engagement sweep.

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
from workflows.sweep import ReEngagementSweep, SweepInput

log = logging.getLogger("relance.schedules")

REENGAGEMENT_SCHEDULE_ID = "reengagement-sweep"


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


async def ensure_reengagement_schedule(client: Client, settings: Settings) -> None:
    """Create the daily sweep's schedule, or bring the existing one to the current settings."""
    schedule = reengagement_schedule(settings)
    try:
        await client.create_schedule(REENGAGEMENT_SCHEDULE_ID, schedule)
        log.info("created schedule %r", REENGAGEMENT_SCHEDULE_ID)
    except ScheduleAlreadyRunningError:
        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(REENGAGEMENT_SCHEDULE_ID).update(update)
        log.info("updated schedule %r", REENGAGEMENT_SCHEDULE_ID)

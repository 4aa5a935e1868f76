"""The daily sweep's Temporal Schedule, on the real dev server: created once, updated in place."""

from __future__ import annotations

import asyncio

from temporalio.client import ScheduleActionStartWorkflow

from relance.services.schedules import REENGAGEMENT_SCHEDULE_ID, ensure_reengagement_schedule


async def listed(client, schedule_id: str) -> int:
    """How many schedules with this id the list shows (the list is eventually consistent: wait for
    one)."""
    for _ in range(100):
        count = [s.id async for s in await client.list_schedules()].count(schedule_id)
        if count:
            return count
        await asyncio.sleep(0.05)
    return 0


async def test_ensuring_the_schedule_twice_leaves_one_with_the_settings_spec(
    dev_server_env, settings
):
    client = dev_server_env.client
    await ensure_reengagement_schedule(client, settings)
    await ensure_reengagement_schedule(
        client,
        settings.model_copy(
            update={
                "reengagement_schedule_hour": 4,
                "reengagement_schedule_minute": 30,
                "reengagement_inactive_days": 90,
            }
        ),
    )

    description = await client.get_schedule_handle(REENGAGEMENT_SCHEDULE_ID).describe()
    [calendar] = description.schedule.spec.calendars
    assert [(r.start, r.end) for r in calendar.hour] == [(4, 4)]
    assert [(r.start, r.end) for r in calendar.minute] == [(30, 30)]
    action = description.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert (
        action.workflow == "ReEngagementSweep" and action.task_queue == settings.temporal_task_queue
    )
    [sweep_input] = await client.data_converter.decode(action.args)
    assert sweep_input["inactive_days"] == 90
    assert description.schedule.state.paused is False
    # The next run is the next 04:30 UTC.
    [next_run, *_] = description.info.next_action_times
    assert (next_run.hour, next_run.minute) == (4, 30)
    assert await listed(client, REENGAGEMENT_SCHEDULE_ID) == 1
    await client.get_schedule_handle(REENGAGEMENT_SCHEDULE_ID).delete()

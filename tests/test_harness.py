"""The test harness itself: what the suite's fixtures promise every test module."""

from __future__ import annotations

from datetime import timedelta

from tests.test_defined_journey import EXIT, definition, start, status_at
from tests.waiting import finished
from worker import build_worker


async def test_a_journey_a_stopped_worker_held_moves_on_with_the_next_worker(
    time_skipping_env, settings, engine, make_lead
):
    """Each test stops its worker, and a journey left waiting (a shipped birthday journey's three
    days, say) goes on under the next test's worker. On the time-skipping server a journey a
    stopped worker kept in its cache had its next step sent to that worker alone, and the clock
    of every later test in the module stood still: so the suite's workers keep none."""
    client = time_skipping_env.client
    lead = make_lead()
    data = definition({"id": "pause", "type": "delay", "duration": "2d", "next": "done"}, EXIT)
    async with build_worker(client, settings, engine):
        handle = await start(client, settings, lead, data)
        await status_at(handle, "delay:pause")
    async with build_worker(client, settings, engine):
        await time_skipping_env.sleep(timedelta(days=3))
        result = await finished(handle, timeout=20)
    assert result.path == ["pause", "done"]

"""Simulated time: whole journeys, weeks of a lead's life, on Temporal's time-skipping test
server with the real activities, SQLite and SMTP sink — wall time per journey, against the
same server running a bare workflow that only sleeps as long (the baseline: what skipping that
much time costs at the least)."""

from __future__ import annotations

import statistics
import time
from datetime import timedelta

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.results import Row
from bench.sleep_workflow import BenchSleep
from bench.stack import Stack, say
from relance.dev.seeding import TEST_CONVERTER, make_event, make_lead_factory, update_cart
from relance.dev.seeding import start_event_journey as start
from relance.services.temporal import bundled_binary, ensure_search_attributes
from workflows.reengagement import ReEngagementInput, ReEngagementJourney
from workflows.welcome import WelcomeInput, WelcomeJourney

BASELINE_RUNS = 25  # bare sleeps per journey: its median is the baseline


async def run(stack: Stack, args) -> list[Row]:
    from worker import build_worker

    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=bundled_binary("temporal-test-server"),
        data_converter=TEST_CONVERTER,
    )
    await ensure_search_attributes(env.client, "default")
    settings = stack.settings.model_copy(
        update={
            "payload_keys": {},
            "temporal_task_queue": "bench-simulated",
            # Off, as for the worker the other benchmarks start (bench/stack.py): with the send
            # window on, a journey's first send waits for the window, and the figures would
            # depend on the hour the benchmark runs.
            "send_window_enabled": False,
        }
    )
    make_lead = make_lead_factory(stack.engine)
    client = env.client
    queue = settings.temporal_task_queue
    rows = []
    try:
        async with (
            build_worker(client, settings, stack.engine),
            Worker(client, task_queue="bench-sleep", workflows=[BenchSleep]),
        ):

            async def timed(name: str, simulated: timedelta, go) -> None:
                walls = []
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    await go()
                    walls.append(time.perf_counter() - started)
                await_sleep = []
                for _ in range(BASELINE_RUNS):  # a bare sleep takes milliseconds: many runs
                    started = time.perf_counter()
                    await client.execute_workflow(
                        BenchSleep.run,
                        simulated.total_seconds(),
                        id=f"sleep-{time.time_ns()}",
                        task_queue="bench-sleep",
                    )
                    await_sleep.append(time.perf_counter() - started)
                wall, bare = min(walls), statistics.median(await_sleep)
                say(
                    f"simulated: {name}: {simulated.days} days in {wall * 1000:.1f} ms "
                    f"(a bare {simulated.days}-day sleep: {bare * 1000:.1f} ms)"
                )
                rows.append(
                    Row(
                        f"simulated time: {name}",
                        f"{wall / bare:.1f}×",
                        "wall time per journey (no target)",
                        f"{simulated.days} simulated days in {wall * 1000:.1f} ms (best of "
                        f"{args.repeat}) vs a bare sleep as long in {bare * 1000:.1f} ms (median "
                        f"of {BASELINE_RUNS})",
                    )
                )

            async def welcome() -> None:
                lead = make_lead()
                await client.execute_workflow(
                    WelcomeJourney.run,
                    WelcomeInput(lead.id, relance_by_sms=False),
                    id=f"welcome-{lead.id}",
                    task_queue=queue,
                )

            async def cart() -> None:
                lead = make_lead()
                handle = await update_cart(
                    client, settings, stack.engine, lead.id, f"bench-{lead.id}"
                )
                await handle.result()

            async def event() -> None:
                lead = make_lead()
                now = await env.get_current_time()
                handle = await start(
                    client, settings, make_event(stack.engine, now + timedelta(days=10)), lead
                )
                await handle.result()

            async def reengagement() -> None:
                lead = make_lead()
                await client.execute_workflow(
                    ReEngagementJourney.run,
                    ReEngagementInput(lead.id),
                    id=f"reengage-{lead.id}",
                    task_queue=queue,
                )

            say("simulated: running each journey to its end on the time-skipping server")
            await timed(
                "welcome, no reaction (48 h relance, 7-day window)", timedelta(days=7), welcome
            )
            await timed(
                "abandoned cart, three reminders (1 h, 25 h, 97 h)", timedelta(days=4), cart
            )
            await timed(
                "event reminders, registered 10 days before (thanks, D-1, H-1, follow-up, next)",
                timedelta(days=18),
                event,
            )
            await timed(
                "re-engagement, no reaction (3 emails 7 days apart, sunset)",
                timedelta(days=21),
                reengagement,
            )
    finally:
        await env.shutdown()
    return rows

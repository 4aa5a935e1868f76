"""Journeys as data against journeys as code: what one run of a defined journey costs Temporal
(history events, activities) and the worker (CPU), against the coded journey it is equivalent to.

The pair is the welcome: the coded WelcomeJourney (workflows/welcome.py) and the same journey
written as a definition (tests/definitions/welcome_as_data.yaml, which tests/test_defined_journey.py
shows sends the same messages at the same moments), on the paths that test takes: a new contact
who never reacts, with email consent only (welcome, relance by email 48 h later) and with email
and SMS consent (the relance by SMS). Each run goes to its end on the time-skipping server with
the real worker and activities in this process; its history is counted afterwards. The worker's
CPU is this process's (worker, activities and the client's few calls), per run and per workflow
task (a step: what the worker does each time the journey wakes up).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import yaml
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from bench.results import Row
from bench.stack import Stack, say
from relance.contracts.definitions import DefinedJourneyInput, workflow_id
from relance.dev.seeding import TEST_CONVERTER, make_lead_factory
from relance.services.definitions import checked, compile_definition
from relance.services.temporal import bundled_binary, ensure_search_attributes
from worker import build_worker
from workflows.defined import DefinedJourney
from workflows.welcome import WelcomeInput, WelcomeJourney

WELCOME_AS_DATA = (
    Path(__file__).resolve().parents[1] / "tests" / "definitions" / "welcome_as_data.yaml"
)
TARGET = 1.2  # a defined journey costs at most 1.2× its coded equivalent
PATHS = {
    "email only": ("email",),
    "email and SMS": ("email", "sms"),
}


async def _counts(handle: WorkflowHandle) -> Counter:
    counts: Counter = Counter()
    async for event in handle.fetch_history_events():
        counts["events"] += 1
        counts[EventType.Name(event.event_type).removeprefix("EVENT_TYPE_").lower()] += 1
    return counts


async def run(stack: Stack, args) -> list[Row]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=bundled_binary("temporal-test-server"),
        data_converter=TEST_CONVERTER,
    )
    await ensure_search_attributes(env.client, "default")
    settings = stack.settings.model_copy(
        update={"payload_keys": {}, "temporal_task_queue": "bench-defined"}
    )
    make_lead = make_lead_factory(stack.engine)
    client: Client = env.client
    queue = settings.temporal_task_queue
    compiled = compile_definition(checked(yaml.safe_load(WELCOME_AS_DATA.read_text())))
    runs = max(args.repeat, 1) * 5
    rows = []

    async def coded(lead_id: str) -> WorkflowHandle:
        handle = await client.start_workflow(
            WelcomeJourney.run,
            WelcomeInput(lead_id=lead_id, engagement_window_days=7),
            id=f"welcome-bench-{lead_id}",
            task_queue=queue,
        )
        await handle.result()
        return handle

    async def defined(lead_id: str) -> WorkflowHandle:
        handle = await client.start_workflow(
            DefinedJourney.run,
            DefinedJourneyInput(lead_id, compiled),
            id=workflow_id(compiled.key, lead_id),
            task_queue=queue,
        )
        await handle.result()
        return handle

    async def measure(go, consents: tuple[str, ...]) -> tuple[Counter, float]:
        totals: Counter = Counter()
        cpu = 0.0
        for _ in range(runs):
            lead = make_lead(consents=consents, phone="+33600000000" if "sms" in consents else None)
            started = time.process_time()
            handle = await go(lead.id)
            cpu += time.process_time() - started
            totals += await _counts(handle)
        return totals, cpu

    try:
        async with build_worker(client, settings, stack.engine, task_queue=queue):
            await measure(coded, ("email",))  # warm-up: each journey's sandbox, the caches
            await measure(defined, ("email",))
            for path, consents in PATHS.items():
                say(f"defined: the welcome, no reaction, {path}: {runs} runs each")
                (c, c_cpu), (d, d_cpu) = (
                    await measure(coded, consents),
                    await measure(defined, consents),
                )
                per = {k: (d[k] / runs, c[k] / runs) for k in ("events", "activity_task_scheduled")}
                tasks = (d["workflow_task_completed"] / runs, c["workflow_task_completed"] / runs)
                timers = (d["timer_started"] / runs, c["timer_started"] / runs)
                upserts = (
                    d["upsert_workflow_search_attributes"] / runs,
                    c["upsert_workflow_search_attributes"] / runs,
                )
                cpu = (d_cpu / runs * 1000, c_cpu / runs * 1000)
                ratio_events = per["events"][0] / per["events"][1]
                ratio_activities = (
                    per["activity_task_scheduled"][0] / per["activity_task_scheduled"][1]
                )
                met = lambda r: "met" if r <= TARGET else "not met"  # noqa: E731
                say(
                    f"defined: {path}: events {per['events'][0]:.1f} vs {per['events'][1]:.1f}, "
                    f"activities {per['activity_task_scheduled'][0]:.1f} vs "
                    f"{per['activity_task_scheduled'][1]:.1f}, CPU {cpu[0]:.1f} vs {cpu[1]:.1f} ms"
                )
                rows.append(
                    Row(
                        f"defined: the welcome as data vs coded, no reaction, {path}",
                        f"{ratio_events:.2f}×",
                        f"≤ {TARGET}× history events: {met(ratio_events)}; activities "
                        f"{ratio_activities:.2f}×: {met(ratio_activities)}",
                        "a run: "
                        + ", ".join(
                            f"{a:.1f} vs {b:.1f} {what}"
                            for what, (a, b) in (
                                ("history events", per["events"]),
                                ("activities", per["activity_task_scheduled"]),
                                ("timers", timers),
                                ("search-attribute upserts", upserts),
                                ("workflow tasks", tasks),
                            )
                        )
                        + f"; worker CPU {cpu[0]:.1f} vs {cpu[1]:.1f} ms a run, "
                        f"{cpu[0] / tasks[0]:.1f} vs {cpu[1] / tasks[1]:.1f} ms a workflow task "
                        f"({runs} runs each, time-skipping server, in-process worker)",
                    )
                )
    finally:
        await env.shutdown()
    return rows

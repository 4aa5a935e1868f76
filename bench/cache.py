"""Worker CPU per signal when more journeys are active than the worker keeps in its cache, vs
the same signals with a cache large enough for them all.

A journey the worker does not hold in its cache (``RELANCE_WORKER_MAX_CACHED_WORKFLOWS``) is
rebuilt from its history at its next signal or timer: a new sandboxed instance, the history
replayed. N welcome journeys wait for a click after their open; each gets opens round-robin
(an open changes nothing there: one workflow task, no command), so with a cache of N/10 every
signal is a rebuild and with a cache of 2N none is. The difference per signal is the cost of a
replay after eviction.
"""

from __future__ import annotations

import asyncio
import time

from temporalio.client import WorkflowHandle

from bench.results import Row
from bench.stack import Stack, cpu_seconds, say
from relance.contracts.signals import OPENED, TrackingSignal
from relance.dev.seeding import make_lead_factory
from workflows.welcome import WelcomeInput, WelcomeJourney


async def settled(handles: list[WorkflowHandle], timeout: float = 600) -> None:
    """Until no journey has a workflow task waiting or running (asked of the server: a query
    would be a task for the worker, and a rebuild when the journey is not cached)."""
    waiting = list(handles)
    deadline = time.monotonic() + timeout
    while waiting:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(waiting)} journeys still have a workflow task pending")
        described = await asyncio.gather(*(h.describe() for h in waiting))
        waiting = [
            h
            for h, d in zip(waiting, described, strict=True)
            if d.raw_description.HasField("pending_workflow_task")
        ]
        if waiting:
            await asyncio.sleep(0.3)


async def signal_rounds(
    handles: list[WorkflowHandle], rounds: int, concurrency: int
) -> tuple[int, float]:
    """``rounds`` opens to every journey, in the same order each round (the least recently
    used first: with a cache smaller than the journeys, each one has been evicted by then).
    Returns the signals sent and the seconds until the worker had handled them all."""
    gate = asyncio.Semaphore(concurrency)

    async def one(handle: WorkflowHandle, n: int) -> None:
        async with gate:
            await handle.signal(OPENED, TrackingSignal(message_id=f"bench-open-{n}"))

    started = time.perf_counter()
    for r in range(rounds):
        await asyncio.gather(*(one(h, r) for h in handles))
    await settled(handles)
    return rounds * len(handles), time.perf_counter() - started


async def measure(stack: Stack, handles: list[WorkflowHandle], cache: int, args) -> dict:
    stack.settings = stack.settings.model_copy(update={"worker_max_cached_workflows": cache})
    stack.stop("worker")
    stack.start("worker", label=f"worker-cache-{cache}")
    await stack.wait_ready("worker")
    pid = stack.pid_of("worker")
    say(f"cache {cache}: one round to fill the cache, then {args.rounds} measured rounds")
    await signal_rounds(handles, 1, args.concurrency)
    before = cpu_seconds(pid)
    signals, seconds = await signal_rounds(handles, args.rounds, args.concurrency)
    cpu = cpu_seconds(pid) - before
    events = len([e async for e in handles[0].fetch_history_events()])
    figures = {
        "cache": cache,
        "signals": signals,
        "cpu_ms": cpu * 1000 / signals,
        "rate": signals / seconds,
        "core": cpu / seconds,
        "events": events,
    }
    say(
        f"cache {cache}: {signals} signals in {seconds:.1f} s ({figures['rate']:.0f}/s), worker "
        f"{figures['cpu_ms']:.1f} ms CPU a signal, {figures['core']:.0%} of a core; "
        f"histories of {events} events"
    )
    return figures


async def run(stack: Stack, args) -> list[Row]:
    active = args.active
    small, large = max(active // 10, 1), active * 2
    stack.start("worker")
    await stack.wait_ready("worker")
    make_lead = make_lead_factory(stack.engine)
    say(f"cache: enrolling {active} welcome journeys and waiting for their emails")
    leads = [make_lead() for _ in range(active)]
    handles = await asyncio.gather(
        *(
            stack.client.start_workflow(
                WelcomeJourney.run,
                WelcomeInput(lead_id=lead.id),
                id=f"welcome-{lead.id}",
                task_queue=stack.settings.temporal_task_queue,
            )
            for lead in leads
        )
    )
    for i, lead in enumerate(leads, 1):
        await stack.sink.wait_for_mail(to=lead.email, timeout=300)
        if i % 100 == 0 or i == active:
            say(f"cache: {i}/{active} welcomed")
    await settled(handles)
    misses = await measure(stack, handles, small, args)
    hits = await measure(stack, handles, large, args)
    steps = {(await h.describe()).raw_description.workflow_execution_info.status for h in handles}
    for handle in handles:
        await handle.terminate("benchmark over")
    stack.stop("worker")
    ratio = misses["cpu_ms"] / hits["cpu_ms"]
    replay = misses["cpu_ms"] - hits["cpu_ms"]
    return [
        Row(
            f"cache: worker CPU a signal, cache {small} vs {large}, {active} active journeys",
            f"{ratio:.2f}×",
            f"a replay after eviction costs a fraction of 50–60 ms: {replay:.1f} ms",
            f"{misses['cpu_ms']:.1f} vs {hits['cpu_ms']:.1f} ms CPU a signal (a replay: "
            f"+{replay:.1f} ms, histories of {misses['events']}–{hits['events']} events); "
            f"{misses['rate']:.0f} vs {hits['rate']:.0f} signals/s, worker at "
            f"{misses['core']:.0%} vs {hits['core']:.0%} of a core; "
            f"{misses['signals']} signals a side, {args.concurrency} in flight; "
            f"journeys still running: {steps == {1}}",
        )
    ]

"""Tracking throughput: open-pixel hits against journeys waiting for them, vs a bare endpoint
on the same uvicorn serving the same GIF with no token, no database and no signal. Then every
hit must be kept and settled by the outbox, and each journey told its open exactly once (a
journey is told one open per message, however many hits its pixel gets): the signals are
counted in the journeys' histories, not the responses."""

from __future__ import annotations

import asyncio
import re
import time

from sqlalchemy import func
from sqlmodel import Session, col, select
from temporalio.api.enums.v1 import EventType

from bench.loadgen import LoadResult, run_load
from bench.results import Row
from bench.stack import Stack, say
from relance.dev.seeding import make_lead_factory
from relance.domain.models import TrackingEvent
from workflows.welcome import WelcomeInput, WelcomeJourney


def describe(name: str, result: LoadResult) -> str:
    return (
        f"{name}: {result.requests} requests in {result.seconds:.2f} s = {result.rate:,.0f} req/s, "
        f"p50 {result.percentile(50):.1f} ms, p99 {result.percentile(99):.1f} ms, "
        f"statuses {result.statuses}"
    )


async def signals_received(stack: Stack, workflow_id: str) -> int:
    count = 0
    async for event in stack.client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            count += 1
    return count


async def run(stack: Stack, args) -> list[Row]:
    stack.start("worker"), stack.start("api")
    await stack.wait_ready("worker"), await stack.wait_ready("api")
    make_lead = make_lead_factory(stack.engine)
    say(f"tracking: enrolling {args.journeys} welcome journeys and waiting for their emails")
    leads = [make_lead() for _ in range(args.journeys)]
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
    pixels = []
    for lead in leads:
        [mail] = await stack.sink.wait_for_mail(to=lead.email, timeout=180)
        pixels.append(re.search(r'src="http://[^/"]+(/t/o/[^"]+)"', mail.html).group(1))
    await asyncio.sleep(1)  # the journeys are waiting for the open

    hits = [pixels[i % len(pixels)] for i in range(args.hits)]
    await run_load(
        stack.api_url, ["/bench/bare.gif"] * 500, concurrency=args.concurrency
    )  # warm-up
    say(f"tracking: {args.hits} hits on the bare endpoint, {args.concurrency} connections")
    bare = await run_load(
        stack.api_url, ["/bench/bare.gif"] * args.hits, concurrency=args.concurrency
    )
    say(describe("bare", bare))
    say(f"tracking: {args.hits} hits on the open pixel of {len(pixels)} waiting journeys")
    pixel = await run_load(stack.api_url, hits, concurrency=args.concurrency)
    say(describe("pixel", pixel))

    say("tracking: waiting until the outbox has settled every hit")
    started = time.perf_counter()
    while True:
        with Session(stack.engine) as session:
            pending = session.exec(
                select(func.count())
                .select_from(TrackingEvent)
                .where(col(TrackingEvent.delivered_at).is_(None))
            ).one()
            kept = session.exec(
                select(func.count())
                .select_from(TrackingEvent)
                .where(col(TrackingEvent.lead_id).in_([lead.id for lead in leads]))
            ).one()
        if pending == 0 and kept == args.hits:
            break
        if time.perf_counter() - started > 600:
            raise RuntimeError(f"{pending} hits still undelivered after 10 minutes")
        await asyncio.sleep(0.2)
    drain = time.perf_counter() - started
    received = sum(await asyncio.gather(*(signals_received(stack, h.id) for h in handles)))
    opened = sum([(await h.query(WelcomeJourney.status)).opened for h in handles])
    say(
        f"tracking: {kept} hits kept, {received} signals received by the {len(handles)} journeys, "
        f"drained {drain:.1f} s after the load; {opened}/{len(handles)} journeys saw their open"
    )
    for handle in handles:
        await handle.terminate("benchmark over")
    stack.stop("api"), stack.stop("worker")
    ratio = pixel.rate / bare.rate
    p99 = pixel.percentile(99)

    def verdict(ok: bool) -> str:
        return "met" if ok else "not met"

    return [
        Row(
            f"tracking: open pixel vs bare GIF, {args.hits} hits, {args.concurrency} conns",
            f"{ratio:.2f}×",
            f"≥ 0.5×: {verdict(ratio >= 0.5)}; p99 < 25 ms: {verdict(p99 < 25)}; "
            "every hit kept, each journey told its open once: "
            f"{verdict(kept == args.hits and received == len(handles))}",
            f"{pixel.rate:,.0f} vs {bare.rate:,.0f} req/s; "
            f"p99 {p99:.1f} ms vs {bare.percentile(99):.1f} ms; "
            f"{kept}/{args.hits} hits kept, "
            f"{received} signals received by the {len(handles)} journeys, "
            f"drained {drain:.1f} s after the load; "
            f"{opened}/{len(handles)} journeys opened",
        )
    ]

"""Sustained tracking load: open-pixel and click hits at fixed rates, for a minute, against
nurturing journeys waiting for them, and how fast the outbox hands them to their journeys.

A campaign's opens do not come in one burst and stop: they keep arriving for minutes. Each hit
is on a distinct message (nothing to coalesce: every one is signalled), and there are more
journeys than the worker keeps in its cache (RELANCE_WORKER_MAX_CACHED_WORKFLOWS), so a
signal often means a replay: what a campaign costs, not a warm best case.

1. Baseline: the raw SDK signals the same journeys (the same mix of opens and clicks, distinct
   messages) as fast as it can: the signals/s this stack takes.
2. Hits at that raw rate: what the outbox sustains (hits signalled ÷ time from the first hit to
   the last signal), as a ratio of the raw rate.
3. Hits at half that rate: hit→signal latency (the journey's history says when it was
   signalled; the load generator when the hit went out), the backlog (hits sent, not yet
   settled) per 5-s window, and the pixel's own latency while the outbox works.

Through both, the API is asked every 0.5 s how many journeys its outbox is signalling
(``/bench/outbox``): under a stream it should stay near its concurrency
(RELANCE_TRACKING_DELIVERY_CONCURRENCY), not drain between claims. ``--outbox-concurrency 64,128``
runs the three steps once per value, the API restarted with it, to size the default.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field

import httpx
from sqlalchemy import func
from sqlmodel import Session, col, select
from temporalio.api.enums.v1 import EventType

from bench.loadgen import PacedResult, Request, run_paced
from bench.results import Row
from bench.stack import Stack, cpu_seconds, say
from relance.contracts.signals import CLICKED, OPENED, TrackingSignal
from relance.dev.seeding import default_sequence, make_lead_factory
from relance.domain.models import TrackingEvent
from relance.domain.tokens import TokenSigner, TrackingToken
from relance.services.journeys import start_journey

CLICK_SHARE = 0.2  # one hit in five is a click (a click is scored by the journey: an activity)
WINDOW = 5.0  # seconds per backlog window
CONNECTIONS = 64


@dataclass
class Phase:
    name: str
    rate: float  # hits/s offered
    hits: int
    load: PacedResult | None = None
    latencies: list[float] = field(default_factory=list)  # hit -> signal, seconds
    signalled: int = 0
    sustained: float = 0.0  # hits signalled ÷ (last signal − first hit)
    windows: list[int] = field(default_factory=list)  # max backlog per 5-s window, during the load
    drain_windows: list[int] = field(default_factory=list)  # the same, after the load
    drained_after: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # cores used per process, load + drain
    outcomes: dict[str, int] = field(default_factory=dict)  # the hits' signal_outcome counts
    in_flight: list[int] = field(default_factory=list)  # journeys being signalled, during the load

    def signalling(self) -> str:
        """Mean and p90 of the journeys the outbox was signalling at once, while hits came."""
        if not self.in_flight:
            return "signals in flight not sampled"
        mean = sum(self.in_flight) / len(self.in_flight)
        return f"signals in flight mean {mean:.0f}, p90 {self.percentile(90, self.in_flight):.0f}"

    def percentile(self, p: float, values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else 0.0

    def latency(self, p: float) -> float:
        return self.percentile(p, self.latencies)

    def served(self, kind: str, p: float) -> float:
        return self.percentile(p, self.load.latencies_ms.get(kind, [])) if self.load else 0.0


def pids(stack: Stack) -> dict[str, int]:
    found = {name: process.pid for name, process in stack.processes.items()}
    if stack.server_pid:
        found["server"] = stack.server_pid
    return found


def cpu_now(stack: Stack) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids(stack).items()}


async def settle_down(stack: Stack, *, timeout: float = 60) -> None:
    """Wait until the worker and the server are nearly idle (the previous phase's signals
    processed), so a phase does not pay for the one before."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_now(stack)
        await asyncio.sleep(1)
        after = cpu_now(stack)
        if all(after[k] - before[k] < 0.15 for k in after if k in before):
            return


def settled_since(stack: Stack, first_id: int) -> int:
    with Session(stack.engine) as session:
        return session.exec(
            select(func.count())
            .select_from(TrackingEvent)
            .where(col(TrackingEvent.id) > first_id, col(TrackingEvent.delivered_at).is_not(None))
        ).one()


def outcomes_since(stack: Stack, first_id: int) -> dict[str, int]:
    """How the phase's hits were settled (signalled, closed: the journey had ended...)."""
    with Session(stack.engine) as session:
        return {
            str(outcome): n
            for outcome, n in session.exec(
                select(TrackingEvent.signal_outcome, func.count())
                .where(col(TrackingEvent.id) > first_id)
                .group_by(TrackingEvent.signal_outcome)
            )
        }


def last_id(stack: Stack) -> int:
    with Session(stack.engine) as session:
        return session.exec(select(func.max(TrackingEvent.id))).one() or 0


async def enroll(stack: Stack, count: int) -> list[tuple[str, str]]:
    """``count`` leads in the nurturing journey, each waiting after its first email: (lead,
    journey)."""
    make_lead = make_lead_factory(stack.engine)
    leads = [make_lead() for _ in range(count)]
    sequence = default_sequence()
    limit = asyncio.Semaphore(32)

    async def one(lead) -> tuple[str, str]:
        async with limit:
            handle = await start_journey(
                stack.client, stack.settings, "nurturing", lead_id=lead.id, score=0,
                knobs={"sequence": sequence},
            )  # fmt: skip
        await stack.sink.wait_for_mail(to=lead.email, timeout=300)
        return lead.id, handle.id

    return await asyncio.gather(*(one(lead) for lead in leads))


async def raw_signals(
    stack: Stack, journeys: list[tuple[str, str]], seconds: float, concurrency: int
) -> float:
    """The SDK signalling the journeys as fast as it can (opens and clicks, distinct messages)."""
    sent = 0
    stop = time.perf_counter() + seconds
    order = list(journeys)
    random.shuffle(order)

    async def signaller(n: int) -> None:
        nonlocal sent
        i = n
        while time.perf_counter() < stop:
            _, workflow_id = order[i % len(order)]
            i += concurrency
            click = random.random() < CLICK_SHARE
            await stack.client.get_workflow_handle(workflow_id).signal(
                CLICKED if click else OPENED,
                TrackingSignal(
                    message_id=uuid.uuid4().hex,
                    url="https://example.com/pricing" if click else None,
                ),
            )
            sent += 1

    started = time.perf_counter()
    await asyncio.gather(*(signaller(n) for n in range(concurrency)))
    return sent / (time.perf_counter() - started)


def hits_for(
    stack: Stack, journeys: list[tuple[str, str]], count: int
) -> list[tuple[str, str, Request]]:
    signer = TokenSigner(stack.settings.secret_key, max_age_seconds=86400)
    hits = []
    for i in range(count):
        lead_id, workflow_id = journeys[random.randrange(len(journeys))]
        message_id = uuid.uuid4().hex
        if random.random() < CLICK_SHARE:
            token = TrackingToken(
                "click", message_id, lead_id, workflow_id, url=f"https://example.com/page-{i % 7}"
            )
            hits.append((message_id, "click", Request(f"/t/c/{signer.sign(token)}")))
        else:
            token = TrackingToken("open", message_id, lead_id, workflow_id)
            hits.append((message_id, "pixel", Request(f"/t/o/{signer.sign(token)}")))
        if i % 10 == 9:  # the same GIF with no token, no database: what the load costs anyway
            hits.append((f"bare-{i}", "bare", Request("/bench/bare.gif")))
    return hits


async def drive(
    stack: Stack, journeys: list[tuple[str, str]], phase: Phase, duration: float
) -> None:
    """Send the phase's hits at its rate; sample the backlog every 0.5 s, say it every 5 s; then
    wait for the outbox to settle every hit, and read the journeys' histories."""
    first_id = last_id(stack)
    hits = hits_for(stack, journeys, phase.hits)
    sent = 0
    samples: list[tuple[float, int]] = []  # (seconds since the start, backlog)
    started = time.perf_counter()
    cpu_before = cpu_now(stack)
    loading = True

    def on_tick(by_kind: dict[str, int]) -> None:
        nonlocal sent
        sent = by_kind.get("pixel", 0) + by_kind.get("click", 0)

    async def sample(http: httpx.AsyncClient) -> None:
        next_say = WINDOW
        while True:
            settled = await asyncio.to_thread(settled_since, stack, first_id)
            elapsed = time.perf_counter() - started
            if loading:
                try:
                    outbox = (await http.get(f"{stack.api_url}/bench/outbox")).json()
                    phase.in_flight.append(outbox["signalling"])
                except httpx.HTTPError:
                    pass
            backlog = (sent if loading else phase.hits) - settled
            samples.append((elapsed, backlog))
            if elapsed >= next_say:
                next_say += WINDOW
                recent = [b for t, b in samples if t > elapsed - WINDOW]
                say(
                    f"{phase.name}: t={elapsed:5.1f} s  sent {sent if loading else phase.hits:6d}  "
                    f"settled {settled:6d}  backlog now {backlog:5d}, "
                    f"max in the window {max(recent):5d}; signalling "
                    f"{phase.in_flight[-1] if phase.in_flight else '?'}"
                )
            await asyncio.sleep(0.5)

    http = httpx.AsyncClient(timeout=5)
    sampler = asyncio.create_task(sample(http))
    say(
        f"{phase.name}: {phase.hits} hits at {phase.rate:.0f}/s for {duration:g} s "
        f"({CLICK_SHARE:.0%} clicks) on {len(journeys)} journeys, {CONNECTIONS} connections, "
        "and a bare GIF request every 10 hits"
    )
    phase.load = await run_paced(
        stack.api_url, hits, rate=phase.rate * 1.1, connections=CONNECTIONS, on_tick=on_tick
    )
    loading = False
    load_seconds = time.perf_counter() - started
    while await asyncio.to_thread(settled_since, stack, first_id) < phase.hits:
        if time.perf_counter() - started > duration + 600:
            raise RuntimeError(f"{phase.name}: hits still unsettled 10 minutes after the load")
        await asyncio.sleep(0.2)
    phase.drained_after = time.perf_counter() - started - load_seconds
    sampler.cancel()
    await asyncio.gather(sampler, return_exceptions=True)
    await http.aclose()
    cpu_after = cpu_now(stack)
    spent = time.perf_counter() - started
    phase.cpu = {k: (cpu_after[k] - cpu_before[k]) / spent for k in cpu_after if k in cpu_before}
    windows: dict[int, int] = {}
    for t, backlog in samples:
        windows[int(t // WINDOW)] = max(windows.get(int(t // WINDOW), 0), backlog)
    loaded = int(load_seconds // WINDOW) + 1
    ordered = [windows.get(i, 0) for i in range(max(windows, default=-1) + 1)]
    phase.windows, phase.drain_windows = ordered[:loaded], ordered[loaded:]

    # When each hit reached its journey: the signal's time in the journey's history.
    sent_at = phase.load.sent_at
    signal_times: list[float] = []
    converter = stack.client.data_converter
    limit = asyncio.Semaphore(16)

    async def history(workflow_id: str) -> None:
        async with limit:
            async for event in stack.client.get_workflow_handle(workflow_id).fetch_history_events():
                if event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                    continue
                attributes = event.workflow_execution_signaled_event_attributes
                if attributes.signal_name not in (OPENED, CLICKED):
                    continue
                [signal] = await converter.decode(attributes.input.payloads, [TrackingSignal])
                if signal.message_id in sent_at:  # this phase's hit
                    at = event.event_time.ToMicroseconds() / 1e6
                    phase.latencies.append(at - sent_at[signal.message_id])
                    signal_times.append(at)

    await asyncio.gather(*(history(w) for _, w in journeys))
    phase.signalled = len(phase.latencies)
    phase.outcomes = outcomes_since(stack, first_id)
    if signal_times:
        phase.sustained = phase.signalled / (max(signal_times) - min(sent_at.values()))
    bare = phase.served("bare", 99)
    say(
        f"{phase.name}: {phase.signalled}/{phase.hits} hits signalled ({phase.outcomes}), "
        f"sustained {phase.sustained:.0f}/s; hit→signal median {phase.latency(50):.2f} s, "
        f"p99 {phase.latency(99):.2f} s; backlog max per 5 s {phase.windows}, after the load "
        f"{phase.drain_windows}, drained {phase.drained_after:.1f} s after; pixel p50 "
        f"{phase.served('pixel', 50):.1f} ms p99 {phase.served('pixel', 99):.1f} ms (bare GIF "
        f"beside them p99 {bare:.1f} ms), click p99 "
        f"{phase.served('click', 99):.1f} ms; {phase.signalling()}; statuses "
        f"{phase.load.statuses}; late sends "
        f"{phase.load.late}; cores used {', '.join(f'{k} {v:.2f}' for k, v in phase.cpu.items())}"
    )


def bounded(phase: Phase) -> bool:
    """The backlog does not grow: its max over the second half of the load is no more than over
    the first half plus half a second of hits (or under one second of hits: a handful waiting is
    no trend), and it is gone within 5 s of the load's end."""
    half = len(phase.windows) // 2
    first, second = phase.windows[:half] or [0], phase.windows[half:] or [0]
    steady = max(second) <= max(max(first) * 1.25 + phase.rate * 0.5, phase.rate)
    return steady and phase.drained_after < 5


async def run(stack: Stack, args) -> list[Row]:
    cache = stack.settings.worker_max_cached_workflows
    count = args.outbox_journeys
    if count <= cache:
        raise SystemExit(
            f"outbox: --outbox-journeys ({count}) must exceed the worker's cache ({cache})"
        )
    sweep = [int(c) for c in (args.outbox_concurrency or "").split(",") if c.strip()] or [
        stack.settings.tracking_delivery_concurrency
    ]
    stack.start("worker"), stack.start("api")
    await stack.wait_ready("worker"), await stack.wait_ready("api")
    rows = []
    for concurrency in sweep:
        # Fresh journeys for each value: a journey's history grows with every signal, and so
        # does the cost of its replays; a later value must not pay for the earlier ones.
        say(f"outbox: enrolling {count} nurturing journeys (worker cache {cache}) and their emails")
        journeys = await enroll(stack, count)
        await settle_down(stack)
        if concurrency != stack.settings.tracking_delivery_concurrency:
            stack.stop("api")
            stack.settings = stack.settings.model_copy(
                update={"tracking_delivery_concurrency": concurrency}
            )
            stack.start("api", label=f"api-{concurrency}")
            await stack.wait_ready("api")
        rows += await measure(stack, args, journeys, concurrency, named=len(sweep) > 1)
    stack.stop("api"), stack.stop("worker")
    return rows


async def measure(
    stack: Stack, args, journeys: list[tuple[str, str]], concurrency: int, *, named: bool
) -> list[Row]:
    """The raw SDK's rate, then hits at that rate and at half of it, through the API running
    with outbox concurrency ``concurrency``."""
    duration = args.duration
    raw_seconds = max(5.0, duration / 3)
    say(f"outbox: raw SDK signals for {raw_seconds:g} s, {args.concurrency} at a time")
    raw = await raw_signals(stack, journeys, raw_seconds, args.concurrency)
    say(f"outbox: raw SDK: {raw:.0f} signals/s; the outbox signals {concurrency} at a time")
    await settle_down(stack)

    full = Phase("at the raw rate", raw, int(raw * duration))
    await drive(stack, journeys, full, duration)
    await settle_down(stack)
    half = Phase("at half the raw rate", raw / 2, int(raw / 2 * duration))
    await drive(stack, journeys, half, duration)
    await settle_down(stack)

    def verdict(ok: bool) -> str:
        return "met" if ok else "not met"

    ratio = full.sustained / raw
    p99 = half.latency(99)
    common = (
        f"{len(journeys)} nurturing journeys (worker cache "
        f"{stack.settings.worker_max_cached_workflows}), {CLICK_SHARE:.0%} clicks, "
        f"{duration:g} s" + (f", outbox concurrency {concurrency}" if named else "")
    )
    return [
        Row(
            f"outbox: sustained hit→signal rate vs raw SDK signals, {common}",
            f"{ratio:.2f}×",
            f"≥ 0.8×: {verdict(ratio >= 0.8)}",
            f"{full.sustained:.0f} vs {raw:.0f} signals/s ({args.concurrency} raw signals in "
            f"flight; outbox concurrency {concurrency}, {full.signalling()}); offered "
            f"{full.rate:.0f} hits/s: "
            f"{full.signalled}/{full.hits} signalled, median {full.latency(50):.2f} s, p99 "
            f"{full.latency(99):.2f} s; backlog max per 5 s {full.windows}, drained "
            f"{full.drained_after:.1f} s after; pixel p99 {full.served('pixel', 99):.1f} ms "
            f"(bare GIF beside it {full.served('bare', 99):.1f} ms); "
            f"cores {', '.join(f'{k} {v:.2f}' for k, v in full.cpu.items())}",
        ),
        Row(
            f"outbox: at half the raw rate ({half.rate:.0f} hits/s), {common}",
            f"{half.sustained / half.rate:.2f}×",
            f"p99 hit→signal < 2 s: {verdict(p99 < 2)}; backlog bounded: {verdict(bounded(half))}",
            f"{half.signalled}/{half.hits} signalled; hit→signal median {half.latency(50):.2f} s, "
            f"p99 {p99:.2f} s; backlog max per 5 s {half.windows}, drained "
            f"{half.drained_after:.1f} s after; {half.signalling()}; pixel p50 "
            f"{half.served('pixel', 50):.1f} ms, p99 "
            f"{half.served('pixel', 99):.1f} ms "
            f"(bare GIF beside it {half.served('bare', 99):.1f} ms); "
            f"click p99 {half.served('click', 99):.1f} ms; "
            f"cores {', '.join(f'{k} {v:.2f}' for k, v in half.cpu.items())}",
        ),
    ]

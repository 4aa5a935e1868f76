"""Enrollment throughput: N leads enrolled over HTTP (POST /leads with the welcome journey,
bounded concurrency) vs the same number of welcome workflows started directly with the SDK on
the same server. No worker runs: both measure the start, not the journey.

The SDK baseline starts each workflow with the API's own start
(``relance.services.journeys.start_journey``: id, input, search attributes, summary, timeout),
so the ratio measures what the API adds: HTTP, validation, the lead and consent rows, scoring,
the enrollment rules."""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import os
import pstats
import time
import uuid

from temporalio.common import WorkflowIDReusePolicy

from api.crud import save_sign_up
from api.schemas import LeadCreate
from bench.loadgen import LoadResult, Request, run_load
from bench.results import Row
from bench.stack import Stack, cpu_seconds, say
from bench.tracking import describe
from relance.dev.seeding import make_lead_factory
from relance.services.journeys import start_journey

SIGN_UPS_PROFILED = 300
# Enrolled on each side before the measured rounds, not counted: a fresh API process pays
# one-off costs on its first requests (statements compiled, pooled connections opened, the
# threadpool's threads started), a fresh Temporal server on its first starts.
WARM_UP = 100
# Leads a round (each side has several rounds, interleaved).
ROUND_LEADS = 250


def sign_up_body() -> dict:
    """A new lead's sign-up with its email consent and the welcome journey, as a form posts it."""
    return {
        "email": f"bench-{uuid.uuid4().hex[:12]}@example.com",
        "first_name": "Bench",
        "consents": [
            {
                "channel": "email",
                "source_url": "https://example.com/form",
                "wording_version": "v1",
            }
        ],
        "journeys": ["welcome"],
    }


def sign_up_cpu(stack: Stack, count: int, *, profile: bool) -> float:
    """CPU ms a new lead's sign-up costs the API's database work (``save_sign_up``, as
    ``POST /leads`` runs it), in this process on the same database; with ``profile``, the
    functions that take it (cProfile) are printed."""
    from sqlmodel import Session

    settings = stack.settings
    bodies = [LeadCreate.model_validate(sign_up_body()) for _ in range(count)]

    def sign_up(data: LeadCreate) -> None:
        with Session(stack.engine) as session:
            save_sign_up(
                session=session,
                data=data,
                default_phone_region=settings.default_phone_region,
                suppression_key=settings.suppression_hash_key,
                settings=settings,
            )

    for data in bodies[:20]:  # warm: the rules file read, statements compiled
        sign_up(data)
    started = time.process_time()
    for data in bodies[20 : count // 2]:
        sign_up(data)
    cpu_ms = (time.process_time() - started) / (count // 2 - 20) * 1000
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for data in bodies[count // 2 :]:
            sign_up(data)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
        say("enrollment: where a sign-up's CPU goes (cProfile, cumulative):\n" + out.getvalue())
    return cpu_ms


async def run(stack: Stack, args) -> list[Row]:
    n = args.enrollments
    stack.start("api")
    await stack.wait_ready("api")
    make_lead = make_lead_factory(stack.engine)
    semaphore = asyncio.Semaphore(args.concurrency)

    async def sdk_batch(count: int) -> LoadResult:
        leads = [make_lead() for _ in range(count)]
        latencies: list[float] = []

        async def sdk_start(lead) -> None:
            async with semaphore:
                started = time.perf_counter()
                await start_journey(
                    stack.client,
                    stack.settings,
                    "welcome",
                    lead_id=lead.id,
                    score=0,
                    reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                )
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(sdk_start(lead) for lead in leads))
        return LoadResult(count, time.perf_counter() - started, latencies, {201: count})

    async def api_batch(count: int) -> LoadResult:
        requests = [
            Request(
                "/leads",
                "POST",
                json.dumps(sign_up_body()).encode(),
                {"Content-Type": "application/json", "X-API-Key": stack.settings.api_key},
            )
            for _ in range(count)
        ]
        return await run_load(stack.api_url, requests, concurrency=args.concurrency)

    say(f"enrollment: warming up, {WARM_UP} leads a side (not measured)")
    await api_batch(WARM_UP)
    await sdk_batch(WARM_UP)
    load_before = os.getloadavg()[0]
    # Rounds of ROUND_LEADS a side in the order SDK, API, API, SDK, then again: the server's
    # database grows as the run goes and every start gets slower, and on a machine shared with
    # other work the CPU left to the run changes from minute to minute; short rounds in this
    # order give both sides the same share of early and late starts, of quiet and busy minutes.
    per_round = max(1, min(ROUND_LEADS, n // 2))
    rounds = max(1, n // per_round)  # rounds a side: each side enrolls rounds × per_round leads
    # (an odd number of rounds ends on SDK, API: still as many of each)
    order = [("sdk", "api", "api", "sdk")[i % 4] for i in range(2 * rounds)]
    batches = {"sdk": sdk_batch, "api": api_batch}
    parts: dict[str, list[LoadResult]] = {"sdk": [], "api": []}
    # CPU seconds used during each side's rounds: the Temporal server, the API, this process (the
    # SDK client or the HTTP load generator). On two shared cores they compete for the same CPU.
    cpu = {side: {"server": 0.0, "api": 0.0, "bench": 0.0} for side in ("sdk", "api")}
    api_pid, server_pid = stack.processes["api"].pid, stack.server_pid

    def cpu_now() -> dict[str, float]:
        return {
            "server": cpu_seconds(server_pid) if server_pid else 0.0,
            "api": cpu_seconds(api_pid),
            "bench": time.process_time(),
        }

    for i, side in enumerate(order):
        say(
            f"enrollment: round {i + 1}/{len(order)}, {per_round} leads "
            + (
                "started directly with the SDK"
                if side == "sdk"
                else "enrolled over HTTP (POST /leads + welcome)"
            )
            + f", concurrency {args.concurrency}"
        )
        before = cpu_now()
        parts[side].append(await batches[side](per_round))
        after = cpu_now()
        for process in after:
            cpu[side][process] += after[process] - before[process]
        say(describe(side, parts[side][-1]))
    sdk_parts, api_parts = parts["sdk"], parts["api"]
    sdk, http = merge(sdk_parts), merge(api_parts)
    say(describe("sdk total", sdk))
    say(describe("api total", http))
    per = {side: {p: cpu[side][p] / (rounds * per_round) * 1000 for p in cpu[side]} for side in cpu}
    cpu_text = "; CPU ms per enrollment (server / API / client): " + " vs ".join(
        f"{per[side]['server']:.1f} / {per[side]['api']:.1f} / {per[side]['bench']:.1f}"
        for side in ("api", "sdk")
    )
    cpu_text += (
        f"; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after the rounds"
    )
    say("enrollment" + cpu_text)
    stack.stop("api")
    signup_ms = sign_up_cpu(stack, SIGN_UPS_PROFILED, profile=args.profile_sign_up)
    say(f"enrollment: a new lead's sign-up (save_sign_up, in process): {signup_ms:.2f} ms CPU")
    cpu_text += f"; a new lead's sign-up in process (save_sign_up): {signup_ms:.2f} ms CPU"
    ratio = http.rate / sdk.rate
    total = rounds * per_round
    return [
        Row(
            f"enrollment: POST /leads + welcome vs SDK start, {total} leads each, "
            f"{args.concurrency} conns",
            f"{ratio:.2f}×",
            f"≥ 0.9×: {'met' if ratio >= 0.9 and http.statuses == {201: total} else 'not met'}",
            f"{http.rate:,.0f} vs {sdk.rate:,.0f} /s; "
            f"p50 {http.percentile(50):.0f} / p99 {http.percentile(99):.0f} ms vs "
            f"{sdk.percentile(50):.0f} / {sdk.percentile(99):.0f} ms; "
            f"statuses {http.statuses}{cpu_text}",
        )
    ]


def merge(parts: list[LoadResult]) -> LoadResult:
    statuses: dict[int, int] = {}
    for part in parts:
        for code, count in part.statuses.items():
            statuses[code] = statuses.get(code, 0) + count
    return LoadResult(
        sum(p.requests for p in parts),
        sum(p.seconds for p in parts),
        [ms for p in parts for ms in p.latencies_ms],
        statuses,
    )

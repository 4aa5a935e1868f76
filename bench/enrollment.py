"""Enrollment throughput: N leads enrolled over HTTP (POST /leads with the welcome journey,
bounded concurrency) vs the same number of welcome workflows started directly with the SDK on
the same server. No worker runs: both measure the start, not the journey."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from bench.loadgen import LoadResult, Request, run_load
from bench.results import Row
from bench.stack import Stack, say
from bench.tracking import describe
from tests.conftest import make_lead_factory
from workflows.welcome import WelcomeInput, WelcomeJourney


async def run(stack: Stack, args) -> list[Row]:
    n = args.enrollments
    stack.start("api")
    await stack.wait_ready("api")
    make_lead = make_lead_factory(stack.engine)
    say(f"enrollment: starting {n} workflows with the SDK, concurrency {args.concurrency}")
    leads = [make_lead() for _ in range(n)]
    semaphore = asyncio.Semaphore(args.concurrency)
    latencies: list[float] = []

    async def sdk_start(lead) -> None:
        async with semaphore:
            started = time.perf_counter()
            await stack.client.start_workflow(WelcomeJourney.run, WelcomeInput(lead_id=lead.id), id=f"sdk-{lead.id}",
                                              task_queue=stack.settings.temporal_task_queue)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(sdk_start(lead) for lead in leads))
    sdk = LoadResult(n, time.perf_counter() - started, latencies, {201: n})
    say(describe("sdk", sdk))

    say(f"enrollment: enrolling {n} new leads over HTTP (POST /leads with the welcome journey)")
    requests = [Request("/leads", "POST", json.dumps({
        "email": f"bench-{uuid.uuid4().hex[:12]}@example.com", "first_name": "Bench",
        "consents": [{"channel": "email"}], "journeys": ["welcome"]}).encode(),
        {"Content-Type": "application/json", "X-API-Key": stack.settings.api_key}) for _ in range(n)]
    http = await run_load(stack.api_url, requests, concurrency=args.concurrency)
    say(describe("api", http))
    stack.stop("api")
    ratio = http.rate / sdk.rate
    return [Row(
        f"enrollment: POST /leads + welcome vs SDK start, {n} leads, {args.concurrency} conns",
        f"{ratio:.2f}×", f"≥ 0.9×: {'met' if ratio >= 0.9 and http.statuses == {201: n} else 'not met'}",
        f"{http.rate:,.0f} vs {sdk.rate:,.0f} /s; p50 {http.percentile(50):.0f} / p99 {http.percentile(99):.0f} ms vs "
        f"{sdk.percentile(50):.0f} / {sdk.percentile(99):.0f} ms; statuses {http.statuses}",
    )]

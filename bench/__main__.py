"""Run the benchmarks: ``make bench`` or ``.venv/bin/python -m bench [--hits N ...]``.

Everything runs on this machine: the real Temporal dev server, the API under uvicorn and the
worker as separate processes, the dev mail sink, and a load generator in this process. Each
figure is a ratio against a baseline measured in the same run, because absolute numbers vary
between machines:

1. tracking: open-pixel hits against journeys waiting for them vs a bare endpoint serving the
   same GIF on the same uvicorn; then every hit must reach its journey (signals counted);
2. enrollment: leads enrolled over HTTP (POST /leads with journeys) vs the same number of
   workflows started directly with the SDK on the same server.
"""

from __future__ import annotations

import argparse
import base64
import asyncio
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx
from sqlalchemy import func
from sqlmodel import Session, col, select
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from bench.loadgen import LoadResult, Request, run_load
from relance import migrate
from relance.db import make_engine
from relance.devsink import DevSink
from relance.encryption import EncryptionCodec, encrypted_converter, new_key
from relance.models import TrackingEvent
from relance.settings import Settings
from relance.temporal import bundled_binary
from tests.conftest import make_lead_factory
from workflows import search_attributes
from workflows.welcome import WelcomeInput, WelcomeJourney

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "benchmarks.md"


def say(message: str) -> None:
    print(f"bench | {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env_for(settings: Settings) -> dict[str, str]:
    fields = ("database_url", "temporal_address", "temporal_task_queue", "smtp_host", "smtp_port", "sms_provider_url",
              "api_key", "secret_key", "public_base_url", "payload_keys", "payload_key_id")

    def as_env(value) -> str:
        return json.dumps(value) if isinstance(value, (dict, list)) else str(value)

    return {**os.environ, **{f"RELANCE_{f.upper()}": as_env(getattr(settings, f)) for f in fields}}


def start_process(args: list[str], settings: Settings, log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=ROOT, env=env_for(settings), stdout=log.open("w"), stderr=subprocess.STDOUT)


async def wait_healthy(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(f"{url}/health")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the API at {url} did not come up")


def describe(name: str, result: LoadResult) -> str:
    return (f"{name}: {result.requests} requests in {result.seconds:.2f} s = {result.rate:,.0f} req/s, "
            f"p50 {result.percentile(50):.1f} ms, p99 {result.percentile(99):.1f} ms, statuses {result.statuses}")


async def tracking_bench(args, settings: Settings, engine, client: Client, sink: DevSink, api: str) -> dict:
    make_lead = make_lead_factory(engine)
    say(f"tracking: enrolling {args.journeys} welcome journeys and waiting for their emails")
    leads = [make_lead() for _ in range(args.journeys)]
    handles = await asyncio.gather(*(
        client.start_workflow(WelcomeJourney.run, WelcomeInput(lead_id=lead.id), id=f"welcome-{lead.id}",
                              task_queue=settings.temporal_task_queue) for lead in leads))
    pixels = []
    for lead in leads:
        [mail] = await sink.wait_for_mail(to=lead.email, timeout=120)
        pixels.append(re.search(r'src="http://[^/"]+(/t/o/[^"]+)"', mail.html).group(1))
    # the journeys must be waiting for the open before the hits count
    await asyncio.sleep(1)

    hits = [pixels[i % len(pixels)] for i in range(args.hits)]
    await run_load(api, ["/bench/bare.gif"] * 500, concurrency=args.concurrency)  # warm-up
    say(f"tracking: {args.hits} hits on the bare endpoint, {args.concurrency} connections")
    bare = await run_load(api, ["/bench/bare.gif"] * args.hits, concurrency=args.concurrency)
    say(describe("bare", bare))
    say(f"tracking: {args.hits} hits on the open pixel of {len(pixels)} waiting journeys")
    pixel = await run_load(api, hits, concurrency=args.concurrency)
    say(describe("pixel", pixel))

    say("tracking: waiting until the outbox has signalled every hit")
    started = time.perf_counter()
    while True:
        with Session(engine) as session:
            pending = session.exec(select(func.count()).select_from(TrackingEvent)
                                   .where(col(TrackingEvent.delivered_at).is_(None))).one()
            delivered = session.exec(select(func.count()).select_from(TrackingEvent)
                                     .where(col(TrackingEvent.delivered_at).is_not(None))).one()
        if pending == 0:
            break
        if time.perf_counter() - started > 600:
            raise RuntimeError(f"{pending} hits still undelivered after 10 minutes")
        await asyncio.sleep(0.2)
    drain = time.perf_counter() - started
    opened = sum([(await h.query(WelcomeJourney.status)).opened for h in handles])
    say(f"tracking: {delivered} signals delivered, drained {drain:.1f} s after the load; "
        f"{opened}/{len(handles)} journeys saw their open")
    for handle in handles:
        await handle.terminate("benchmark over")
    return {"bare": bare, "pixel": pixel, "delivered": delivered, "drain_s": drain, "opened": opened,
            "journeys": len(handles)}


async def enrollment_bench(args, settings: Settings, engine, client: Client, api: str) -> dict:
    make_lead = make_lead_factory(engine)
    n = args.enrollments
    say(f"enrollment: starting {n} workflows with the SDK, concurrency {args.concurrency}")
    leads = [make_lead() for _ in range(n)]
    semaphore = asyncio.Semaphore(args.concurrency)
    latencies = []

    async def sdk_start(lead):
        async with semaphore:
            t = time.perf_counter()
            await client.start_workflow(WelcomeJourney.run, WelcomeInput(lead_id=lead.id), id=f"sdk-{lead.id}",
                                        task_queue=settings.temporal_task_queue)
            latencies.append((time.perf_counter() - t) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(sdk_start(lead) for lead in leads))
    sdk = LoadResult(n, time.perf_counter() - started, latencies, {201: n})
    say(describe("sdk", sdk))

    say(f"enrollment: enrolling {n} new leads over HTTP (POST /leads with the welcome journey)")
    requests = [Request("/leads", "POST", json.dumps({
        "email": f"bench-{uuid.uuid4().hex[:12]}@example.com", "first_name": "Bench",
        "consents": [{"channel": "email"}], "journeys": ["welcome"]}).encode(),
        {"Content-Type": "application/json", "X-API-Key": settings.api_key}) for _ in range(n)]
    http = await run_load(api, requests, concurrency=args.concurrency)
    say(describe("api", http))
    return {"sdk": sdk, "api": http}


def record(args, tracking: dict, enrollment: dict) -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    machine = f"{os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    command = " ".join(["python -m bench"] + sys.argv[1:])
    bare, pixel = tracking["bare"], tracking["pixel"]
    sdk, api = enrollment["sdk"], enrollment["api"]
    rows = [
        f"| {date} | {machine} | `{command}` | tracking: open pixel vs bare GIF, {pixel.requests} hits, "
        f"{args.concurrency} conns | **{pixel.rate / bare.rate:.2f}×** ({pixel.rate:,.0f} vs {bare.rate:,.0f} req/s) | "
        f"p99 {pixel.percentile(99):.1f} ms vs {bare.percentile(99):.1f} ms; {tracking['delivered']} signals delivered, "
        f"drained {tracking['drain_s']:.1f} s after; {tracking['opened']}/{tracking['journeys']} journeys opened |",
        f"| {date} | {machine} | `{command}` | enrollment: POST /leads+welcome vs SDK start, {api.requests} leads, "
        f"{args.concurrency} conns | **{api.rate / sdk.rate:.2f}×** ({api.rate:,.0f} vs {sdk.rate:,.0f} /s) | "
        f"p50 {api.percentile(50):.1f} / p99 {api.percentile(99):.1f} ms vs "
        f"{sdk.percentile(50):.1f} / {sdk.percentile(99):.1f} ms |",
    ]
    if not RESULTS.exists():
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(
            "# Benchmarks\n\nProduced by `make bench` (`python -m bench`); see bench/__main__.py for what each "
            "measures.\nFigures are ratios against a baseline measured in the same run.\n\n"
            "| date | machine | command | benchmark | ratio | details |\n|---|---|---|---|---|---|\n")
    with RESULTS.open("a") as out:
        out.write("\n".join(rows) + "\n")
    return "\n".join(rows)


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--journeys", type=int, default=200, help="waiting journeys the pixel hits target")
    parser.add_argument("--hits", type=int, default=5000, help="requests per tracking run")
    parser.add_argument("--enrollments", type=int, default=500, help="leads per enrollment run")
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="relance-bench-") as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'bench.db'}"
        migrate.upgrade(url)
        engine = make_engine(url)
        say("starting the Temporal dev server, the mail sink, the worker and the API")
        payload_key_id, payload_key = new_key()
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=bundled_binary("temporal"), search_attributes=search_attributes.ALL,
            data_converter=encrypted_converter(EncryptionCodec({payload_key_id: base64.b64decode(payload_key)},
                                                               payload_key_id)))
        async with DevSink(smtp_port=0, http_port=0) as sink:
            port = free_port()
            settings = Settings(
                _env_file=None, database_url=url, temporal_address=env.client.service_client.config.target_host,
                temporal_task_queue="bench", smtp_host="127.0.0.1", smtp_port=sink.smtp_port,
                sms_provider_url=f"http://127.0.0.1:{sink.http_port}/sms", api_key="bench", secret_key="bench",
                public_base_url=f"http://127.0.0.1:{port}", payload_keys={payload_key_id: payload_key},
                payload_key_id=payload_key_id)
            api_url = f"http://127.0.0.1:{port}"
            worker = start_process([sys.executable, "worker.py"], settings, workdir / "worker.log")
            api = start_process([sys.executable, "-m", "uvicorn", "--factory", "bench.app:create_bench_app",
                                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                                settings, workdir / "api.log")
            try:
                await wait_healthy(api_url)
                tracking = await tracking_bench(args, settings, engine, env.client, sink, api_url)
                say("stopping the worker: the enrollment run measures starts only")
                worker.terminate()
                worker.wait(timeout=30)
                enrollment = await enrollment_bench(args, settings, engine, env.client, api_url)
            finally:
                for process in (api, worker):
                    if process.poll() is None:
                        process.terminate()
                        try:
                            process.wait(timeout=30)
                        except subprocess.TimeoutExpired:  # a hung process must not outlive the run
                            process.kill()
        await env.shutdown()
    rows = record(args, tracking, enrollment)
    say(f"recorded in {RESULTS.relative_to(ROOT)}:\n{rows}")


if __name__ == "__main__":
    asyncio.run(main())

"""Waiting journeys at scale: N welcome journeys (default 10,000) parked on their 48 h timer.
Reports the worker's resident memory against the same worker idle before them (target
< 300 MB), the dev server's database size, and the time to enroll them all (their welcome
email sent and recorded)."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import insert
from sqlmodel import Session

from bench.results import Row
from bench.stack import Stack, process_rss_mb, say
from relance.domain.models import Consent, Lead, new_id, utcnow
from workflows.welcome import WelcomeInput, WelcomeJourney


def seed_leads(stack: Stack, n: int) -> list[str]:
    ids = [new_id() for _ in range(n)]
    now = utcnow()
    with Session(stack.engine) as session:
        session.execute(
            insert(Lead),
            [
                {
                    "id": i,
                    "email": f"wait-{i}@example.com",
                    "first_name": "Wait",
                    "locale": "en",
                    "time_zone": "UTC",
                    "score": 0,
                    "created_at": now,
                    "updated_at": now,
                    "last_signup_at": now,
                }
                for i in ids
            ],
        )
        session.execute(
            insert(Consent),
            [
                {
                    "lead_id": i,
                    "channel": "email",
                    "purpose": "marketing",
                    "status": "granted",
                    "source_url": "https://example.com/bench",
                    "recorded_at": now,
                }
                for i in ids
            ],
        )
        session.commit()
    return ids


async def parked(stack: Stack) -> int:
    query = (
        'WorkflowType = "WelcomeJourney" AND Step = "waiting_for_open" '
        'AND ExecutionStatus = "Running"'
    )
    return (await stack.client.count_workflows(query)).count


async def run(stack: Stack, args) -> list[Row]:
    n = args.waiting
    worker = stack.start("worker")
    await stack.wait_ready("worker")
    await asyncio.sleep(2)
    idle_rss = process_rss_mb(worker.pid)
    say(f"waiting: worker idle at {idle_rss:.0f} MB; seeding {n:,} leads")
    ids = seed_leads(stack, n)
    db_file = stack.workdir / "temporal.db"
    db_before = db_file.stat().st_size
    semaphore = asyncio.Semaphore(args.concurrency)

    async def enroll(lead_id: str) -> None:
        async with semaphore:
            await stack.client.start_workflow(
                WelcomeJourney.run,
                WelcomeInput(lead_id=lead_id),
                id=f"welcome-{lead_id}",
                task_queue=stack.settings.temporal_task_queue,
            )

    started = time.perf_counter()
    for i in range(0, n, 1000):
        await asyncio.gather(*(enroll(lead_id) for lead_id in ids[i : i + 1000]))
        say(
            f"waiting: {min(i + 1000, n):,}/{n:,} journeys started "
            f"({time.perf_counter() - started:.0f} s)"
        )
    while (count := await parked(stack)) < n:
        say(
            f"waiting: {count:,}/{n:,} journeys have sent their welcome and wait on the 48 h timer "
            f"({time.perf_counter() - started:.0f} s)"
        )
        if time.perf_counter() - started > max(3600, n):  # ~1 s a journey on a busy 2-core machine
            raise RuntimeError(
                f"the journeys did not all reach their timer within {max(3600, n) / 60:.0f} minutes"
            )
        await asyncio.sleep(5)
    enroll_s = time.perf_counter() - started
    await asyncio.sleep(5)  # let the worker settle
    rss = process_rss_mb(worker.pid)
    db_after = db_file.stat().st_size
    say(
        f"waiting: {n:,} journeys parked in {enroll_s:.0f} s; worker {rss:.0f} MB; "
        f"server DB {db_after / 2**20:.0f} MB"
    )
    stack.stop("worker")
    return [
        Row(
            f"waiting: {n:,} welcome journeys parked on a 48 h timer, worker RSS vs idle",
            f"{rss / idle_rss:.2f}×",
            f"RSS < 300 MB: {'met' if rss < 300 else 'not met'} ({rss:.0f} MB)",
            f"worker {rss:.0f} MB vs {idle_rss:.0f} MB idle; Temporal DB {db_after / 2**20:.0f} MB "
            f"(+{(db_after - db_before) / n / 1024:.1f} KB a journey); "
            f"enrolled and welcomed in {enroll_s:.0f} s "
            f"({n / enroll_s:.0f} journeys/s, {n:,} emails)",
        )
    ]

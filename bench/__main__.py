"""Run the benchmarks: ``make bench`` (all of them) or ``.venv/bin/python -m bench NAME ...``.

Everything runs on this machine: the real Temporal dev server, the API under uvicorn and the
worker as separate processes, the dev mail sink, a load generator in this process. Each figure
is a ratio against a baseline measured in the same run, because absolute numbers vary between
machines:

  tracking     open-pixel hits vs a bare endpoint serving the same GIF on the same uvicorn;
               every hit must reach its journey (signals counted in the histories)
  enrollment   leads enrolled over HTTP vs the same number of workflows started with the SDK
  waiting      N journeys parked on a 48 h timer: worker memory vs the idle worker, DB size
  simulated    whole journeys on the time-skipping server vs a bare sleep as long
  outbox       pixel and click hits at fixed rates for a minute on more journeys than the worker
               caches: the rate the outbox sustains vs the raw SDK signalling the same journeys,
               and at half that rate the hit→signal latency and the backlog per 5 s
  cache        worker CPU a signal with the cache smaller than the active journeys (each signal
               rebuilds its journey from history) vs a cache large enough for them all
  broadcast    a broadcast to a list of 100,000 leads (--broadcast-leads) with the gates on, to
               the dev mail sink, vs a plain loop of the same rendered messages over the same
               number of SMTP connections; worker RSS, duplicates and missing at the sink
               (not in ``make bench``'s default set: run it by name)
  smtp         messages/s over the pooled SMTP connections vs a plain smtplib loop on one
               connection, to the dev mail sink
  actions      every journey's main paths on the time-skipping server, counted from their
               histories: events, activities, timers, signals, search-attribute updates and
               billable Temporal actions (cost per million journeys), vs the saved history of
               the same path in tests/histories
  defined      a journey written as data vs the coded one it is equivalent to (the welcome):
               history events, activities and worker CPU per run, on the time-skipping server
  reports      the journey report over 1,000,000 messages and 100,000 leads vs the equivalent
               single hand-written SQL aggregate, on SQLite and PostgreSQL (database only)
  segments     segment counts compiled from rules vs the same counts in hand-written SQL, over
               100,000 leads and 1,000,000 history rows, on SQLite and PostgreSQL (no stack)
  date_sweep   the hourly sweep's birthday trigger over 100,000 leads: the leads read with the
               SQL filter on the date vs every lead read and decided in Python (no stack)

The summary is printed and appended to docs/benchmarks.md with the date, machine and command.
"""

from __future__ import annotations

import argparse
import asyncio
from contextlib import AsyncExitStack

from bench import (
    actions,
    broadcast,
    cache,
    date_sweep,
    defined,
    enrollment,
    outbox,
    reports,
    segments,
    simulated,
    smtp,
    tracking,
    waiting,
)
from bench.results import RESULTS, print_summary, record
from bench.stack import open_stack, say

BENCHMARKS = {
    "tracking": tracking,
    "enrollment": enrollment,
    "waiting": waiting,
    "simulated": simulated,
    "outbox": outbox,
    "cache": cache,
    "smtp": smtp,
    "actions": actions,
    "defined": defined,
    "reports": reports,
    "broadcast": broadcast,
    "segments": segments,
    "date_sweep": date_sweep,
}
# Run by name only: long seeding (100,000 leads and up by default).
BY_NAME_ONLY = {"broadcast", "reports", "segments", "date_sweep"}
STANDALONE = {"segments", "date_sweep"}  # need no Temporal, API nor worker


async def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument(
        "names",
        nargs="*",
        choices=[[], *BENCHMARKS],
        default=[],
        metavar="NAME",
        help=f"which to run ({', '.join(BENCHMARKS)}); all by default",
    )
    parser.add_argument(
        "--journeys", type=int, default=200, help="tracking: waiting journeys the pixel hits target"
    )
    parser.add_argument("--hits", type=int, default=5000, help="tracking: requests per run")
    parser.add_argument("--enrollments", type=int, default=5000, help="enrollment: leads per run")
    parser.add_argument(
        "--profile-sign-up",
        action="store_true",
        help="enrollment: print where a sign-up's CPU goes (cProfile of save_sign_up)",
    )
    parser.add_argument(
        "--waiting", type=int, default=10_000, help="waiting: journeys parked on their timer"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="simulated: runs per journey (the best counts); defined: 5× this many runs a side",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=60,
        help="outbox: seconds of hits at each fixed rate (10 for a quick check)",
    )
    parser.add_argument(
        "--outbox-journeys",
        type=int,
        default=300,
        help="outbox: waiting journeys the hits target (more than the worker's cache)",
    )
    parser.add_argument(
        "--outbox-concurrency",
        default="",
        help="outbox: journeys the outbox signals at once, comma-separated to compare "
        "(64,128: the API restarted with each); RELANCE_TRACKING_DELIVERY_CONCURRENCY by default",
    )
    parser.add_argument(
        "--active", type=int, default=300, help="cache: active journeys (cache: a tenth, twice)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="cache: signals to each journey")
    parser.add_argument("--messages", type=int, default=2000, help="smtp: messages per run")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument(
        "--report-messages", type=int, default=1_000_000, help="reports: message rows seeded"
    )
    parser.add_argument("--report-leads", type=int, default=100_000, help="reports: leads seeded")
    parser.add_argument(
        "--report-repeat",
        type=int,
        default=5,
        help="reports: runs of each query (the best counts)",
    )
    parser.add_argument(
        "--broadcast-leads", type=int, default=100_000, help="broadcast: leads on the list"
    )
    parser.add_argument(
        "--broadcast-connections",
        type=int,
        default=4,
        help="broadcast: messages a wave sends at once (RELANCE_BROADCAST_SEND_CONCURRENCY), "
        "and the loop's SMTP connections",
    )
    parser.add_argument(
        "--segment-leads", type=int, default=100_000, help="segments: leads (10000 for a quick run)"
    )
    parser.add_argument(
        "--segment-events",
        type=int,
        default=1_000_000,
        help="segments: history rows (emails, page views, custom events)",
    )
    parser.add_argument(
        "--segment-sqlite-only",
        action="store_true",
        help="segments, date_sweep: skip PostgreSQL",
    )
    parser.add_argument(
        "--sweep-leads", type=int, default=100_000, help="date_sweep: leads with a birthday"
    )
    parser.add_argument(
        "--no-record", action="store_true", help=f"print only, do not add to {RESULTS.name}"
    )
    args = parser.parse_args()
    names = args.names or [n for n in BENCHMARKS if n not in BY_NAME_ONLY]

    rows = []
    for name in names:
        say(f"== {name} ==")
        if name in STANDALONE:
            done = BENCHMARKS[name].run_standalone(args)
            rows += done
            if not args.no_record:
                record(done)
            continue
        async with (
            AsyncExitStack() as exit_stack
        ):  # a fresh stack each: one benchmark's leftovers never load another
            needs_stack = getattr(BENCHMARKS[name], "NEEDS_STACK", True)
            stack = (
                await open_stack(exit_stack, task_queue=f"bench-{name}") if needs_stack else None
            )
            done = await BENCHMARKS[name].run(stack, args)
        rows += done
        if (
            not args.no_record
        ):  # each benchmark's rows as soon as it ends: a long run cut short keeps them
            record(done)
            say(f"{name}: recorded in {RESULTS}")
    print_summary(rows)


if __name__ == "__main__":
    asyncio.run(main())

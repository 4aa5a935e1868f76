"""Temporal actions per journey: every journey of the catalogue run along its main paths, as
tests/histories/record*.py script them (the real activities, a scratch database, the mail sink,
the time-skipping server, the lead's opens and clicks sent as signals), and counted from the
real history each run leaves (``fetch_history``).

For each path: the history's events, and what Temporal Cloud bills as actions (docs/benchmarks.md
says how they are counted): the workflow's start, each activity attempt, each timer, each signal
received, each search-attribute upsert (not the SDK's own ``TemporalChangeVersion``). The cost
per million journeys is at $25 per million actions. Where tests/histories holds a history of the
same path (recorded by the code of its day), its count stands beside today's: that is the
"before" of every change made behind ``workflow.patched``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

from bench.results import Row
from bench.stack import say

NEEDS_STACK = False  # runs its own time-skipping servers (the recording scripts')
SAVED = Path(__file__).resolve().parent.parent / "tests" / "histories"  # read here, never written
DOLLARS_PER_MILLION_ACTIONS = 25
# The recording scripts, each a ``main()`` recording its journeys' paths (tests/histories/).
SCRIPTS = [
    "record",
    "record_double_opt_in",
    "record_outcomes",
    "record_event",
    "record_nurturing",
    "record_reengagement",
    "record_decay",
    "record_together",
    "record_enrollment_rules",
    "record_definitions",
]
# Per path, the figure asked for: the welcome journey's whole path (confirm, welcome, open, click)
# at least 30 % cheaper than the saved history of the same path.
TARGETS = {"welcome_double_opt_in_opened_clicked": 0.30}
# The global send window open at every hour, every day: the paths and their counts do not depend
# on the hour the benchmark runs at (the send window's own paths set their journey's window).
ALWAYS_OPEN = {
    "RELANCE_SEND_WINDOW_DAYS": "[1, 2, 3, 4, 5, 6, 7]",
    "RELANCE_SEND_WINDOW_START": "00:00",
    "RELANCE_SEND_WINDOW_END": "23:59",
}
ROOT = Path(__file__).resolve().parent.parent
VERSION_MARKER = "TemporalChangeVersion"  # the SDK's record of ``workflow.patched``: not billed


@dataclass
class Actions:
    """One history's events and billable actions, by kind."""

    events: int
    activities: int  # activity attempts (each start or retry is billed)
    timers: int
    signals: int  # received: a signal sent by another workflow is billed once, here
    search_attributes: int  # upserts, not counting the SDK's version marker alone
    starts: int = 1  # the workflow's start (by a client, a schedule or continue-as-new)

    @property
    def billable(self) -> int:
        return self.starts + self.activities + self.timers + self.signals + self.search_attributes

    @property
    def dollars_per_million(self) -> float:
        return self.billable * DOLLARS_PER_MILLION_ACTIONS

    def describe(self) -> str:
        return (
            f"{self.events} events: {self.activities} activities, {self.timers} timers, "
            f"{self.signals} signals, {self.search_attributes} search-attribute updates = "
            f"{self.billable} actions (${self.dollars_per_million:,.0f} per million journeys)"
        )


def _billable_upsert(event: HistoryEvent) -> bool:
    fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
    return any(name != VERSION_MARKER for name in fields.indexed_fields)


def count(history: WorkflowHistory) -> Actions:
    """What one run of a workflow costs, from its history (the rules in docs/benchmarks.md)."""
    kinds = Counter()
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            kinds["activities"] += event.activity_task_started_event_attributes.attempt or 1
        elif event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            kinds["timers"] += 1
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            kinds["signals"] += 1
        elif event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            kinds["search_attributes"] += _billable_upsert(event)
    return Actions(
        len(history.events),
        kinds["activities"],
        kinds["timers"],
        kinds["signals"],
        kinds["search_attributes"],
    )


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def workflow_type(history: WorkflowHistory) -> str:
    started = history.events[0].workflow_execution_started_event_attributes
    return started.workflow_type.name


async def record_all(folder: Path) -> None:
    """Run every recording script, as its docstring says, into ``folder`` (RELANCE_RECORD_INTO:
    tests/histories stays as it is)."""
    env = {**os.environ, **ALWAYS_OPEN, "RELANCE_RECORD_INTO": str(folder)}
    for name in SCRIPTS:
        say(f"actions: running the paths of tests/histories/{name}.py")
        script = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            f"tests.histories.{name}",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, errors = await script.communicate()
        if script.returncode != 0:
            raise RuntimeError(f"tests/histories/{name}.py failed:\n{errors.decode()[-3000:]}")


async def run(stack, args) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        await record_all(Path(tmp))
        fresh = {path.stem: load(path) for path in sorted(Path(tmp).glob("*.json"))}
    by_journey = sorted(fresh.items(), key=lambda item: (workflow_type(item[1]), item[0]))
    say(
        f"actions: {'path':<44} {'events':>6} {'act':>4} {'tmr':>4} {'sig':>4} {'SA':>4} "
        f"{'bill':>5} {'saved':>6}  $/M journeys"
    )
    journeys: dict[str, list[tuple[str, Actions, Actions | None]]] = {}
    for name, history in by_journey:
        now = count(history)
        saved_path = SAVED / f"{name}.json"
        before = count(load(saved_path)) if saved_path.exists() else None
        journeys.setdefault(workflow_type(history), []).append((name, now, before))
        say(
            f"actions: {name:<44} {now.events:>6} {now.activities:>4} {now.timers:>4} "
            f"{now.signals:>4} {now.search_attributes:>4} {now.billable:>5} "
            f"{before.billable if before else '-':>6}  ${now.dollars_per_million:,.0f}"
        )
        if name in TARGETS and before is not None:
            wanted, saved_share = TARGETS[name], 1 - now.billable / before.billable
            met = "met" if saved_share >= wanted else "not met"
            rows.append(
                Row(
                    f"actions: {workflow_type(history)}, {name}",
                    f"{now.billable / before.billable:.2f}×",
                    f"≥ {wanted:.0%} fewer actions than the saved path: {saved_share:.0%}, {met}",
                    f"today's code: {now.describe()}; the saved history of the same path: "
                    f"{before.describe()}",
                )
            )
    # One row a journey: its paths' actions today (and in their saved histories).
    for journey, paths in journeys.items():
        now_total = sum(now.billable for _, now, _ in paths)
        saved = [before.billable for _, _, before in paths if before is not None]
        ratio = f"{sum(n.billable for _, n, b in paths if b) / sum(saved):.2f}×" if saved else "-"
        rows.append(
            Row(
                f"actions: {journey}, {len(paths)} paths",
                ratio,
                "no target (today's code vs the saved histories of the same paths)",
                f"{now_total / len(paths):.1f} actions a path on average "
                f"(${now_total / len(paths) * DOLLARS_PER_MILLION_ACTIONS:,.0f} per million "
                "journeys); per path, today (saved): "
                + ", ".join(
                    f"{name} {now.billable} ({before.billable if before else '-'})"
                    for name, now, before in paths
                ),
            )
        )
    return rows

"""Broadcasts: what the broadcast workflow (workflows/broadcast.py) and its activities
(activities/broadcasts.py) pass each other. Ids and knobs only, no lead data.

The workflow freezes the audience at start (``freeze_audience``), then sends it batch by batch
(``send_broadcast_batch``: one activity for many recipients, each through the send ledger), and
records its status on the broadcast's row (``record_broadcast``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from temporalio import activity

# How a broadcast's workflow is named: ``broadcast-<broadcast id>`` (the catalogue's entry).
BROADCAST_WORKFLOW = "BroadcastWorkflow"
# The label of a broadcast's messages (``messages.journey``) and its rules (RELANCE_JOURNEY_RULES).
BROADCAST_JOURNEY = "broadcast"

# Signals the API sends a running broadcast.
PAUSE = "pause"
RESUME = "resume"
CANCEL = "cancel"

# What ``GET /broadcasts/{id}`` and the Temporal UI show. ``outcome`` values of the recipients.
PENDING = "pending"
DEFERRED = "deferred"  # outside the lead's send window: sent when it opens
SENT = "sent"
FAILED = "failed"
SKIPPED = "skipped"  # stored as "skipped:<reason>" (a SkipReason value, or "other")


@dataclass
class Counts:
    """How far a broadcast is, counted from its recipients' rows (exact across retries)."""

    audience: int = 0
    sent: int = 0
    failed: int = 0
    deferred: int = 0  # waiting for their send window
    skipped: dict[str, int] = field(default_factory=dict)  # by reason

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    @property
    def remaining(self) -> int:
        return self.audience - self.sent - self.failed - self.skipped_total


@dataclass
class BroadcastInput:
    """The broadcast's knobs, and the state a continued run carries on."""

    broadcast_id: str
    per_hour: int
    send_at: datetime | None = None
    batches_per_run: int = 200  # continue-as-new after this many batches
    # Carried over by continue-as-new:
    started_at: datetime | None = None  # when sending began (the pace counts from here)
    paused_seconds: float = 0.0  # time spent paused, not counted in the pace
    paused: bool = False
    counts: Counts | None = None
    batches: int = 0
    runs: int = 1


@dataclass
class FreezeRequest:
    broadcast_id: str


@dataclass
class BatchRequest:
    broadcast_id: str
    workflow_id: str
    limit: int  # messages to send at most (skips and deferrals do not count)


@dataclass
class BatchResult:
    counts: Counts
    # No recipient was ready (all left are deferred to their send window): when the first opens.
    next_due: datetime | None = None
    temporary_failure: str = ""  # the provider refused for now: the batch stopped, retry later


@dataclass
class BroadcastRecord:
    broadcast_id: str
    status: str  # running | paused | cancelled | completed
    counts: Counts | None = None


@dataclass
class BroadcastProgress:
    """The ``progress`` query's answer: what the broadcast is doing now."""

    status: str  # scheduled | running | paused | waiting | cancelled | completed
    counts: Counts
    per_hour: int
    eta: datetime | None = None  # at the pace asked, when the last message goes out
    detail: str = ""


@dataclass
class BroadcastResult:
    status: str  # completed | cancelled
    counts: Counts
    runs: int


@activity.defn(name="freeze_broadcast_audience")
def freeze_audience(request: FreezeRequest) -> Counts:
    raise NotImplementedError("run by the worker: BroadcastActivities.freeze_audience")


@activity.defn(name="send_broadcast_batch")
def send_broadcast_batch(request: BatchRequest) -> BatchResult:
    raise NotImplementedError("run by the worker: BroadcastActivities.send_broadcast_batch")


@activity.defn(name="record_broadcast")
def record_broadcast(record: BroadcastRecord) -> None:
    raise NotImplementedError("run by the worker: BroadcastActivities.record_broadcast")

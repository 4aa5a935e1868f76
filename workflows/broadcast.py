"""A broadcast: one campaign to a whole audience, in waves of ``per_hour`` messages.

    wait for send_at
    freeze the audience (one activity: the leads as they are now, numbered)
    ┌─► paused? wait for resume (the pause is not counted in the pace)
    │   the pace: message k is due at start + k / per_hour; wait (a durable timer) until a
    │   batch is due
    │   send a batch (one activity: many recipients, each through the send ledger)
    │   every batch_per_run batches ─► continue-as-new with the counts and the pace's start
    └── recipients left? ─► completed (or cancelled at any point)

The pace counts from the broadcast's start and the messages sent so far, never from sleeps
between sends, so a worker killed and restarted (or a slow batch) does not slow the whole run:
the next batch sends what is due by then. The counts come from the recipients' rows, exact
across retries. A lead outside its send window is deferred by the batch (its own zone) and
sent once the window opens; the others go on meanwhile. Skipped messages (no consent,
suppressed, over the frequency cap...) do not use the pace.

Progress is in the ``progress`` query (``GET /broadcasts/{id}``) and in the Temporal UI's
current details.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from temporalio import workflow

from relance.contracts import broadcasts as bc
from relance.contracts.broadcasts import (
    BatchRequest,
    BroadcastInput,
    BroadcastProgress,
    BroadcastRecord,
    BroadcastResult,
    Counts,
    FreezeRequest,
    freeze_audience,
    record_broadcast,
    send_broadcast_batch,
)
from workflows.steps import ACTIVITY_OPTIONS, PAGE_OPTIONS, show_step, wait_for

MAX_BATCH = 200  # messages one batch sends at most
# A batch reports to Temporal after each message; a worker killed mid-batch is noticed after
# this long and the batch is retried elsewhere (its finished recipients are settled: skipped).
BATCH_OPTIONS = dict(PAGE_OPTIONS, heartbeat_timeout=timedelta(seconds=30))
MAX_BACKOFF = timedelta(minutes=5)


def batch_size(per_hour: int, audience: int) -> int:
    """Messages per batch: about 30 s of the pace, at most MAX_BATCH, and small enough that even
    a small audience goes out in about 20 waves."""
    return max(1, min(MAX_BATCH, per_hour // 120, audience // 20 or 1))


def _to_send(counts: Counts) -> int:
    """Recipients still to send to now (the deferred wait for their window)."""
    return counts.remaining - counts.deferred


@workflow.defn(name=bc.BROADCAST_WORKFLOW)
class BroadcastWorkflow:
    def __init__(self) -> None:
        self.paused = False
        self.cancelled = False
        self.status = "scheduled"
        self.detail = ""
        self.input: BroadcastInput | None = None

    @workflow.signal(name=bc.PAUSE)
    def pause(self) -> None:
        self.paused = True

    @workflow.signal(name=bc.RESUME)
    def resume(self) -> None:
        self.paused = False

    @workflow.signal(name=bc.CANCEL)
    def cancel(self) -> None:
        self.cancelled = True

    @workflow.query(name="progress")
    def progress(self) -> BroadcastProgress:
        input = self.input
        counts = (input.counts if input else None) or Counts()
        return BroadcastProgress(
            self.status,
            counts,
            input.per_hour if input else 0,
            eta=self._eta(counts),
            detail=self.detail,
        )

    def _eta(self, counts: Counts) -> datetime | None:
        input = self.input
        if input is None or input.started_at is None or self.status in ("cancelled", "completed"):
            return None
        due = self._start() + timedelta(hours=(counts.sent + _to_send(counts)) / input.per_hour)
        return max(due, workflow.now())

    def _start(self) -> datetime:
        """The pace's origin: the start, moved on by the time spent paused."""
        assert self.input is not None and self.input.started_at is not None
        return self.input.started_at + timedelta(seconds=self.input.paused_seconds)

    def _show(self, status: str, detail: str) -> None:
        """The Step search attribute on a change of status; the current details always."""
        counts = (self.input.counts if self.input else None) or Counts()
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(counts.skipped.items())) or "none"
        eta = self._eta(counts)
        summary = (
            f"{counts.sent} sent, {counts.skipped_total} skipped ({skipped}), {counts.failed} "
            f"failed, {counts.deferred} waiting for their send window, {counts.remaining} of "
            f"{counts.audience} remaining" + (f"; ETA {eta:%Y-%m-%d %H:%M} UTC" if eta else "")
        )
        self.detail = f"{detail}. {summary}" if detail else summary
        if status != self.status:
            self.status = status
            show_step(status, self.detail)
        else:
            workflow.set_current_details(f"**{status}**: {self.detail}")

    async def _record(self, status: str) -> None:
        assert self.input is not None
        await workflow.execute_activity(
            record_broadcast,
            BroadcastRecord(self.input.broadcast_id, status, self.input.counts),
            summary=status,
            **ACTIVITY_OPTIONS,
        )

    async def _finish(self, status: str) -> BroadcastResult:
        assert self.input is not None
        self._show(status, "cancelled" if status == "cancelled" else "every recipient done")
        await self._record(status)
        return BroadcastResult(status, self.input.counts or Counts(), self.input.runs)

    @workflow.run
    async def run(self, input: BroadcastInput) -> BroadcastResult:
        self.input = input
        self.paused = self.paused or input.paused
        if input.started_at is None:
            if input.send_at is not None and input.send_at > workflow.now():
                self._show("scheduled", f"starts at {input.send_at:%Y-%m-%d %H:%M} UTC")
                await wait_for(lambda: self.cancelled, input.send_at - workflow.now())
            if self.cancelled:
                return await self._finish("cancelled")
            input.counts = await workflow.execute_activity(
                freeze_audience,
                FreezeRequest(input.broadcast_id),
                summary="freeze the audience",
                **PAGE_OPTIONS,
            )
            input.started_at = workflow.now()
        assert input.counts is not None
        batches_this_run = failures = 0
        while True:
            counts = input.counts
            if self.cancelled:
                return await self._finish("cancelled")
            if counts.remaining <= 0:
                return await self._finish("completed")
            if self.paused:
                input.paused = True
                self._show("paused", "paused: resume to go on")
                await self._record("paused")
                since = workflow.now()
                await workflow.wait_condition(lambda: not self.paused or self.cancelled)
                input.paused = False
                input.paused_seconds += (workflow.now() - since).total_seconds()
                if not self.cancelled:
                    await self._record("running")
                continue
            size = batch_size(input.per_hour, counts.audience)
            elapsed_hours = (workflow.now() - self._start()).total_seconds() / 3600
            due_now = math.floor(elapsed_hours * input.per_hour + 1e-9) + 1 - counts.sent
            wanted = max(1, min(size, _to_send(counts)))
            if due_now < wanted:  # wait until a whole batch is due
                at = self._start() + timedelta(hours=(counts.sent + wanted - 1) / input.per_hour)
                self._show("running", f"next wave at {at:%H:%M:%S} UTC")
                await wait_for(lambda: self.paused or self.cancelled, at - workflow.now())
                continue
            self._show("running", f"sending a wave of up to {min(due_now, MAX_BATCH)}")
            result = await workflow.execute_activity(
                send_broadcast_batch,
                BatchRequest(
                    input.broadcast_id, workflow.info().workflow_id, min(due_now, MAX_BATCH)
                ),
                summary=f"wave {input.batches + 1}",
                **BATCH_OPTIONS,
            )
            input.counts = result.counts
            input.batches += 1
            batches_this_run += 1
            if result.temporary_failure:
                failures += 1
                backoff = min(MAX_BACKOFF, timedelta(seconds=2**failures))
                self._show("running", f"the provider refused for now, retrying in {backoff}")
                await wait_for(lambda: self.paused or self.cancelled, backoff)
            elif result.next_due is not None and result.counts.sent == counts.sent:
                failures = 0
                self._show("waiting", f"the rest wait for their send window ({result.next_due})")
                await wait_for(
                    lambda: self.paused or self.cancelled, result.next_due - workflow.now()
                )
            else:
                failures = 0
            if (
                batches_this_run >= input.batches_per_run
                or workflow.info().is_continue_as_new_suggested()
            ):
                input.runs += 1
                workflow.continue_as_new(input)

"""Waiting in tests: on the event itself, with a deadline, never a fixed sleep.

A check that something did NOT happen ("no second score", "no wrongly kept hit") is only worth
something once the thing that could have made it happen is over. So these helpers wait for that
event (the outbox has settled the hit, the journey's history holds the signal), then the test
asserts the absence. On a slow machine they wait longer; they never pass early.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from relance.domain.models import TrackingEvent


async def eventually(check, *, timeout: float, what: str, every: float = 0.05):
    """Call ``check`` (sync or async) until it returns something truthy, and return that; fail
    after ``timeout`` seconds, saying what was awaited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):  # bounded too: a call that hangs fails, saying what
            try:
                result = await asyncio.wait_for(result, max(deadline - loop.time(), every))
            except TimeoutError:
                raise AssertionError(
                    f"timed out after {timeout:g} s waiting for {what} (a check hung)"
                ) from None
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(every)


def stored_hits(engine: Engine, lead_ids: str | Iterable[str]) -> list[TrackingEvent]:
    """The tracking hits kept for these leads, oldest first."""
    ids = [lead_ids] if isinstance(lead_ids, str) else list(lead_ids)
    with Session(engine) as session:
        return list(
            session.exec(
                select(TrackingEvent)
                .where(col(TrackingEvent.lead_id).in_(ids))
                .order_by(col(TrackingEvent.id))
            ).all()
        )


async def settled_hits(
    engine: Engine,
    lead_ids: str | Iterable[str],
    *,
    count: int,
    kind: str | None = None,
    timeout: float = 15.0,
) -> list[TrackingEvent]:
    """Wait until at least ``count`` hits (of ``kind``, if given) are kept for these leads and the
    outbox has settled every hit of theirs (``delivered_at`` stamped: signalled, or kept as not
    signalled with a note). Returns all their hits."""

    def check() -> list[TrackingEvent] | None:
        hits = stored_hits(engine, lead_ids)
        counted = [h for h in hits if kind is None or h.kind == kind]
        return hits if len(counted) >= count and all(h.delivered_at for h in hits) else None

    return await eventually(
        check,
        timeout=timeout,
        what=f"the outbox to settle {count} {kind or ''} hit(s) of {lead_ids}",
    )


async def signals_received(client: Client, workflow_id: str, *, timeout: float = 10.0) -> list[str]:
    """The names of the signals in the journey's history, in order. A signal that comes while
    the journey's worker is on a workflow task is held by Temporal and written to the history
    when that task ends: so the history is read once no workflow task is pending (within
    ``timeout`` seconds; then as it is)."""
    handle = client.get_workflow_handle(workflow_id)

    async def no_task_pending() -> bool:
        return not (await handle.describe()).raw_description.HasField("pending_workflow_task")

    try:
        await eventually(no_task_pending, timeout=timeout, what=f"{workflow_id}'s workflow task")
    except AssertionError:
        pass  # a task that keeps failing: the history as it is says what went wrong
    names = []
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            names.append(event.workflow_execution_signaled_event_attributes.signal_name)
    return names


async def finished(handle, *, timeout: float = 120.0):
    """The run's result, on the time-skipping server too. A journey whose message is held for
    the send window waits days of skipped time; the test server's wait for the closing event
    can lapse in that jump and answer with no event (the SDK's "No completion event found"),
    though the run goes on. Asked again until the run ends, within ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await handle.result()
        except RuntimeError as err:
            if "No completion event found" not in str(err) or loop.time() > deadline:
                raise

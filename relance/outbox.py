"""Deliver tracking hits to their journeys, from the durable outbox (``tracking_events``).

The tracking endpoints never wait for Temporal (a signal round-trip is far slower than serving
a GIF, and Temporal may be down): they write the hit and return. This dispatcher, running
beside the API, signals each undelivered hit in the order received and stamps it delivered.
When Temporal is unreachable it backs off and tries again; nothing is lost.

After each batch it also passes the lead's activity on (relance/lead_activity.py): a lead in a
re-engagement journey who opened or clicked another journey's message has come back, and a
click may make the premium offer due. One query per batch, off the tracking endpoints' path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from relance.lead_activity import FollowUp, act_on, follow_ups
from relance.models import Lead, Message, TrackingEvent, utcnow
from relance.scoring import apply_score
from relance.settings import Settings
from workflows.signals import UNSUBSCRIBED, TrackingSignal

log = logging.getLogger("relance.outbox")

# Journeys that score the clicks in their own emails (their ``clicked`` signal handler).
JOURNEYS_SCORING_CLICKS = frozenset({"welcome", "cart", "nurturing"})


class OutboxDispatcher:
    """``quiet_for``: seconds since the latest hit (``HitRecorder.quiet_for``). While hits keep
    arriving, delivery waits for ``burst_quiet_seconds`` of calm — but never more than
    ``max_delay_seconds`` — so that on a small machine a campaign's burst of opens is served first
    and signalled right after, instead of both fighting for the same cores. Within a batch,
    journeys are signalled ``concurrency`` at a time, each journey's hits in the order received."""

    def __init__(self, engine: Engine, client: Client, *, settings: Settings | None = None, batch_size: int = 500,
                 poll_seconds: float = 1.0, max_backoff_seconds: float = 30.0, concurrency: int = 16,
                 quiet_for: Callable[[], float] | None = None, burst_quiet_seconds: float = 0.3,
                 max_delay_seconds: float = 5.0) -> None:
        self.engine = engine
        self.client = client
        self.settings = settings  # None: tracking hits are signalled, nothing more
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.concurrency = concurrency
        self.quiet_for = quiet_for
        self.burst_quiet_seconds = burst_quiet_seconds
        self.max_delay_seconds = max_delay_seconds
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Called by an endpoint right after it stored a hit."""
        self._wake.set()

    async def run(self) -> None:
        backoff = 0.0
        while True:
            await self._let_the_burst_pass()
            try:
                delivered, blocked = await self.deliver_batch()
            except Exception:  # a database hiccup must not kill delivery for good
                log.exception("outbox: delivery failed; will try again")
                delivered, blocked = 0, True
            if blocked:
                backoff = min(max(backoff * 2, 0.5), self.max_backoff_seconds)
                await asyncio.sleep(backoff)
                continue
            backoff = 0.0
            if delivered < self.batch_size:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
                except asyncio.TimeoutError:
                    pass

    async def _let_the_burst_pass(self) -> None:
        if self.quiet_for is None:
            return
        waited = 0.0
        while (quiet := self.quiet_for()) < self.burst_quiet_seconds and waited < self.max_delay_seconds:
            pause = min(self.burst_quiet_seconds - quiet, self.max_delay_seconds - waited)
            await asyncio.sleep(pause)
            waited += pause

    async def deliver_batch(self) -> tuple[int, bool]:
        """Signal up to one batch of pending hits. Returns (delivered, blocked)."""
        pending = await asyncio.to_thread(self._pending)
        by_journey: dict[str, list[TrackingEvent]] = {}
        for event in pending:
            by_journey.setdefault(event.workflow_id, []).append(event)
        done: list[tuple[TrackingEvent, str | None]] = []
        blocked = False
        limit = asyncio.Semaphore(self.concurrency)

        async def deliver_in_order(events: list[TrackingEvent]) -> None:
            nonlocal blocked
            async with limit:
                for event in events:
                    try:
                        done.append((event, await self._deliver(event)))
                    except RPCError as err:
                        log.warning("outbox: Temporal did not take signal %s for %s (%s); will retry",
                                    event.kind, event.workflow_id, err.message)
                        await asyncio.to_thread(self._count_attempt, event.id, err.message)
                        blocked = True
                        return  # keep the order: this journey's later hits wait for this one

        await asyncio.gather(*(deliver_in_order(events) for events in by_journey.values()))
        if done:
            await asyncio.to_thread(self._mark_delivered, [(event.id, note) for event, note in done])
            delivered = [event for event, _ in done]
            await self._score_hits(delivered)
            await self._pass_activity_on(delivered)
        return len(done), blocked

    async def _deliver(self, event: TrackingEvent) -> str | None:
        """Signal one hit; returns the delivery note. Raises RPCError when Temporal did not take it."""
        signal = TrackingSignal(message_id=event.message_id, url=event.url)
        try:
            if event.kind == UNSUBSCRIBED:  # every journey of the lead stops, not only the message's
                return f"told {await self._tell_every_journey(event, signal)} running journeys"
            await self.client.get_workflow_handle(event.workflow_id).signal(event.kind, signal)
            return None
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return "journey no longer running"
            raise

    async def _score_hits(self, delivered: list[TrackingEvent]) -> None:
        """Opens and clicks score per config/scoring.yaml, once per message, in one transaction:
        an open ``email_opened``; a click ``email_clicked``, except in the journeys of
        ``JOURNEYS_SCORING_CLICKS``, which score their own (in the workflow, with the step in the
        reason) under the same key, ``<workflow id>:click:<message id>``."""
        hits = sorted({(e.kind, e.lead_id, e.workflow_id, e.message_id) for e in delivered
                       if e.kind in ("opened", "clicked")})
        if self.settings is None or not hits:
            return
        try:
            await asyncio.to_thread(self._score_hits_now, hits)
        except Exception:  # the hits are delivered; a lost point is not worth stalling them
            log.exception("outbox: could not score %d opens and clicks", len(hits))

    def _score_hits_now(self, hits: list[tuple[str, str, str, str]]) -> None:
        events = self.settings.scoring_rules().events
        with Session(self.engine) as session:
            for kind, lead_id, workflow_id, message_id in hits:
                points = events["email_opened" if kind == "opened" else "email_clicked"]
                if not points or session.get(Lead, lead_id) is None:  # erased meanwhile
                    continue
                if kind == "opened":
                    apply_score(session, lead_id=lead_id, event="email_opened", key=f"open:{message_id}",
                                reason=f"opened message {message_id}", points=points,
                                mql_threshold=self.settings.score_mql_threshold)
                    continue
                message = session.get(Message, message_id)
                if message is None or message.journey in JOURNEYS_SCORING_CLICKS:
                    continue
                apply_score(session, lead_id=lead_id, event="email_clicked", key=f"{workflow_id}:click:{message_id}",
                            reason=f"clicked a link in the {message.step} message of the {message.journey} journey",
                            points=points, mql_threshold=self.settings.score_mql_threshold)
            session.commit()

    async def _pass_activity_on(self, delivered: list[TrackingEvent]) -> None:
        if self.settings is None:
            return
        activity: dict[str, str] = {}
        told_directly: set[str] = set()  # hits on a re-engagement email reached that journey already
        for event in delivered:
            if event.kind not in ("opened", "clicked"):
                continue
            activity[event.lead_id] = "clicked" if "clicked" in (event.kind, activity.get(event.lead_id)) else "opened"
            if event.workflow_id == f"reengage-{event.lead_id}":
                told_directly.add(event.lead_id)
        try:
            due = await asyncio.to_thread(self._follow_ups, activity)
            due = [FollowUp(f.lead_id, f.kind, f.reengaging and f.lead_id not in told_directly, f.premium_due)
                   for f in due]
            await act_on(self.client, self.settings, due)
        except Exception:  # the hits are delivered; what they set in motion is best effort
            log.exception("outbox: could not pass %d leads' activity on", len(activity))

    def _follow_ups(self, activity: dict[str, str]) -> list[FollowUp]:
        with Session(self.engine) as session:
            return follow_ups(session, self.settings, activity)

    async def _tell_every_journey(self, event: TrackingEvent, signal: TrackingSignal) -> int:
        """Signal the message's journey and every running journey of the lead (Temporal's
        visibility, by the ``LeadId`` search attribute every journey sets). A journey that
        closed meanwhile is skipped; one with no unsubscribe handler ignores the signal, and
        the send activity's consent check refuses its marketing sends anyway."""
        query = f'LeadId = "{event.lead_id}" AND ExecutionStatus = "Running"'
        targets = {event.workflow_id}
        try:
            targets |= {wf.id async for wf in self.client.list_workflows(query)}
        except RPCError as err:
            if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
                raise  # Temporal is down: retry the whole unsubscribe later
            # A server whose visibility cannot answer (no LeadId attribute...) must not stall the
            # outbox: the message's journey is told, the others' sends are refused by consent.
            log.warning("outbox: cannot list the journeys of lead %s (%s); telling %s only",
                        event.lead_id, err.message, event.workflow_id)
        told = 0
        for workflow_id in sorted(targets):
            try:
                await self.client.get_workflow_handle(workflow_id).signal(UNSUBSCRIBED, signal)
                told += 1
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
        return told

    def _pending(self) -> list[TrackingEvent]:
        with Session(self.engine) as session:
            return list(session.exec(
                select(TrackingEvent).where(col(TrackingEvent.delivered_at).is_(None))
                .order_by(col(TrackingEvent.id)).limit(self.batch_size)
            ).all())

    def _mark_delivered(self, done: list[tuple[int, str | None]]) -> None:
        now = utcnow()
        by_note: dict[str | None, list[int]] = {}
        for event_id, note in done:
            by_note.setdefault(note, []).append(event_id)
        with Session(self.engine) as session:
            for note, ids in by_note.items():
                session.execute(update(TrackingEvent).where(col(TrackingEvent.id).in_(ids))
                                .values(delivered_at=now, delivery_note=note, attempts=TrackingEvent.attempts + 1))
            session.commit()

    def _count_attempt(self, event_id: int, error: str) -> None:
        with Session(self.engine) as session:
            session.execute(update(TrackingEvent).where(col(TrackingEvent.id) == event_id)
                            .values(attempts=TrackingEvent.attempts + 1, delivery_note=error[:500]))
            session.commit()

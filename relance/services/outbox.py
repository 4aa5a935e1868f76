"""Deliver tracking hits to their journeys, from the durable outbox (``tracking_events``).

The tracking endpoints never wait for Temporal (a signal round-trip is far slower than serving
a GIF, and Temporal may be down): they write the hit and return. This dispatcher, running
beside the API, settles each hit in the order received and stamps it delivered, as a stream: a
hit waits a fraction of a second to be claimed, batches overlap, and a campaign's opens that keep
coming for minutes reach their journeys as they come (``python -m bench outbox`` measures it).
When Temporal is unreachable it backs off and tries again; nothing is lost.

Anyone holding one email can request its pixel thousands of times, so a journey is told only
what it can use, decided from the database (across batches, restarts and API processes):

- one signal per ``signal_key`` (relance.services.tracking.signal_key: an open per message, a
  click per message and destination...); the later hits are kept for reporting, settled with a
  ``delivery_note`` saying the journey was told already;
- at most ``tracking_signals_per_journey`` open and click signals per journey; beyond, hits are
  kept as not signalled, the note says why, and the API logs it once;
- a journey that refuses a signal (its limit reached, or any refusal that is about that journey)
  never holds the others up: its hits wait, retried with backoff, while every other journey is
  served, and after ``tracking_signal_max_attempts`` the hit is kept as not signalled, with
  Temporal's reason. Only Temporal being unreachable for everyone stops the whole outbox.

Several API processes can share one PostgreSQL database: a dispatcher claims hits by leasing
them (``retry_at`` set ahead, written while the rows are locked with ``SELECT ... FOR UPDATE SKIP
LOCKED``), takes a journey only when it holds that journey's oldest pending hit, and leaves out
every journey with a leased hit; so each hit is signalled once and each journey's hits in order,
and each journey is stamped as soon as it is settled. SQLite has no row locks: there, run one API
process per database.

After each stamp it also passes the lead's activity on (relance/services/lead_activity.py): a lead
in a re-engagement journey who opened or clicked another journey's message has come back, and a
click may make the premium offer due. One query per stamp, off the tracking endpoints' path. And
the segment-entered triggers whose rules read opens, clicks or the score are evaluated for the
leads of the stamp (relance/services/triggers.py ``on_lead_facts``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from relance.contracts import catalogue
from relance.contracts.signals import CLICKED, OPENED, UNSUBSCRIBED, TrackingSignal
from relance.domain.models import Lead, Message, TrackingEvent, utcnow
from relance.domain.scoring import Change, apply_scores
from relance.domain.settings import Settings
from relance.services.lead_activity import FollowUp, act_on, follow_ups
from relance.services.tracking import signal_key
from relance.services.triggers import SCORE, TRACKED, reevaluate_segments

log = logging.getLogger("relance.services.outbox")

# Journeys that score the clicks in their own emails (their ``clicked`` signal handler), by their
# messages' label (the catalogue's ``scores_own_clicks``).
JOURNEYS_SCORING_CLICKS = catalogue.labels_scoring_own_clicks()

# Temporal unreachable or overloaded for everyone: the whole outbox waits, nothing is counted
# against the hit. Any other refusal is about one journey (its signal limit reached...).
UNREACHABLE = frozenset({RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED})

# What a journey's budget counts: the signals a stranger can multiply. Unsubscribes and
# confirmations are one per message already, and must reach the journey.
BUDGETED_KINDS = frozenset({OPENED, CLICKED})

# Hits scored per transaction when a stamp's hits are scored.
SCORES_PER_COMMIT = 200

# signal_outcome: the hit that settled its signal_key for its journey.
SIGNALLED, CLOSED, REFUSED = "signalled", "closed", "refused"
NO_LONGER_RUNNING = "journey no longer running"
_ALREADY = {
    SIGNALLED: "the journey was told this already",
    CLOSED: "the journey was no longer running",
    REFUSED: "the journey refused this already",
}


@dataclass
class _Claim:
    """Pending hits this dispatcher has leased: their journeys are its own until stamped."""

    events: list[TrackingEvent]  # in order; only journeys whose oldest pending hit is here
    claimed: int  # rows read (as many as asked: there may be more)
    told: dict[str, dict[str, tuple[int, str]]]  # journey -> signal_key -> (hit id, its outcome)
    spent: dict[str, int]  # journey -> open and click signals it has received
    stop_at: float = 0.0  # monotonic time after which no more signals start (the lease ends)


@dataclass
class _Settled:
    event: TrackingEvent
    outcome: str | None = None  # SIGNALLED | CLOSED | REFUSED; None: not signalled, or to retry
    note: str | None = None
    retry_at: datetime | None = None  # still pending: the journey refused it, try again then
    attempted: bool = False  # a signal was sent (or tried)
    key: str = field(default="")
    released: bool = False  # not tried (Temporal unreachable, lease ending): pending as it was


class OutboxDispatcher:
    """Delivers hits as a stream: the oldest pending hit waits at most ``max_delay_seconds``
    before it is claimed (sooner when a batch's worth is waiting), and each journey is settled
    and stamped on its own, as soon as its hits are signalled: a slow journey holds up nobody
    but itself. Up to ``concurrency`` journeys are signalled at once
    (RELANCE_TRACKING_DELIVERY_CONCURRENCY), and claims go on while they are, so that at most
    ``claims_in_flight × batch_size`` hits are held at a time; a settled journey's later hits
    are claimed right after its stamp. A journey is handled by one task at a time and its hits
    are signalled in the order received.

    Claiming leases the rows (``retry_at`` set ``lease_seconds`` ahead, in the claim's short
    transaction): every dispatcher, this one included, leaves out the journeys with a hit whose
    ``retry_at`` is ahead — the ones waiting out a refusal, and the ones being settled. The
    stamp clears the lease; hits not tried go back as they were. A dispatcher stops starting
    signals a quarter of the lease before its end, so an expired lease never lets two
    dispatchers signal one journey; one killed mid-way leaves its journeys to the others once
    the lease has passed (its last hits may be signalled twice, as before).

    The endpoints are served first because delivery is bounded, not postponed: a campaign's
    opens keep arriving for minutes, and waiting for calm under such a stream only let the
    backlog grow. The database work runs in threads, grouped (one stamp transaction for every
    journey settled meanwhile); the signals are awaited."""

    def __init__(
        self,
        engine: Engine,
        client: Client,
        *,
        settings: Settings | None = None,
        batch_size: int = 500,
        poll_seconds: float = 1.0,
        max_backoff_seconds: float = 30.0,
        concurrency: int | None = None,
        max_delay_seconds: float | None = None,
        claims_in_flight: int = 3,
        lease_seconds: float = 120.0,
    ) -> None:
        self.engine = engine
        self.client = client
        self.settings = settings  # None: tracking hits are signalled, nothing more
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.max_backoff_seconds = max_backoff_seconds
        defaults = settings or Settings(_env_file=None)
        self.concurrency = concurrency or defaults.tracking_delivery_concurrency
        self.max_delay_seconds = (
            defaults.tracking_delivery_max_delay_seconds
            if max_delay_seconds is None
            else max_delay_seconds
        )
        self.claims_in_flight = claims_in_flight
        self.lease_seconds = lease_seconds
        self.signals_per_journey = defaults.tracking_signals_per_journey
        self.max_attempts = defaults.tracking_signal_max_attempts
        self.retry_max_seconds = defaults.tracking_signal_retry_max_seconds
        self.share_rows = (
            engine.dialect.name == "postgresql"
        )  # row locks while claiming: several dispatchers may share
        self._wake = asyncio.Event()  # hits were stored, or journeys were stamped
        self._arrived = 0  # hits stored since the last claim began
        self._in_flight: set[str] = set()  # journeys this dispatcher is settling
        self._held = 0  # hits claimed and not stamped yet
        self._to_stamp: list[list[_Settled]] = []  # settled journeys, for the next stamp
        self._stamp_wake = asyncio.Event()
        self._stamped: list[_Settled] = []  # stamped, to score and pass on
        self._after_wake = asyncio.Event()
        self._budget_said: set[str] = set()  # journeys whose spent budget was logged (once each)
        # What an operator (or ``python -m bench outbox``) reads to see whether delivery keeps
        # ``concurrency`` signals in flight under load, or drains between claims.
        self.signalling = 0  # journeys being signalled now (one signal in flight each)

    @property
    def held(self) -> int:
        """Hits claimed (leased) by this dispatcher and not stamped yet."""
        return self._held

    def wake(self, hits: int = 1) -> None:
        """Called by the endpoints' recorder right after it stored ``hits`` hits."""
        self._arrived += hits
        self._wake.set()

    async def run(self) -> None:
        signals = asyncio.Semaphore(self.concurrency)  # journeys being signalled at once
        running: set[asyncio.Task] = set()
        trouble = False  # Temporal unreachable, or the database failing: back off
        backoff = 0.0

        async def settle(workflow_id: str, events: list[TrackingEvent], claim: _Claim) -> None:
            nonlocal trouble
            async with signals:
                self.signalling += 1
                try:
                    results, stopped = await self._settle_fully(workflow_id, events, claim)
                finally:
                    self.signalling -= 1
            if stopped:
                trouble = True
            self._to_stamp.append(results)
            self._stamp_wake.set()

        async def stamp() -> None:
            nonlocal trouble, backoff
            while True:
                await self._stamp_wake.wait()
                self._stamp_wake.clear()
                groups, self._to_stamp = self._to_stamp, []
                if not groups:
                    continue
                settled = [s for group in groups for s in group]
                try:
                    await asyncio.to_thread(self._record, settled)
                    if not trouble:
                        backoff = 0.0
                except Exception:  # the leases run out: these hits are tried again then
                    log.exception("outbox: could not stamp %d hits; will try again", len(settled))
                    trouble = True
                else:
                    self._stamped.extend(settled)
                    self._after_wake.set()
                finally:
                    self._in_flight -= {group[0].event.workflow_id for group in groups}
                    self._held -= len(settled)
                    self._wake.set()  # these journeys' later hits can be claimed now

        async def after() -> None:
            while True:
                await self._after_wake.wait()
                self._after_wake.clear()
                settled, self._stamped = self._stamped, []
                await self._after_stamp(settled)

        helpers = [asyncio.create_task(stamp()), asyncio.create_task(after())]
        try:
            while True:
                if trouble:
                    await asyncio.gather(*running, return_exceptions=True)  # every journey back
                    while self._in_flight:  # and stamped
                        self._wake.clear()
                        await self._wake.wait()
                    backoff = min(max(backoff * 2, 0.5), self.max_backoff_seconds)
                    # Temporal unreachable (or the database failing, logged): nothing is lost,
                    # the hits wait; the operator sees how long until the next try.
                    log.warning(
                        "outbox: backing off; the pending hits wait %.1f s before the next try",
                        backoff,
                    )
                    await asyncio.sleep(backoff)
                    trouble = False
                room = min(self.batch_size, self.claims_in_flight * self.batch_size - self._held)
                if room <= 0:  # enough held: wait for a stamp
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                self._arrived = 0
                self._wake.clear()
                try:
                    claim = await asyncio.to_thread(self._claim, frozenset(self._in_flight), room)
                except Exception:
                    log.exception("outbox: delivery failed; will try again")
                    trouble = True
                    continue
                for workflow_id, events in _by_journey(claim.events).items():
                    self._in_flight.add(workflow_id)
                    self._held += len(events)
                    task = asyncio.create_task(settle(workflow_id, events, claim))
                    running.add(task)
                    task.add_done_callback(running.discard)
                if claim.claimed < room and not trouble:
                    await self._next_hits()
        finally:
            for task in [*running, *helpers]:
                task.cancel()
            await asyncio.gather(*running, *helpers, return_exceptions=True)

    async def _next_hits(self) -> None:
        """Wait for hits to claim: stored here (``wake``), or by another API process (polled),
        or left behind by a journey that is stamped now; then let at most ``max_delay_seconds``
        pass for more to join them, unless a batch's worth is waiting already."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
        except TimeoutError:
            return
        if not self._arrived:
            return  # a journey was stamped: its later hits are waiting already
        deadline = asyncio.get_running_loop().time() + self.max_delay_seconds
        while self._arrived < self.batch_size:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=left)
            except TimeoutError:
                return

    async def deliver_batch(self) -> tuple[int, int, bool]:
        """Settle up to one batch of pending hits. Returns (rows claimed, rows settled, blocked):
        blocked when Temporal could not be reached (the caller backs off; nothing is lost)."""
        claim = await asyncio.to_thread(self._claim, frozenset(), self.batch_size)
        limit = asyncio.Semaphore(self.concurrency)

        async def one(workflow_id: str, events: list[TrackingEvent]) -> tuple[list, bool]:
            async with limit:
                return await self._settle_fully(workflow_id, events, claim)

        done = await asyncio.gather(
            *(one(w, events) for w, events in _by_journey(claim.events).items())
        )
        settled = [s for results, _ in done for s in results]
        if settled:
            await asyncio.to_thread(self._record, settled)
            await self._after_stamp(settled)
        settled_now = sum(1 for s in settled if s.retry_at is None and not s.released)
        return claim.claimed, settled_now, any(stopped for _, stopped in done)

    async def _settle_fully(
        self, workflow_id: str, events: list[TrackingEvent], claim: _Claim
    ) -> tuple[list[_Settled], bool]:
        """``_settle_journey``, with the hits it did not try given back (``released``)."""
        try:
            results, stopped = await self._settle_journey(workflow_id, events, claim)
        except Exception:  # a bug or a hiccup must not keep the journey leased for good
            log.exception("outbox: could not settle %s's hits; will try again", workflow_id)
            results, stopped = [], True
        tried = {s.event.id for s in results}
        results += [_Settled(e, released=True) for e in events if e.id not in tried]
        return results, stopped

    async def _after_stamp(self, settled: list[_Settled]) -> None:
        """Score the hits that reached their journey and pass the leads' activity on."""
        reached = [s.event for s in settled if s.outcome in (SIGNALLED, CLOSED)]
        if reached:
            await self._score_hits(reached)
        hits = [  # the lead was active
            s.event
            for s in settled
            if s.retry_at is None and not s.released and s.outcome != REFUSED
        ]
        if hits:
            await self._pass_activity_on(hits)
        if self.settings is not None and (reached or hits):
            # the segments whose rules read opens and clicks (or the score they brought)
            await reevaluate_segments(
                self.client,
                self.settings,
                self.engine,
                lead_ids=[e.lead_id for e in [*reached, *hits] if e.kind in ("opened", "clicked")],
                facts=(TRACKED, SCORE),
            )

    async def _settle_journey(
        self, workflow_id: str, events: list[TrackingEvent], claim: _Claim
    ) -> tuple[list[_Settled], bool]:
        """One journey's hits, in order: each is signalled, or settled without a signal (told
        already, budget spent), or left for later. Returns (results, Temporal unreachable)."""
        told = claim.told.setdefault(workflow_id, {})
        spent = claim.spent.get(workflow_id, 0)
        results: list[_Settled] = []
        for event in events:
            if time.monotonic() > claim.stop_at:  # the lease ends soon: the rest go back
                return results, False
            key = event.signal_key or signal_key(event.kind, event.message_id, event.url)
            if key in told:
                first, outcome = told[key]
                results.append(
                    _Settled(
                        event, note=f"not signalled: {_ALREADY[outcome]} (hit {first})", key=key
                    )
                )
                continue
            budgeted = event.kind in BUDGETED_KINDS
            if budgeted and spent >= self.signals_per_journey:
                self._say_budget_spent(workflow_id)
                results.append(
                    _Settled(
                        event,
                        key=key,
                        note=(
                            "not signalled: the journey has had its "
                            f"{self.signals_per_journey} open and click signals "
                            "(RELANCE_TRACKING_SIGNALS_PER_JOURNEY)"
                        ),
                    )
                )
                continue
            try:
                outcome, note = await self._deliver(event)
            except RPCError as err:
                if err.status in UNREACHABLE:
                    log.warning(
                        "outbox: Temporal is unreachable (%s); %s's hits wait",
                        err.message,
                        workflow_id,
                    )
                    return results, True
                attempts = event.attempts + 1
                # RESOURCE_EXHAUSTED: Temporal is rate-limiting (the journey, or everyone for a
                # while): the journey waits its turn, retried with backoff however long it takes.
                if attempts >= self.max_attempts and err.status != RPCStatusCode.RESOURCE_EXHAUSTED:
                    log.warning(
                        "outbox: %s refused the %s signal of hit %s %d times (%s); "
                        "kept as not signalled",
                        workflow_id,
                        event.kind,
                        event.id,
                        attempts,
                        err.message,
                    )
                    told[key] = (event.id, REFUSED)
                    results.append(
                        _Settled(
                            event,
                            REFUSED,
                            f"not signalled: refused {attempts} times: {err.message}",
                            attempted=True,
                            key=key,
                        )
                    )
                    continue
                delay = min(2.0 ** (attempts - 1), self.retry_max_seconds)
                log.warning(
                    "outbox: %s refused the %s signal of hit %s (%s); "
                    "its hits wait %.0f s, the others go on",
                    workflow_id,
                    event.kind,
                    event.id,
                    err.message,
                    delay,
                )
                results.append(
                    _Settled(
                        event,
                        note=f"attempt {attempts} refused: {err.message}",
                        retry_at=utcnow() + timedelta(seconds=delay),
                        attempted=True,
                        key=key,
                    )
                )
                return results, False  # keep the order: this journey's later hits wait for this one
            except Exception as err:  # the client could not connect: Temporal is unreachable
                log.warning(
                    "outbox: could not reach Temporal (%s); %s's hits wait", err, workflow_id
                )
                return results, True
            told[key] = (event.id, outcome)
            if budgeted and outcome == SIGNALLED:
                spent += 1
            results.append(_Settled(event, outcome, note, attempted=True, key=key))
        return results, False

    def _say_budget_spent(self, workflow_id: str) -> None:
        if workflow_id in self._budget_said:
            return
        if len(self._budget_said) > 10_000:
            self._budget_said.clear()
        self._budget_said.add(workflow_id)
        log.warning(
            "outbox: journey %s has had its %d open and click signals; "
            "its further opens and clicks are kept for reporting, not signalled "
            "(RELANCE_TRACKING_SIGNALS_PER_JOURNEY)",
            workflow_id,
            self.signals_per_journey,
        )

    async def _deliver(self, event: TrackingEvent) -> tuple[str, str | None]:
        """Signal one hit; returns (outcome, delivery note). Raises RPCError when Temporal did not
        take it."""
        signal = TrackingSignal(message_id=event.message_id, url=event.url)
        try:
            if (
                event.kind == UNSUBSCRIBED
            ):  # every journey of the lead stops, not only the message's
                return (
                    SIGNALLED,
                    f"told {await self._tell_every_journey(event, signal)} running journeys",
                )
            await self.client.get_workflow_handle(event.workflow_id).signal(event.kind, signal)
            return SIGNALLED, None
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return CLOSED, NO_LONGER_RUNNING
            raise

    async def _score_hits(self, delivered: list[TrackingEvent]) -> None:
        """Opens and clicks score per config/scoring.yaml, once per message, in one transaction:
        an open ``email_opened``; a click ``email_clicked``, except in the journeys of
        ``JOURNEYS_SCORING_CLICKS``, which score their own (in the workflow, with the step in the
        reason) under the same key, ``<workflow id>:click:<message id>``."""
        hits = sorted(  # by lead: their rows are locked in id order, as the endpoints lock them
            {
                (e.kind, e.lead_id, e.workflow_id, e.message_id)
                for e in delivered
                if e.kind in ("opened", "clicked")
            },
            key=lambda hit: (hit[1], hit),
        )
        if self.settings is None or not hits:
            return
        try:
            await asyncio.to_thread(self._score_hits_now, hits)
        except Exception:  # the hits are delivered; a lost point is not worth stalling them
            log.exception("outbox: could not score %d opens and clicks", len(hits))

    def _score_hits_now(self, hits: list[tuple[str, str, str, str]]) -> None:
        """Which leads still exist and which clicked messages score here are read once for the
        whole group (a campaign's hits are hundreds a stamp); the scores are applied together
        (``apply_scores``: one INSERT for their rows, one UPDATE per lead), committed every
        ``SCORES_PER_COMMIT`` hits: on SQLite's one writer the endpoints' hits and the stamps
        get their turn in between."""
        events = self.settings.scoring_rules().events
        with Session(self.engine) as session:
            lead_ids = sorted({lead_id for _, lead_id, _, _ in hits})
            clicked = sorted({message_id for kind, _, _, message_id in hits if kind == CLICKED})
            leads: set[str] = set()
            messages: dict[str, tuple[str, str]] = {}
            for chunk in _chunks(lead_ids):
                leads |= set(session.exec(select(Lead.id).where(col(Lead.id).in_(chunk))).all())
            for chunk in _chunks(clicked):
                for message_id, step, journey in session.exec(
                    select(Message.id, Message.step, Message.journey).where(
                        col(Message.id).in_(chunk)
                    )
                ):
                    messages[message_id] = (step, journey)
            scores: list[tuple[str, Change]] = []  # in the hits' order (by lead)
            for kind, lead_id, workflow_id, message_id in hits:
                event = "email_opened" if kind == OPENED else "email_clicked"
                if not events[event] or lead_id not in leads:  # erased meanwhile
                    continue
                if kind == OPENED:
                    key, reason = f"open:{message_id}", f"opened message {message_id}"
                else:
                    if message_id not in messages:
                        continue
                    step, journey = messages[message_id]
                    if journey in JOURNEYS_SCORING_CLICKS:
                        continue
                    key = f"{workflow_id}:click:{message_id}"
                    reason = f"clicked a link in the {step} message of the {journey} journey"
                scores.append((lead_id, Change(event, key, reason, events[event])))
            for start in range(0, len(scores), SCORES_PER_COMMIT):
                apply_scores(
                    session,
                    scores[start : start + SCORES_PER_COMMIT],
                    mql_threshold=self.settings.score_mql_threshold,
                )
                session.commit()

    async def _pass_activity_on(self, delivered: list[TrackingEvent]) -> None:
        if self.settings is None:
            return
        activity: dict[str, str] = {}
        told_directly: set[str] = (
            set()
        )  # hits on a re-engagement email reached that journey already
        for event in delivered:
            if event.kind not in ("opened", "clicked"):
                continue
            activity[event.lead_id] = (
                "clicked" if "clicked" in (event.kind, activity.get(event.lead_id)) else "opened"
            )
            if event.workflow_id == f"reengage-{event.lead_id}":
                told_directly.add(event.lead_id)
        try:
            due = await asyncio.to_thread(self._follow_ups, activity)
            due = [
                FollowUp(
                    f.lead_id,
                    f.kind,
                    f.reengaging and f.lead_id not in told_directly,
                    f.premium_due,
                )
                for f in due
            ]
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
            log.warning(
                "outbox: cannot list the journeys of lead %s (%s); telling %s only",
                event.lead_id,
                err.message,
                event.workflow_id,
            )
        told = 0
        for workflow_id in [
            event.workflow_id,
            *sorted(targets - {event.workflow_id}),
        ]:  # the message's first
            try:
                await self.client.get_workflow_handle(workflow_id).signal(UNSUBSCRIBED, signal)
                told += 1
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    continue
                if err.status in UNREACHABLE or workflow_id == event.workflow_id:
                    raise  # retried: Temporal is down, or the message's own journey refused it
                # Another journey of the lead refusing must not hold the unsubscribe back: its
                # marketing sends are refused by the consent check anyway.
                log.warning(
                    "outbox: %s refused the unsubscribe of lead %s (%s); its sends stop by consent",
                    workflow_id,
                    event.lead_id,
                    err.message,
                )
        return told

    def _claim(self, in_flight: frozenset[str], limit: int) -> _Claim:
        """Lease the next ``limit`` pending hits, skipping the journeys with a hit whose
        ``retry_at`` is ahead (waiting out a refusal, or leased by a dispatcher) and those this
        dispatcher is settling (``in_flight``), with what their journeys were told already. On
        PostgreSQL the rows are locked while the lease is written: another dispatcher skips
        them, and a journey whose oldest pending hit it cannot take."""
        with Session(self.engine) as session:
            now = utcnow()
            waiting = select(TrackingEvent.workflow_id).where(  # only pending hits have a retry_at
                col(TrackingEvent.retry_at).is_not(None), col(TrackingEvent.retry_at) > now
            )
            query = (
                select(TrackingEvent)
                .where(
                    col(TrackingEvent.delivered_at).is_(None),
                    col(TrackingEvent.workflow_id).not_in(waiting),
                )
                .where(*([col(TrackingEvent.workflow_id).not_in(in_flight)] if in_flight else []))
                .order_by(col(TrackingEvent.id))
                .limit(limit)
            )
            if self.share_rows:
                query = query.with_for_update(skip_locked=True)
            events = list(session.exec(query).all())
            claimed = len(events)
            if self.share_rows and events:
                events = self._oldest_first(session, self._not_leased(session, events, now))
            session.expunge_all()
            if events:
                session.execute(
                    update(TrackingEvent)
                    .where(col(TrackingEvent.id).in_([event.id for event in events]))
                    .values(retry_at=now + timedelta(seconds=self.lease_seconds))
                    .execution_options(synchronize_session=False)
                )
            told, spent = self._told(session, events)
            session.commit()
        stop_at = time.monotonic() + self.lease_seconds * 0.75
        return _Claim(events, claimed, told, spent, stop_at)

    @staticmethod
    def _told(
        session: Session, events: list[TrackingEvent]
    ) -> tuple[dict[str, dict[str, tuple[int, str]]], dict[str, int]]:
        """What the claimed hits' journeys were told already, about these hits' keys only (a
        journey's history of hits grows with every campaign; a claim reads only what it needs),
        and how many open and click signals each has had."""
        told: dict[str, dict[str, tuple[int, str]]] = {}
        spent: dict[str, int] = {}
        keys: dict[str, set[str]] = {}
        for event in events:
            key = event.signal_key or signal_key(event.kind, event.message_id, event.url)
            keys.setdefault(event.workflow_id, set()).add(key)
        journeys = sorted(keys)
        for chunk in (journeys[i : i + 200] for i in range(0, len(journeys), 200)):
            wanted = sorted({key for workflow_id in chunk for key in keys[workflow_id]})
            for workflow_id, key, event_id, outcome in session.exec(
                select(
                    TrackingEvent.workflow_id,
                    TrackingEvent.signal_key,
                    TrackingEvent.id,
                    TrackingEvent.signal_outcome,
                )
                .where(
                    col(TrackingEvent.signal_outcome).is_not(None),
                    col(TrackingEvent.workflow_id).in_(chunk),
                    col(TrackingEvent.signal_key).in_(wanted),
                )
                .order_by(col(TrackingEvent.id))
            ):
                if key in keys[workflow_id]:
                    told.setdefault(workflow_id, {}).setdefault(key, (event_id, outcome))
            for workflow_id, count in session.exec(
                select(TrackingEvent.workflow_id, func.count())
                .where(
                    col(TrackingEvent.signal_outcome) == SIGNALLED,
                    col(TrackingEvent.workflow_id).in_(chunk),
                    or_(
                        *(
                            col(TrackingEvent.signal_key).startswith(f"{kind}:")
                            for kind in BUDGETED_KINDS
                        )
                    ),
                )
                .group_by(col(TrackingEvent.workflow_id))
            ):
                spent[workflow_id] = count
        return told, spent

    @staticmethod
    def _not_leased(
        session: Session, events: list[TrackingEvent], now: datetime
    ) -> list[TrackingEvent]:
        """Leave out the journeys another dispatcher leased while this claim was reading. The
        claim's query reads the leases as they were when it began; a row locked then by another
        dispatcher's claim, and free by the time this one reaches it, is taken (PostgreSQL
        re-checks only the row itself) although that claim has just leased it. This query, a
        statement of its own, sees every lease committed before this claim's locks were taken:
        each journey it names is someone else's (this claim writes its own leases after it)."""
        journeys = sorted({event.workflow_id for event in events})
        leased: set[str] = set()
        for chunk in _chunks(journeys):
            leased |= set(
                session.exec(
                    select(TrackingEvent.workflow_id).where(
                        col(TrackingEvent.workflow_id).in_(chunk),
                        col(TrackingEvent.retry_at).is_not(None),
                        col(TrackingEvent.retry_at) > now,
                    )
                ).all()
            )
        return [event for event in events if event.workflow_id not in leased]

    @staticmethod
    def _oldest_first(session: Session, events: list[TrackingEvent]) -> list[TrackingEvent]:
        """Keep a journey's hits only up to the first of its pending hits this batch does not hold
        (another dispatcher holds it): that dispatcher has the journey's head, so it goes on with
        it, in order, and this one skips the journey for now."""
        mine = {event.id for event in events}
        journeys = {event.workflow_id for event in events}
        first_not_mine: dict[str, int] = {}
        for workflow_id, event_id in session.exec(
            select(TrackingEvent.workflow_id, TrackingEvent.id)
            .where(
                col(TrackingEvent.delivered_at).is_(None),
                col(TrackingEvent.workflow_id).in_(journeys),
                col(TrackingEvent.id) <= max(mine),
            )
            .order_by(col(TrackingEvent.id))
        ):
            if event_id not in mine:
                first_not_mine.setdefault(workflow_id, event_id)
        return [
            event
            for event in events
            if event.id < first_not_mine.get(event.workflow_id, event.id + 1)
        ]

    def _record(self, settled: list[_Settled]) -> None:
        """Stamp what happened to each hit, in one transaction; the lease of each ends. A hit
        not tried goes back as it was (pending, no retry)."""
        now = utcnow()
        rows = []
        for s in settled:
            if s.released:
                rows.append(
                    {
                        "id": s.event.id,
                        "delivered_at": None,
                        "delivery_note": s.event.delivery_note,
                        "signal_key": s.event.signal_key,
                        "signal_outcome": s.event.signal_outcome,
                        "retry_at": None,
                        "attempts": s.event.attempts,
                    }
                )
                continue
            done = s.retry_at is None
            rows.append(
                {
                    "id": s.event.id,
                    "delivered_at": now if done else None,
                    "delivery_note": s.note[:500] if s.note else None,
                    "signal_key": s.key or None,
                    "signal_outcome": s.outcome,
                    "retry_at": s.retry_at,
                    "attempts": s.event.attempts + (1 if s.attempted else 0),
                }
            )
        with Session(self.engine) as session:
            session.execute(update(TrackingEvent), rows)
            session.commit()


def _by_journey(events: list[TrackingEvent]) -> dict[str, list[TrackingEvent]]:
    """The claimed hits by journey, each journey's in the order received."""
    by_journey: dict[str, list[TrackingEvent]] = {}
    for event in events:
        by_journey.setdefault(event.workflow_id, []).append(event)
    return by_journey


def _chunks(values: list[str], size: int = 500) -> list[list[str]]:
    return [values[i : i + size] for i in range(0, len(values), size)]

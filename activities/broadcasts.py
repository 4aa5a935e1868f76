"""A broadcast's work: freeze its audience, send it batch by batch, record how far it is.

Each recipient is one ordinary send through the channel's provider and so through the send
ledger (activities/sending.py): consent (and the message's topic), suppression, the broadcast's
exclusions, the frequency cap, once. Its key is ``broadcast-<id>:lead-<lead id>``: a batch
retried after a worker was killed finds the recipients it had done already settled, and sends
them nothing again. The send window is checked here, per recipient, in the lead's own zone: a
lead outside it is ``deferred`` until it opens and the batch goes on with the others.

A batch goes through the send ledger's batch path (``SendLedger.claim_many``) in a few parts:
a part's recipients claimed in one transaction, every gate read for all of them at once and
each recipient decided by the rules a single send follows; then its messages go over a few
threads at once (``RELANCE_BROADCAST_SEND_CONCURRENCY``), each over the process's pooled SMTP
connections, while the next part is claimed; then the provider's answers are recorded in one
write, and the recipients' outcomes in another. A part claimed ahead of a refusal for now is
given back (its rows say no attempt reached the provider; its recipients stay pending). A
worker killed between the mail server's acceptance and that write leaves the part's rows
``sending``: the retried batch sends those again under their Message-IDs (mailboxes drop the
copy) and their rows say so, as a single send's would. A channel whose provider has no batch
path sends its waves one ordinary send per recipient.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, func, insert, literal, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.channels import ChannelProvider
from activities.sending import Claim, Delivery
from relance.contracts import broadcasts as bc
from relance.contracts.broadcasts import (
    BatchRequest,
    BatchResult,
    BroadcastRecord,
    Counts,
    FreezeRequest,
)
from relance.contracts.channels import CHANNELS
from relance.contracts.channels import channel as channel_of
from relance.contracts.sending import SendFailure, SendRequest, SendResult
from relance.contracts.skips import SkipReason
from relance.domain.audiences import Audience, lead_ids
from relance.domain.db import session_scope
from relance.domain.journey_rules import EXCLUDED
from relance.domain.models import Broadcast, BroadcastRecipient, Lead, as_utc, utcnow
from relance.domain.send_window import next_open
from relance.domain.settings import Settings

Send = Callable[[SendRequest], SendResult]
HEARTBEAT_EVERY = 5.0  # seconds: a wave tells Temporal it is alive while its sends go on
EXAMINED_PER_SEND = 4  # a batch reads at most this many recipients per message it may send
# Recipients claimed at once, at most: a batch goes in about four parts, the next claimed while
# a part's messages go out.
PART = 50
PARTS = 4
# The row of a message claimed ahead and never handed to the provider (the one before was
# refused for now): no attempt reached the provider.
NOT_HANDED_OVER = "the wave stopped before this message was handed to the provider"


def _now() -> datetime:
    """The batch's time: its attempt's scheduled time on the Temporal server (the broadcast's
    clock, also under the time-skipping test server)."""
    try:
        return activity.info().current_attempt_scheduled_time
    except RuntimeError:
        return utcnow()


def skip_kind(result: SendResult, channel: str) -> str:
    """The kind of a skip, also for a send settled by an earlier attempt (whose result carries
    the reason's words only)."""
    if result.skip is not None:
        return str(result.skip)
    reason = result.reason or ""
    for kind, start in (
        (SkipReason.NO_CONSENT, "no marketing consent"),
        (SkipReason.SUPPRESSED, "the address is on the suppression list"),
        (SkipReason.FREQUENCY_CAP, "skipped (frequency cap"),
        (SkipReason.EXCLUDED, EXCLUDED),
    ):
        if reason.startswith(start):
            return str(kind)
    if reason and reason == channel_of(channel).no_address:
        return str(SkipReason.NO_CHANNEL)
    return "other"


def outcome_of(result: SendResult, channel: str) -> str:
    if result.status == "skipped":
        return f"{bc.SKIPPED}:{skip_kind(result, channel)}"
    return bc.SENT if result.status == "sent" else bc.FAILED


@dataclass
class _Part:
    """Recipients of a batch claimed together: the messages to hand to the provider (each with
    its request and claim), and the outcomes known already (deferred, settled by the ledger)."""

    last: int  # the last position read
    examined: int
    jobs: list[tuple[int, SendRequest, Claim]] = field(default_factory=list)
    outcomes: dict[int, tuple[str, datetime | None, str | None]] = field(default_factory=dict)
    temporary: str = ""  # why the ledger could not claim them now (a concurrent claim)

    def settle(self, position: int, result: SendResult, broadcast: Broadcast) -> None:
        self.outcomes[position] = (outcome_of(result, broadcast.channel), None, result.message_id)


class BroadcastActivities:
    def __init__(self, settings: Settings, engine: Engine, sends: list[Send]) -> None:
        self.settings = settings
        self.engine = engine
        # The channels' send activities (activities/channels.py), by channel name.
        self.sends = {c.name: send for c, send in zip(CHANNELS, sends, strict=True)}
        # The channels whose provider has the batch path (``ChannelProvider.deliver``): a wave's
        # recipients are claimed together, each by the rules of a single send.
        self.providers = {
            name: owner
            for name, send in self.sends.items()
            if isinstance(owner := getattr(send, "__self__", None), ChannelProvider)
            and type(owner).deliver is not ChannelProvider.deliver
        }
        self.window = settings.send_window()
        self.concurrency = settings.broadcast_send_concurrency

    # Counting -------------------------------------------------------------------------------
    def counts(self, session: Session, broadcast_id: str) -> Counts:
        rows = session.exec(
            select(BroadcastRecipient.outcome, func.count())
            .where(BroadcastRecipient.broadcast_id == broadcast_id)
            .group_by(BroadcastRecipient.outcome)
        ).all()
        counts = Counts()
        for outcome, n in rows:
            counts.audience += n
            if outcome == bc.SENT:
                counts.sent += n
            elif outcome == bc.FAILED:
                counts.failed += n
            elif outcome == bc.DEFERRED:
                counts.deferred += n
            elif outcome.startswith(bc.SKIPPED + ":"):
                reason = outcome.partition(":")[2]
                counts.skipped[reason] = counts.skipped.get(reason, 0) + n
        return counts

    def _broadcast(self, session: Session, broadcast_id: str) -> Broadcast:
        broadcast = session.get(Broadcast, broadcast_id)
        if broadcast is None:
            raise ApplicationError(
                f"broadcast {broadcast_id} does not exist",
                type="BroadcastNotFound",
                non_retryable=True,
            )
        return broadcast

    # The audience, frozen -------------------------------------------------------------------
    @activity.defn(name="freeze_broadcast_audience", no_thread_cancel_exception=True)
    def freeze_audience(self, request: FreezeRequest) -> Counts:
        """The audience as it is now, numbered in a stable order; once (a retry finds it)."""
        with session_scope(self.engine) as session:
            broadcast = self._broadcast(session, request.broadcast_id)
            frozen = session.exec(
                select(func.count()).where(BroadcastRecipient.broadcast_id == request.broadcast_id)
            ).one()
            if not frozen:
                audience = Audience(broadcast.audience_kind, broadcast.audience_id)
                ids = lead_ids(session, audience, self.settings).subquery()
                members = (
                    select(
                        literal(broadcast.id),
                        func.row_number().over(order_by=ids.c.lead_id),
                        ids.c.lead_id,
                        literal(bc.PENDING),
                    )
                    .select_from(ids)
                    .join(Lead, col(Lead.id) == ids.c.lead_id)
                    .distinct()
                )
                session.execute(
                    insert(BroadcastRecipient).from_select(
                        ["broadcast_id", "position", "lead_id", "outcome"], members
                    )
                )
            counts = self.counts(session, broadcast.id)
            broadcast.audience_size = counts.audience
            if broadcast.status == "scheduled":
                broadcast.status, broadcast.started_at = "running", utcnow()
        activity.logger.info("broadcast %s: %d recipients", request.broadcast_id, counts.audience)
        return counts

    # A batch ------------------------------------------------------------------------------
    @activity.defn(name="send_broadcast_batch", no_thread_cancel_exception=True)
    def send_broadcast_batch(self, request: BatchRequest) -> BatchResult:
        now = _now()
        with session_scope(self.engine) as session:
            broadcast = self._broadcast(session, request.broadcast_id)
            session.expunge(broadcast)
        with ThreadPoolExecutor(max_workers=self.concurrency) as threads:
            if broadcast.channel in self.providers:
                temporary = self._send_parts(broadcast, request, now, threads)
            else:
                temporary = self._send_waves_each(broadcast, request, now, threads)
        with session_scope(self.engine) as session:
            counts = self.counts(session, broadcast.id)
            next_due = None
            if not self._ready(broadcast.id, now, 1, session=session):
                next_due = as_utc(
                    session.exec(
                        select(func.min(BroadcastRecipient.not_before)).where(
                            BroadcastRecipient.broadcast_id == broadcast.id,
                            BroadcastRecipient.outcome == bc.DEFERRED,
                        )
                    ).one()
                )
            self._save_counts(session, broadcast.id, counts, None)
        return BatchResult(counts, next_due=next_due, temporary_failure=temporary[:500])

    def _send_parts(
        self,
        broadcast: Broadcast,
        request: BatchRequest,
        now: datetime,
        threads: ThreadPoolExecutor,
    ) -> str:
        """The batch through the send ledger's batch path, a part at a time: each part's
        recipients claimed in one transaction (every gate read for all of them at once, by the
        rules a single send follows), their messages handed to the provider over the pooled
        connections, the provider's answers and the recipients' outcomes recorded in one write
        each. The next part is claimed while this one's messages go out, so the connections do
        not wait for the ledger. Answers why the provider refuses for now, or ""."""
        provider = self.providers[broadcast.channel]
        size = max(1, min(PART, -(-request.limit // PARTS)))
        handed = examined = 0  # messages handed to the provider; recipients read
        temporary = ""
        with ThreadPoolExecutor(max_workers=1) as ledger:

            def claim_next(after: int | None, room: int) -> Future[_Part | None]:
                return ledger.submit(
                    contextvars.copy_context().run,
                    self._claim_part,
                    broadcast,
                    request.workflow_id,
                    now,
                    after,
                    room,
                )

            claiming: Future[_Part | None] | None = claim_next(None, min(size, request.limit))
            while claiming is not None:
                part = claiming.result()
                claiming = None
                if part is None:
                    break
                examined += part.examined
                handed += len(part.jobs)
                jobs = [
                    (
                        position,
                        threads.submit(
                            contextvars.copy_context().run, provider.deliver, send, claim
                        ),
                    )
                    for position, send, claim in part.jobs
                ]
                room = min(size, request.limit - handed)
                if room > 0 and examined < EXAMINED_PER_SEND * request.limit:
                    claiming = claim_next(part.last, room)
                pending = {job for _, job in jobs}
                while pending:  # alive while the sends progress, however slow the machine
                    _, pending = wait(pending, timeout=HEARTBEAT_EVERY)
                    activity.heartbeat()
                try:
                    temporary = self._settle_part(broadcast, provider, part, jobs)
                except BaseException:
                    if claiming is not None:  # claimed, never handed over: say so on its rows
                        with contextlib.suppress(Exception):  # the first failure is the one
                            self._give_back(broadcast, provider, claiming.result())
                    raise
                activity.heartbeat()
                if temporary and claiming is not None:
                    self._give_back(broadcast, provider, claiming.result())
                    claiming = None
        return temporary

    def _claim_part(
        self,
        broadcast: Broadcast,
        workflow_id: str,
        now: datetime,
        after: int | None,
        room: int,
    ) -> _Part | None:
        """The next ``room`` recipients after position ``after``, claimed: those outside their
        send window deferred, the others through the send ledger in one transaction. None when
        no recipient is left."""
        chunk = self._ready(broadcast.id, now, room, after=after)
        if not chunk:
            return None
        part = _Part(last=chunk[-1][0], examined=len(chunk))
        recipients = []
        for position, lead_id, zone in chunk:
            opens = next_open(now, zone, self.window) if self.window else now
            if opens > now:
                part.outcomes[position] = (bc.DEFERRED, opens, None)
            else:
                recipients.append((position, lead_id))
        if not recipients:
            return part
        provider = self.providers[broadcast.channel]
        requests = [self._request(broadcast, workflow_id, lead_id) for _, lead_id in recipients]
        try:
            claims = provider.ledger.claim_many(
                requests, broadcast.channel, channel_blocked=provider.blocked()
            )
        except ApplicationError as err:
            if not err.non_retryable:  # a concurrent claim: the recipients go again
                part.temporary = str(err)
            else:
                for position, _ in recipients:
                    part.settle(position, SendResult("failed", reason=str(err)), broadcast)
            return part
        for (position, _), send, claim in zip(recipients, requests, claims, strict=True):
            if claim.result is not None:
                part.settle(position, claim.result, broadcast)
            else:
                part.jobs.append((position, send, claim))
        return part

    def _settle_part(
        self,
        broadcast: Broadcast,
        provider: ChannelProvider,
        part: _Part,
        jobs: list[tuple[int, Future]],
    ) -> str:
        """Record the provider's answers for a part's messages (one write), then its recipients'
        outcomes (another). Answers why the provider refuses for now ("" when it does not): those
        recipients stay pending."""
        deliveries, crashed = [], None
        for position, job in jobs:
            try:
                deliveries.append((position, job.result()))
            except Exception as err:  # noqa: BLE001 - the others' outcomes are recorded first
                crashed = crashed or err
        results = provider.ledger.record_many([d for _, d in deliveries])
        temporary = part.temporary
        for (position, delivery), result in zip(deliveries, results, strict=True):
            if result is None:  # the provider is down or refusing for now
                temporary = temporary or (
                    f"{broadcast.channel} {delivery.message.id} not sent yet: "
                    f"{delivery.failure.reason}"
                )
            else:
                part.settle(position, result, broadcast)
        self._record(broadcast.id, part.outcomes)
        if crashed is not None:
            raise crashed
        return temporary

    def _give_back(
        self, broadcast: Broadcast, provider: ChannelProvider, part: _Part | None
    ) -> None:
        """A part claimed ahead that will not be sent in this batch (the provider refused the
        one before for now): its messages' rows say no attempt reached the provider, its
        recipients stay pending; the ones the ledger settled (skipped...) are recorded."""
        if part is None:
            return
        provider.ledger.record_many(
            [
                Delivery(claim.message, failure=SendFailure(NOT_HANDED_OVER))
                for _, _, claim in part.jobs
            ]
        )
        self._record(broadcast.id, part.outcomes)

    def _send_waves_each(
        self,
        broadcast: Broadcast,
        request: BatchRequest,
        now: datetime,
        threads: ThreadPoolExecutor,
    ) -> str:
        """The batch as ordinary sends, one per recipient, wave after wave (a channel whose
        provider has no batch path). Answers why the provider refuses for now, or ""."""
        sent = examined = 0
        temporary = ""
        while sent < request.limit and not temporary:
            chunk = self._ready(broadcast.id, now, request.limit - sent)
            if not chunk:
                break
            examined += len(chunk)
            outcomes: dict[int, tuple[str, datetime | None, str | None]] = {}
            to_send = []
            for position, lead_id, zone in chunk:
                opens = next_open(now, zone, self.window) if self.window else now
                if opens > now:
                    outcomes[position] = (bc.DEFERRED, opens, None)
                else:
                    to_send.append((position, lead_id))
            for position, result in self._send_each(
                broadcast, request.workflow_id, to_send, threads
            ):
                if isinstance(result, str):  # the provider is down or refusing for now
                    temporary = temporary or result
                    continue
                outcomes[position] = (
                    outcome_of(result, broadcast.channel),
                    None,
                    result.message_id,
                )
                sent += result.status == "sent"
            self._record(broadcast.id, outcomes)
            activity.heartbeat(sent)
            if examined >= EXAMINED_PER_SEND * request.limit:
                break
        return temporary

    def _send_each(
        self,
        broadcast: Broadcast,
        workflow_id: str,
        recipients: list[tuple[int, str]],
        threads: ThreadPoolExecutor,
    ) -> list[tuple[int, SendResult | str]]:
        """The wave as ordinary sends, one per recipient (a channel whose provider has no batch
        path)."""
        send = self.sends[broadcast.channel]
        futures = [
            (
                position,
                threads.submit(
                    contextvars.copy_context().run,
                    send,
                    self._request(broadcast, workflow_id, lead_id),
                ),
            )
            for position, lead_id in recipients
        ]
        pending = {future for _, future in futures}
        while pending:  # alive while the sends progress, however slow the machine
            _, pending = wait(pending, timeout=HEARTBEAT_EVERY)
            activity.heartbeat()
        out: list[tuple[int, SendResult | str]] = []
        for position, future in futures:
            try:
                out.append((position, future.result()))
            except ApplicationError as err:
                if not err.non_retryable:  # the provider is down or refusing for now
                    out.append((position, str(err)))
                else:
                    out.append((position, SendResult("failed", reason=str(err))))
        return out

    def _request(self, broadcast: Broadcast, workflow_id: str, lead_id: str) -> SendRequest:
        return SendRequest(
            lead_id=lead_id,
            workflow_id=workflow_id,
            journey=bc.BROADCAST_JOURNEY,
            step=f"lead-{lead_id}",
            template=broadcast.template,
            kind="marketing",
            over_cap="skip",  # a campaign over the lead's cap is not held for days: skipped
            topic=broadcast.topic,
        )

    def _ready(
        self,
        broadcast_id: str,
        now: datetime,
        limit: int,
        *,
        after: int | None = None,
        session: Session | None = None,
    ) -> list[tuple[int, str, str]]:
        """The next recipients to send to, in audience order: pending, or deferred and due;
        ``after``: only those after this position (the ones before are being sent). Each kind
        is read along the (broadcast, outcome, position) index, never past the recipients done
        already."""

        def of(kind) -> list[tuple[int, str, str]]:
            query = (
                select(BroadcastRecipient.position, BroadcastRecipient.lead_id, Lead.time_zone)
                .join(Lead, col(Lead.id) == col(BroadcastRecipient.lead_id))
                .where(BroadcastRecipient.broadcast_id == broadcast_id, kind)
                .order_by(col(BroadcastRecipient.position))
                .limit(limit)
            )
            if after is not None:
                query = query.where(BroadcastRecipient.position > after)
            if session is not None:
                return list(session.exec(query).all())
            with Session(self.engine) as own:
                return list(own.exec(query).all())

        pending = of(BroadcastRecipient.outcome == bc.PENDING)
        due = of(
            (BroadcastRecipient.outcome == bc.DEFERRED)
            & (col(BroadcastRecipient.not_before) <= now)
        )
        return sorted(pending + due)[:limit]

    def _record(
        self, broadcast_id: str, outcomes: dict[int, tuple[str, datetime | None, str | None]]
    ) -> None:
        if not outcomes:
            return
        recipients = BroadcastRecipient.__table__
        one_statement = (
            update(recipients)
            .where(
                recipients.c.broadcast_id == bindparam("b_broadcast"),
                recipients.c.position == bindparam("b_position"),
            )
            .values(
                outcome=bindparam("b_outcome"),
                not_before=bindparam("b_not_before"),
                message_id=bindparam("b_message"),
            )
        )
        with session_scope(self.engine) as session:  # one statement, run for every recipient
            session.connection().execute(
                one_statement,
                [
                    {
                        "b_broadcast": broadcast_id,
                        "b_position": position,
                        "b_outcome": outcome,
                        "b_not_before": not_before,
                        "b_message": message_id,
                    }
                    for position, (outcome, not_before, message_id) in outcomes.items()
                ],
            )

    @staticmethod
    def _save_counts(
        session: Session, broadcast_id: str, counts: Counts, status: str | None
    ) -> None:
        broadcast = session.get(Broadcast, broadcast_id)
        if broadcast is None:
            return
        broadcast.audience_size = counts.audience
        broadcast.sent, broadcast.failed = counts.sent, counts.failed
        broadcast.skipped, broadcast.skipped_by_reason = counts.skipped_total, dict(counts.skipped)
        if status is not None and broadcast.status != status:
            broadcast.status = status
            if status in ("completed", "cancelled"):
                broadcast.finished_at = utcnow()

    # Status ---------------------------------------------------------------------------------
    @activity.defn(name="record_broadcast", no_thread_cancel_exception=True)
    def record_broadcast(self, record: BroadcastRecord) -> None:
        with session_scope(self.engine) as session:
            counts = record.counts or self.counts(session, record.broadcast_id)
            self._save_counts(session, record.broadcast_id, counts, record.status)

"""A broadcast's work: freeze its audience, send it batch by batch, record how far it is.

Each recipient is one ordinary send through the channel's provider and so through the send
ledger (activities/sending.py): consent (and the message's topic), suppression, the broadcast's
exclusions, the frequency cap, once. Its key is ``broadcast-<id>:lead-<lead id>``: a batch
retried after a worker was killed finds the recipients it had done already settled, and sends
them nothing again. The send window is checked here, per recipient, in the lead's own zone: a
lead outside it is ``deferred`` until it opens and the batch goes on with the others.

A wave goes through the send ledger's batch path (``SendLedger.claim_many``): its recipients
claimed in one transaction, every gate read for all of them at once and each recipient decided
by the rules a single send follows; then the messages go over a few threads at once
(``RELANCE_BROADCAST_SEND_CONCURRENCY``), each over the process's pooled SMTP connections; then
the provider's answers are recorded in one write, and the recipients' outcomes in another. A
worker killed between the mail server's acceptance and that write leaves the wave's rows
``sending``: the retried wave sends those again under their Message-IDs (mailboxes drop the
copy) and their rows say so, as a single send's would. A channel whose provider has no batch
path sends its waves one ordinary send per recipient.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime

from sqlalchemy import bindparam, func, insert, literal, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.channels import ChannelProvider
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
from relance.contracts.sending import SendRequest, SendResult
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
    @activity.defn(name="freeze_broadcast_audience")
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
    @activity.defn(name="send_broadcast_batch")
    def send_broadcast_batch(self, request: BatchRequest) -> BatchResult:
        now = _now()
        with session_scope(self.engine) as session:
            broadcast = self._broadcast(session, request.broadcast_id)
            session.expunge(broadcast)
        sent = examined = 0
        temporary = ""
        with ThreadPoolExecutor(max_workers=self.concurrency) as threads:
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
                wave = self._send_wave if broadcast.channel in self.providers else self._send_each
                for position, result in wave(broadcast, request.workflow_id, to_send, threads):
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

    def _send_wave(
        self,
        broadcast: Broadcast,
        workflow_id: str,
        recipients: list[tuple[int, str]],
        threads: ThreadPoolExecutor,
    ) -> list[tuple[int, SendResult | str]]:
        """The wave through the send ledger's batch path: its recipients claimed in one
        transaction (every gate read for all of them at once, by the rules a single send
        follows), the messages handed to the provider over the pooled connections, their
        outcomes recorded in one write. Each recipient's result, or why it was not sent yet (a
        failure a retry may fix: the recipient stays pending)."""
        if not recipients:
            return []
        provider = self.providers[broadcast.channel]
        requests = [self._request(broadcast, workflow_id, lead_id) for _, lead_id in recipients]
        try:
            claims = provider.ledger.claim_many(
                requests, broadcast.channel, channel_blocked=provider.blocked()
            )
        except ApplicationError as err:
            if not err.non_retryable:  # a concurrent claim: the wave goes again
                return [(position, str(err)) for position, _ in recipients]
            return [(position, SendResult("failed", reason=str(err))) for position, _ in recipients]
        out: dict[int, SendResult | str] = {}
        futures = []
        for (position, _), request, claim in zip(recipients, requests, claims, strict=True):
            if claim.result is not None:
                out[position] = claim.result
            else:
                job = threads.submit(
                    contextvars.copy_context().run, provider.deliver, request, claim
                )
                futures.append((position, claim, job))
        pending = {job for _, _, job in futures}
        while pending:  # alive while the sends progress, however slow the machine
            _, pending = wait(pending, timeout=HEARTBEAT_EVERY)
            activity.heartbeat()
        deliveries, crashed = [], None
        for position, _, job in futures:
            try:
                deliveries.append((position, job.result()))
            except Exception as err:  # noqa: BLE001 - the others' outcomes are recorded first
                crashed = crashed or err
        results = provider.ledger.record_many([d for _, d in deliveries])
        if crashed is not None:
            raise crashed
        for (position, delivery), result in zip(deliveries, results, strict=True):
            out[position] = (
                result
                if result is not None
                else f"{broadcast.channel} {delivery.message.id} not sent yet: "
                f"{delivery.failure.reason}"
            )
        return [(position, out[position]) for position, _ in recipients if position in out]

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
        self, broadcast_id: str, now: datetime, limit: int, *, session: Session | None = None
    ) -> list[tuple[int, str, str]]:
        """The next recipients to send to, in audience order: pending, or deferred and due."""
        query = (
            select(BroadcastRecipient.position, BroadcastRecipient.lead_id, Lead.time_zone)
            .join(Lead, col(Lead.id) == col(BroadcastRecipient.lead_id))
            .where(
                BroadcastRecipient.broadcast_id == broadcast_id,
                or_(
                    BroadcastRecipient.outcome == bc.PENDING,
                    (BroadcastRecipient.outcome == bc.DEFERRED)
                    & (col(BroadcastRecipient.not_before) <= now),
                ),
            )
            .order_by(col(BroadcastRecipient.position))
            .limit(limit)
        )
        if session is not None:
            return list(session.exec(query).all())
        with Session(self.engine) as own:
            return list(own.exec(query).all())

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
    @activity.defn(name="record_broadcast")
    def record_broadcast(self, record: BroadcastRecord) -> None:
        with session_scope(self.engine) as session:
            counts = record.counts or self.counts(session, record.broadcast_id)
            self._save_counts(session, record.broadcast_id, counts, record.status)

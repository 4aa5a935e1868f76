"""Record what a lead does through a signed link: the outbox row, plus its lasting effect.

An open or click stamps the message's first open/click and the lead's last activity; an
unsubscribe appends a withdrawal to the consent ledger; a double opt-in confirmation turns the
lead's pending email consent into a grant (once: a confirmation that changes nothing is not
kept, so it signals nothing). The signal to the journey is sent afterwards by
``relance.services.outbox``.

Hits arrive in bursts (a campaign's opens come within minutes), so ``HitRecorder`` commits
them in groups: the hits that arrived while one transaction was being written share the next
one. A click or an unsubscribe is answered only once its row is committed; an open is answered
at once and committed a few milliseconds later (an API process killed in that instant loses
those opens — the weakest of signals, which mail privacy proxies fake anyway).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import insert, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from relance.contracts.channels import EMAIL, NAMES, channel
from relance.contracts.signals import CLICKED, EMAIL_CONFIRMED, OPENED, UNSUBSCRIBED
from relance.domain.consent import GRANTED, PENDING, latest_consent
from relance.domain.models import Consent, Lead, Message, TrackingEvent, utcnow
from relance.domain.suppression import suppress, suppression_of
from relance.domain.tokens import TrackingToken

log = logging.getLogger("relance.services.tracking")

_MESSAGE_STAMPS = {OPENED: ("opened_at",), CLICKED: ("clicked_at", "opened_at")}


def signal_key(kind: str, message_id: str, url: str | None) -> str:
    """What a hit tells its journey; two hits with the same key tell it nothing new.

    What the journeys' handlers use: an open says the lead saw a message (welcome and
    re-engagement set a flag, the others ignore it); a click is scored once per message, and the
    nurturing journey also matches its destination against its assets; an unsubscribe stops the
    journey; a confirmation turns the double opt-in into a grant. So one open per message, one
    click per message and destination, one unsubscribe and one confirmation per message are all a
    journey can use (the destination is hashed: the key stays short whatever the URL)."""
    if kind == CLICKED:
        return f"{kind}:{message_id}:{hashlib.sha256((url or '').encode()).hexdigest()[:32]}"
    return f"{kind}:{message_id}"


@dataclass(frozen=True)
class Hit:
    token: TrackingToken
    kind: str  # opened | clicked | unsubscribed | email_confirmed
    user_agent: str | None
    ip: str | None
    # relance.domain.engagement.classify, at the endpoint: a proxy's or a scanner's hit.
    machine: bool = False
    machine_reason: str = ""


# A scanner's click is not the lead's: it is kept for the reports but its journey is not told
# (no click score, no "clicked" branch). A machine open is told as ever: opens were always the
# weakest of signals, and the journeys that use one only set a flag.
MACHINE_CLICK_NOTE = "a machine's click ({reason}): kept, not told to the journey"
# The message's stamps of what its reader did (reports count them): machine hits are left out.
_HUMAN_STAMPS = {
    OPENED: ("human_opened_at",),
    CLICKED: ("human_clicked_at", "human_opened_at"),
    UNSUBSCRIBED: ("unsubscribed_at",),
}


def _settled_at_once(hit: Hit, now) -> dict:
    if hit.machine and hit.kind == CLICKED:
        return {
            "delivered_at": now,
            "delivery_note": MACHINE_CLICK_NOTE.format(reason=hit.machine_reason),
        }
    return {"delivered_at": None, "delivery_note": None}


def record_hits(engine: Engine, hits: list[Hit], *, suppression_key: str = "") -> None:
    """Store a group of hits in one transaction. With ``suppression_key``
    (Settings.suppression_hash_key), an unsubscribe also puts the address on the suppression list.

    A hit about a lead that no longer exists (erased: its old emails still carry valid links)
    is dropped: nothing about an erased person is written again.

    Set-based, because a burst's group is hundreds of hits: one multi-row insert, then one
    update per kind of stamp (first open, first click, last activity), whatever the group's size.
    """
    now = utcnow()
    with Session(engine) as session:
        wanted = {hit.token.lead_id for hit in hits}
        # The leads' rows are locked first, in id order (PostgreSQL; SQLite has one writer): the
        # outbox scores and other API processes record hits of the same leads meanwhile, and
        # rows taken in one order everywhere never deadlock.
        existing = set(
            session.exec(
                select(Lead.id)
                .where(col(Lead.id).in_(wanted))
                .order_by(col(Lead.id))
                .with_for_update()
            ).all()
        )
        kept = [hit for hit in hits if hit.token.lead_id in existing]
        if any(
            hit.kind == EMAIL_CONFIRMED for hit in kept
        ):  # before the insert: only a grant is kept
            kept = [
                hit
                for hit in kept
                if hit.kind != EMAIL_CONFIRMED or _confirm(session, hit, now, suppression_key)
            ]
        if not kept:
            session.commit()
            return
        session.execute(
            insert(TrackingEvent),
            [
                {
                    "kind": hit.kind,
                    "message_id": hit.token.message_id,
                    "lead_id": hit.token.lead_id,
                    "workflow_id": hit.token.workflow_id,
                    "url": hit.token.url,
                    "user_agent": (hit.user_agent or "")[:1024] or None,
                    "ip": hit.ip,
                    "received_at": now,
                    "attempts": 0,
                    "signal_key": signal_key(hit.kind, hit.token.message_id, hit.token.url),
                    "machine": hit.machine,
                    "machine_reason": hit.machine_reason or None,
                    **_settled_at_once(hit, now),
                }
                for hit in kept
            ],
        )
        for column in ("opened_at", "clicked_at"):
            stamped = {
                hit.token.message_id for hit in kept if column in _MESSAGE_STAMPS.get(hit.kind, ())
            }
            if stamped:
                session.execute(
                    update(Message)
                    .where(col(Message.id).in_(stamped), col(getattr(Message, column)).is_(None))
                    .values({column: now})
                )
        for column in ("human_opened_at", "human_clicked_at", "unsubscribed_at"):
            stamped = {
                hit.token.message_id
                for hit in kept
                if column in _HUMAN_STAMPS.get(hit.kind, ()) and not hit.machine
            }
            if stamped:
                session.execute(
                    update(Message)
                    .where(col(Message.id).in_(stamped), col(getattr(Message, column)).is_(None))
                    .values({column: now})
                )
        active = {
            hit.token.lead_id for hit in kept if hit.kind in (OPENED, CLICKED, EMAIL_CONFIRMED)
        }
        if active:
            session.execute(
                update(Lead).where(col(Lead.id).in_(active)).values(last_activity_at=now)
            )
        for hit in kept:
            if hit.kind == UNSUBSCRIBED:
                _withdraw(session, hit, now, suppression_key)
        session.commit()


def _withdraw(session: Session, hit: Hit, now, suppression_key: str) -> None:
    """A one-click unsubscribe: a withdrawal in the consent ledger (once), on the consent channel
    of the message it came in (an email's: email; a webhook message's: webhook); the email
    address suppressed when that message was an email."""
    token = hit.token
    message = session.get(Message, token.message_id)
    via = channel(message.channel) if message is not None and message.channel in NAMES else EMAIL
    current = latest_consent(session, token.lead_id, via.consent)
    if current is None or current.status != "withdrawn":
        session.add(
            Consent(
                lead_id=token.lead_id,
                channel=via.consent,
                purpose="marketing",
                status="withdrawn",
                source_url=f"one-click unsubscribe, message {token.message_id}",
                ip=hit.ip,
                user_agent=(hit.user_agent or "")[:1024] or None,
                recorded_at=now,
            )
        )
        session.flush()
    lead = session.get(Lead, token.lead_id)
    if lead is not None and suppression_key and via.address == "email":
        suppress(session, suppression_key, lead.email, "unsubscribed")


def _confirm(session: Session, hit: Hit, now, suppression_key: str) -> bool:
    """A double opt-in confirmation: the pending email consent becomes granted, with the click's
    IP and user agent as proof. True when it did; a second click, or a click after the lead
    unsubscribed, changes nothing. An address suppressed by an earlier unsubscribe comes off the
    list now (the sign-up left it there until the lead confirmed)."""
    token = hit.token
    current = latest_consent(session, token.lead_id, "email")
    if current is None or current.status != PENDING:
        return False
    session.add(
        Consent(
            lead_id=token.lead_id,
            channel="email",
            purpose="marketing",
            status=GRANTED,
            source_url=f"double opt-in confirmation link, message {token.message_id}",
            ip=hit.ip,
            user_agent=(hit.user_agent or "")[:1024] or None,
            wording_version=current.wording_version,
            reason="confirmed",
            recorded_at=now,
        )
    )
    session.flush()
    lead = session.get(Lead, token.lead_id)
    if lead is not None and suppression_key:
        entry = suppression_of(session, suppression_key, lead.email)
        if entry is not None and entry.reason != "erased":
            session.delete(entry)
    return True


class HitRecorder:
    def __init__(
        self,
        engine: Engine,
        *,
        on_committed: Callable[[int], None],
        max_batch: int = 1000,
        suppression_key: str = "",
    ) -> None:
        self.engine = engine
        self.suppression_key = suppression_key
        self.on_committed = on_committed
        self.max_batch = max_batch
        self._waiting: list[
            tuple[Hit, asyncio.Future | None]
        ] = []  # None: nobody waits for that one
        self._wake = asyncio.Event()

    async def record(self, hit: Hit, *, wait: bool = True) -> None:
        """Return once the hit is committed (raises if the database refused it). With
        ``wait=False``, return at once: the hit goes into the next group commit, a few
        milliseconds later (unless ``max_batch`` hits are already waiting: then wait)."""
        wait = wait or len(self._waiting) >= self.max_batch
        done = asyncio.get_running_loop().create_future() if wait else None
        self._waiting.append((hit, done))
        self._wake.set()
        if done is not None:
            await done

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._write_waiting()

    async def flush(self) -> None:
        while self._waiting:
            await self._write_waiting()

    async def _write_waiting(self) -> None:
        batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
        if self._waiting:
            self._wake.set()
        if not batch:
            return
        try:
            await asyncio.to_thread(
                record_hits,
                self.engine,
                [hit for hit, _ in batch],
                suppression_key=self.suppression_key,
            )
        except Exception as err:
            log.exception("tracking: could not store %d hits", len(batch))
            for _, done in batch:
                if done is not None and not done.done():
                    done.set_exception(err)
            return
        for _, done in batch:
            if done is not None and not done.done():
                done.set_result(None)
        self.on_committed(len(batch))

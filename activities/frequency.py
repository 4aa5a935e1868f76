"""The frequency cap: at most N marketing messages per lead and channel over a rolling period,
across every journey (a contact in five to ten journeys at once would get too many messages).

Checked inside the send ledger's claim, in the same transaction that claims the message, after
locking the lead+channel row of ``frequency_locks`` (an UPDATE: a row lock on PostgreSQL, the
database write lock on SQLite). Two journeys sending to the same lead in the same second are
therefore counted one after the other: the second sees the first's claim.

A message that passes is stamped ``counted_at``; one over the cap is ``deferred`` (with
``deferred_until``, the moment the oldest counted message leaves the period) or ``skipped``, as
the journey asked, and the reason says so on the message row.

A lead who chose the weekly pace on the preference page (``leads.marketing_frequency``
``weekly``) has a cap of their own on top: at most one marketing message per channel per 7 days
(a digest's pace; the messages are not merged into one). The stricter of the two holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from relance.domain.models import FrequencyLock, Message, as_utc

COUNTED_STATUSES = ("sending", "sent")
WEEKLY = (1, 7.0)  # the lead's weekly pace: messages per days


@dataclass
class CapVerdict:
    status: str  # go | deferred | skipped
    reason: str = ""
    retry_at: datetime | None = None


@dataclass
class FrequencyCap:
    messages: int = 3  # 0: no cap
    days: float = 7.0

    def caps(self, weekly: bool) -> list[tuple[int, float, str]]:
        """The caps over a lead's marketing messages: (messages, days, whose)."""
        caps = [(self.messages, self.days, "")] if self.messages > 0 else []
        if weekly:
            caps.append((*WEEKLY, "the lead's weekly pace, "))
        return caps

    def check(
        self,
        session: Session,
        message: Message,
        *,
        over_cap: str,
        now: datetime,
        weekly: bool = False,
    ) -> CapVerdict:
        """``weekly``: the lead chose the weekly pace (``WEEKLY``), a cap over the global one."""
        return self.check_many(session, [(message, weekly)], over_cap=over_cap, now=now)[0]

    def check_many(
        self,
        session: Session,
        messages: list[tuple[Message, bool]],
        *,
        over_cap: str,
        now: datetime,
    ) -> list[CapVerdict]:
        """``check`` for the messages of a broadcast's wave (each with whether its lead chose
        the weekly pace), on one channel, to different leads: their lead+channel rows locked in
        one statement, their counted messages read in one query."""
        capped = [
            (message, caps)
            for message, weekly in messages
            if message.kind == "marketing" and (caps := self.caps(weekly))
        ]
        if capped:
            channel = capped[0][0].channel
            self._lock_many(session, sorted({m.lead_id for m, _ in capped}), channel)
            longest = timedelta(days=max(days for _, caps in capped for _, days, _ in caps))
            own = [m.id for m, _ in capped]
            counted: dict[str, list[datetime]] = {m.lead_id: [] for m, _ in capped}
            for lead_id, at in session.exec(
                select(Message.lead_id, Message.counted_at)
                .where(
                    col(Message.lead_id).in_(list(counted)),
                    Message.channel == channel,
                    Message.kind == "marketing",
                    col(Message.status).in_(COUNTED_STATUSES),
                    col(Message.counted_at) > now - longest,
                    col(Message.id).not_in(own),
                )
                .order_by(col(Message.counted_at))
            ).all():
                counted[lead_id].append(as_utc(at))
            verdicts = {
                id(m): self._verdict(m, counted[m.lead_id], caps, over_cap=over_cap, now=now)
                for m, caps in capped
            }
        else:
            verdicts = {}
        return [verdicts.get(id(m), CapVerdict("go")) for m, _ in messages]

    @staticmethod
    def _verdict(
        message: Message,
        counted: list[datetime],
        caps: list[tuple[int, float, str]],
        *,
        over_cap: str,
        now: datetime,
    ) -> CapVerdict:
        """The message against its lead's counted messages (oldest first)."""
        over = []  # (when the cap allows it again, what the cap is)
        for limit, days, whose in caps:
            period = timedelta(days=days)
            within = [t for t in counted if t > now - period]
            if len(within) >= limit:
                over.append(
                    (
                        within[len(within) - limit] + period,
                        f"{whose}{limit} {message.channel} messages per {days:g} days",
                    )
                )
        if not over or over_cap == "exempt":
            message.counted_at = now
            return CapVerdict("go")
        retry_at, which = max(over)
        cap = f"frequency cap: {which} reached"
        if over_cap == "defer":
            message.status, message.deferred_until = "deferred", retry_at
            message.reason = f"deferred ({cap}); allowed again at {retry_at:%Y-%m-%d %H:%M} UTC"
            return CapVerdict("deferred", message.reason, retry_at)
        message.status, message.reason = "skipped", f"skipped ({cap})"
        return CapVerdict("skipped", message.reason)

    @staticmethod
    def _lock_many(session: Session, lead_ids: list[str], channel: str) -> None:
        """Serialise the leads' sends on the channel until this transaction ends: their
        lead+channel rows bumped in one statement (made first where missing)."""
        # PostgreSQL locks the rows in the leads' order (two waves to overlapping audiences wait
        # for each other rather than deadlock); SQLite's one writer serialises them anyway.
        in_order = (
            select(FrequencyLock.lead_id)
            .where(col(FrequencyLock.lead_id).in_(lead_ids), FrequencyLock.channel == channel)
            .order_by(col(FrequencyLock.lead_id))
            .with_for_update()
        )
        bump = (
            update(FrequencyLock)
            .where(
                col(FrequencyLock.channel) == channel,
                col(FrequencyLock.lead_id).in_(in_order.scalar_subquery()),
            )
            .values(version=col(FrequencyLock.version) + 1)
            .returning(FrequencyLock.lead_id)
        )
        locked = set(session.execute(bump).scalars())
        if len(locked) == len(lead_ids):
            return
        # The rest are locked below, whether their row is made here or was made meanwhile. A row
        # another send made and committed after the bump began is not seen by the bump, yet is
        # by the next read: taking it as locked let two sends count the same messages, and the
        # lead got one more than the cap.
        unlocked = [lead_id for lead_id in lead_ids if lead_id not in locked]
        have = set(
            session.exec(
                select(FrequencyLock.lead_id).where(
                    col(FrequencyLock.lead_id).in_(unlocked), FrequencyLock.channel == channel
                )
            )
        )
        missing = [lead_id for lead_id in unlocked if lead_id not in have]
        if missing:
            try:
                with session.begin_nested():
                    session.add_all(
                        FrequencyLock(lead_id=lead_id, channel=channel, version=0)
                        for lead_id in missing
                    )
            except IntegrityError:  # some made concurrently: one at a time, as a single send does
                for lead_id in missing:
                    try:
                        with session.begin_nested():
                            session.add(FrequencyLock(lead_id=lead_id, channel=channel, version=0))
                    except IntegrityError:
                        pass
        in_order = in_order.where(col(FrequencyLock.lead_id).in_(unlocked))
        session.execute(
            update(FrequencyLock)
            .where(
                col(FrequencyLock.channel) == channel,
                col(FrequencyLock.lead_id).in_(in_order.scalar_subquery()),
            )
            .values(version=col(FrequencyLock.version) + 1)
        )

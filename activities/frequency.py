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
        caps = [(self.messages, self.days, "")] if self.messages > 0 else []
        if weekly:
            caps.append((*WEEKLY, "the lead's weekly pace, "))
        if message.kind != "marketing" or not caps:
            return CapVerdict("go")
        self._lock(session, message.lead_id, message.channel)
        longest = timedelta(days=max(days for _, days, _ in caps))
        counted = [
            as_utc(t)
            for t in session.exec(
                select(Message.counted_at)
                .where(
                    Message.lead_id == message.lead_id,
                    Message.channel == message.channel,
                    Message.kind == "marketing",
                    col(Message.status).in_(COUNTED_STATUSES),
                    col(Message.counted_at) > now - longest,
                    Message.id != message.id,
                )
                .order_by(col(Message.counted_at))
            ).all()
        ]
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
    def _lock(session: Session, lead_id: str, channel: str) -> None:
        """Serialise the lead+channel's sends until this transaction ends."""
        bump = (
            update(FrequencyLock)
            .where(col(FrequencyLock.lead_id) == lead_id, col(FrequencyLock.channel) == channel)
            .values(version=col(FrequencyLock.version) + 1)
        )
        if session.execute(bump).rowcount:
            return
        try:
            with session.begin_nested():
                session.add(FrequencyLock(lead_id=lead_id, channel=channel, version=0))
        except IntegrityError:  # created concurrently: lock the row the other made
            pass
        session.execute(bump)

"""Record a tracking hit: the outbox row, the message's first open/click, the lead's activity.

One short transaction; the signal to the journey is sent later by ``relance.outbox``.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from relance.models import Lead, Message, TrackingEvent, utcnow
from relance.tokens import TrackingToken

_MESSAGE_STAMP = {"opened": "opened_at", "clicked": "clicked_at"}


def record_hit(engine: Engine, token: TrackingToken, *, kind: str, user_agent: str | None, ip: str | None) -> None:
    now = utcnow()
    with Session(engine) as session:
        session.add(TrackingEvent(
            kind=kind, message_id=token.message_id, lead_id=token.lead_id, workflow_id=token.workflow_id,
            url=token.url, user_agent=(user_agent or "")[:1024] or None, ip=ip, received_at=now,
        ))
        stamp = _MESSAGE_STAMP[kind]
        stamps = {stamp: now} if kind == "opened" else {stamp: now, "opened_at": now}
        for column, value in stamps.items():
            session.execute(update(Message).where(col(Message.id) == token.message_id,
                                                  col(getattr(Message, column)).is_(None)).values({column: value}))
        session.execute(update(Lead).where(col(Lead.id) == token.lead_id).values(last_activity_at=now))
        session.commit()

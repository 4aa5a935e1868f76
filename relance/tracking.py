"""Record what a lead does through a signed link: the outbox row, plus its lasting effect.

An open or click stamps the message's first open/click and the lead's last activity; an
unsubscribe appends a withdrawal to the consent ledger. One short transaction each; the
signal to the journey is sent afterwards by ``relance.outbox``.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from relance.consent import latest_consent
from relance.models import Consent, Lead, Message, TrackingEvent, utcnow
from relance.tokens import TrackingToken
from workflows.signals import CLICKED, OPENED, UNSUBSCRIBED
_MESSAGE_STAMPS = {OPENED: ("opened_at",), CLICKED: ("clicked_at", "opened_at")}


def record_hit(engine: Engine, token: TrackingToken, *, kind: str, user_agent: str | None, ip: str | None) -> None:
    now = utcnow()
    user_agent = (user_agent or "")[:1024] or None
    with Session(engine) as session:
        session.add(TrackingEvent(
            kind=kind, message_id=token.message_id, lead_id=token.lead_id, workflow_id=token.workflow_id,
            url=token.url, user_agent=user_agent, ip=ip, received_at=now,
        ))
        for column in _MESSAGE_STAMPS.get(kind, ()):
            session.execute(update(Message).where(col(Message.id) == token.message_id,
                                                  col(getattr(Message, column)).is_(None)).values({column: now}))
        if kind in (OPENED, CLICKED):
            session.execute(update(Lead).where(col(Lead.id) == token.lead_id).values(last_activity_at=now))
        if kind == UNSUBSCRIBED:
            current = latest_consent(session, token.lead_id, "email")
            if current is None or current.status != "withdrawn":
                session.add(Consent(lead_id=token.lead_id, channel="email", purpose="marketing", status="withdrawn",
                                    source_url=f"one-click unsubscribe, message {token.message_id}",
                                    ip=ip, user_agent=user_agent, recorded_at=now))
        session.commit()

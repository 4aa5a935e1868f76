"""Consent, derived from the append-only ledger (``consents`` table).

A lead may be contacted for a purpose on a channel when the latest ledger row for that
channel and purpose says ``granted``. No row means no consent. ``pending`` (double opt-in: the
lead has not clicked the confirmation link yet) is not consent either.

Topics (relance/domain/topics.py) are in the same ledger, with the same evidence: a lead's
choice for a topic is a row with channel ``all`` (a topic holds on every channel) and purpose
``topic:<key>``, ``granted`` (on) or ``withdrawn`` (off). Without a row the topic's default from
the topics file holds. A marketing message needs both: the channel's marketing consent and its
topic on (``marketing_gate`` reads the two in one query).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from relance.domain.models import Consent, utcnow
from relance.domain.topics import Topics

GRANTED, WITHDRAWN, PENDING = "granted", "withdrawn", "pending"
TOPIC_CHANNEL = "all"  # the consent ledger's channel for topic choices: every channel
TOPIC_PREFIX = "topic:"


def topic_purpose(key: str) -> str:
    """The consent ledger's purpose for a topic's choice."""
    return f"{TOPIC_PREFIX}{key}"


def latest_consent(
    session: Session, lead_id: str, channel: str, purpose: str = "marketing"
) -> Consent | None:
    return session.exec(
        select(Consent)
        .where(Consent.lead_id == lead_id, Consent.channel == channel, Consent.purpose == purpose)
        .order_by(col(Consent.id).desc())
        .limit(1)
    ).first()


def has_consent(session: Session, lead_id: str, channel: str, purpose: str = "marketing") -> bool:
    row = latest_consent(session, lead_id, channel, purpose)
    return row is not None and row.status == "granted"


def current_consents(
    session: Session, lead_id: str, channels: Sequence[str], purpose: str = "marketing"
) -> dict[str, str]:
    """The current state per channel (``none`` without a row), from one read of the ledger.
    ``channels``: the consent channels (relance/contracts/channels.py ``CONSENT_CHANNELS``)."""
    current = dict.fromkeys(channels, "none")
    seen: set[str] = set()
    for channel, status in session.exec(
        select(Consent.channel, Consent.status)
        .where(
            Consent.lead_id == lead_id,
            Consent.purpose == purpose,
            col(Consent.channel).in_(channels),
        )
        .order_by(col(Consent.id).desc())
    ):
        if channel not in seen:
            seen.add(channel)
            current[channel] = status
    return current


def topic_consents(session: Session, lead_id: str, topics: Topics) -> dict[str, bool]:
    """Each declared topic: on or off for the lead (its latest choice, else the topic's
    default), from one read of the ledger."""
    chosen = _latest(
        session,
        select(Consent.purpose, Consent.status).where(
            Consent.lead_id == lead_id,
            Consent.channel == TOPIC_CHANNEL,
            col(Consent.purpose).in_([topic_purpose(k) for k in topics.keys]),
        ),
    )
    return {
        t.key: chosen[topic_purpose(t.key)] == GRANTED
        if topic_purpose(t.key) in chosen
        else t.default
        for t in topics.topics
    }


def marketing_gate(
    session: Session, lead_id: str, channel: str, topic: str | None
) -> tuple[str, str | None]:
    """For a marketing send: the channel's marketing consent (``none`` without a row) and the
    lead's latest choice for the topic (None: never chosen, the default holds), in one read."""
    return marketing_gates(session, [lead_id], channel, topic)[lead_id]


def marketing_gates(
    session: Session, lead_ids: Sequence[str], channel: str, topic: str | None
) -> dict[str, tuple[str, str | None]]:
    """``marketing_gate`` for many leads in one read (a broadcast's wave): lead id -> (the
    channel's marketing consent, the lead's latest choice for the topic)."""
    wanted = Consent.channel == channel
    wanted = wanted & (Consent.purpose == "marketing")
    if topic:
        chosen = (Consent.channel == TOPIC_CHANNEL) & (Consent.purpose == topic_purpose(topic))
        wanted = wanted | chosen
    latest: dict[str, dict[str, str]] = {lead_id: {} for lead_id in lead_ids}
    query = select(Consent.lead_id, Consent.purpose, Consent.status).where(
        col(Consent.lead_id).in_(list(lead_ids)), wanted
    )
    for lead_id, purpose, status in session.exec(query.order_by(col(Consent.id).desc())):
        latest[lead_id].setdefault(purpose, status)
    return {
        lead_id: (
            found.get("marketing", "none"),
            found.get(topic_purpose(topic)) if topic else None,
        )
        for lead_id, found in latest.items()
    }


def _latest(session: Session, query) -> dict[str, str]:
    """The first status per purpose of ``query`` (purpose, status), newest row first."""
    latest: dict[str, str] = {}
    for purpose, status in session.exec(query.order_by(col(Consent.id).desc())):
        latest.setdefault(purpose, status)
    return latest


def choose_topics(
    session: Session,
    lead_id: str,
    topics: Topics,
    choices: dict[str, bool],
    *,
    source: str,
    ip: str | None = None,
    user_agent: str | None = None,
) -> dict[str, bool]:
    """Record the lead's choice for each topic in ``choices`` (declared keys only) with its
    evidence: a row when the choice differs from the lead's latest one, or when the lead never
    chose (the default becomes their own choice). Returns what changed (key: on)."""
    latest = _latest(
        session,
        select(Consent.purpose, Consent.status).where(
            Consent.lead_id == lead_id, Consent.channel == TOPIC_CHANNEL
        ),
    )
    now, changed = utcnow(), {}
    for key, on in choices.items():
        if topics.get(key) is None:
            raise KeyError(key)
        status = GRANTED if on else WITHDRAWN
        if latest.get(topic_purpose(key)) == status:
            continue
        session.add(
            Consent(
                lead_id=lead_id,
                channel=TOPIC_CHANNEL,
                purpose=topic_purpose(key),
                status=status,
                source_url=source[:2048],
                ip=ip,
                user_agent=(user_agent or "")[:1024] or None,
                recorded_at=now,
            )
        )
        changed[key] = on
    return changed

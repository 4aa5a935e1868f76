"""Consent, derived from the append-only ledger (``consents`` table).

A lead may be contacted for a purpose on a channel when the latest ledger row for that
channel and purpose says ``granted``. No row means no consent. ``pending`` (double opt-in: the
lead has not clicked the confirmation link yet) is not consent either.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from relance.domain.models import Consent

GRANTED, WITHDRAWN, PENDING = "granted", "withdrawn", "pending"


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

"""The suppression list: addresses that must not be signed up or contacted again, as keyed hashes.

An erased lead leaves only ``HMAC-SHA256(secret key, normalised email)`` here, so nothing
readable remains but the same address is recognised when it comes back (a re-import, a form).
The key is ``RELANCE_SECRET_KEY``: rotating it makes the existing entries unrecognisable.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from sqlmodel import Session, col, select

from relance.domain.models import SuppressionEntry, utcnow


def normalize_email(email: str) -> str:
    """The deduplication key: trimmed and lower-cased."""
    return email.strip().lower()


def email_hash(secret_key: str, email: str) -> str:
    if not secret_key:
        raise ValueError("RELANCE_SECRET_KEY is empty: the suppression list cannot hash addresses")
    return hmac.new(
        secret_key.encode(), normalize_email(email).encode(), hashlib.sha256
    ).hexdigest()


def suppression_of(session: Session, secret_key: str, email: str) -> SuppressionEntry | None:
    return session.get(SuppressionEntry, email_hash(secret_key, email))


def suppressions_of(
    session: Session, secret_key: str, emails: Iterable[str]
) -> dict[str, SuppressionEntry]:
    """The suppressed ones among many addresses, in one read: address -> its entry."""
    hashes = {email_hash(secret_key, email): email for email in emails}
    if not hashes:
        return {}
    entries = session.exec(
        select(SuppressionEntry).where(col(SuppressionEntry.email_hash).in_(list(hashes)))
    )
    return {hashes[entry.email_hash]: entry for entry in entries}


def suppress(session: Session, secret_key: str, email: str, reason: str) -> SuppressionEntry:
    """Add the address (idempotent; an erasure outranks an unsubscribe). Does not commit."""
    key = email_hash(secret_key, email)
    entry = session.get(SuppressionEntry, key)
    if entry is None:
        entry = SuppressionEntry(email_hash=key, reason=reason, created_at=utcnow())
    elif reason == "erased":
        entry.reason = reason
    session.add(entry)
    return entry

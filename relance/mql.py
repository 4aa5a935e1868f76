"""Tell sales when a lead becomes marketing-qualified: once per crossing of the MQL threshold.

``queue_notification`` writes a ``mql_notifications`` row in the transaction that raised the
score (relance/scoring.py ``apply_score``), so a crossing is never lost nor told twice.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from relance.models import MqlNotification


def queue_notification(session: Session, *, lead_id: str, score: int, threshold: int, reason: str,
                       now: datetime) -> MqlNotification:
    row = MqlNotification(lead_id=lead_id, score=score, threshold=threshold, reason=reason[:500], created_at=now,
                          next_attempt_at=now)
    session.add(row)
    return row

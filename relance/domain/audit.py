"""The audit log: who read, exported or erased which lead's data, and when (``audit_log``)."""

from __future__ import annotations

import hashlib

from sqlmodel import Session

from relance.domain.models import AuditEntry, utcnow

READ, MESSAGES, CONSENTS, EXPORT, ERASE = (
    "lead.read",
    "lead.messages",
    "lead.consents",
    "lead.export",
    "lead.erase",
)
LIST = "lead.list"  # the lead was in a page of GET /leads
TIMELINE = "lead.timeline"  # GET /leads/{id}/timeline


def key_fingerprint(api_key: str) -> str:
    """How the log names an API key: never the key, the first 16 hex digits of its SHA-256."""
    return "api-key:" + hashlib.sha256(api_key.encode()).hexdigest()[:16]


def record(
    session: Session, *, actor: str, action: str, lead_id: str, detail: dict | None = None
) -> AuditEntry:
    """Add an entry (the caller commits, with the work it records)."""
    entry = AuditEntry(
        at=utcnow(), actor=actor[:128], action=action, lead_id=lead_id, detail=detail or {}
    )
    session.add(entry)
    return entry

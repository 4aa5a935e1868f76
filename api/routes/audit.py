"""The audit log (API key): who read, exported or erased which lead's data, and when."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from api import privacy
from api.deps import SessionDep, require_api_key
from api.schemas import AuditEntryPublic

router = APIRouter(prefix="/audit", tags=["audit"], dependencies=[Depends(require_api_key)])


@router.get("", response_model=list[AuditEntryPublic])
def read_audit_log(
    session: SessionDep,
    lead_id: str | None = Query(default=None, max_length=64),
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[AuditEntryPublic]:
    """Newest first; ``lead_id`` narrows it to one lead (kept after the lead's erasure)."""
    return privacy.audit_entries(session=session, lead_id=lead_id, limit=limit)

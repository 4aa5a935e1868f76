"""List membership writes, shared by the API (``/lists``), the import and the journeys' activity."""

from __future__ import annotations

from sqlalchemy import delete
from sqlmodel import Session, col, select

from relance.domain.models import ListMember, utcnow

LIST_NAME = r"^[a-z0-9][a-z0-9_.\-]{0,63}$"


def add_member(session: Session, *, list_name: str, lead_id: str, reason: str) -> bool:
    """Put the lead on the list (no commit). False: it was on it already (its reason is kept)."""
    existing = session.exec(
        select(ListMember.id).where(
            ListMember.list_name == list_name, ListMember.lead_id == lead_id
        )
    ).first()
    if existing is not None:
        return False
    session.add(
        ListMember(list_name=list_name, lead_id=lead_id, reason=reason[:300], added_at=utcnow())
    )
    return True


def remove_member(session: Session, *, list_name: str, lead_id: str) -> bool:
    """Take the lead off the list (no commit). False: it was not on it."""
    result = session.execute(
        delete(ListMember).where(
            col(ListMember.list_name) == list_name, col(ListMember.lead_id) == lead_id
        )
    )
    return bool(result.rowcount)

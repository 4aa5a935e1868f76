"""Lists are data: who is on which list ("loyal-customers", ...), and why."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, status
from sqlmodel import col, func, select

from api.deps import SessionDep, require_api_key
from api.schemas import ListMemberPublic, ListPublic
from relance.models import Lead, ListMember, as_utc

router = APIRouter(prefix="/lists", tags=["lists"], dependencies=[Depends(require_api_key)])


@router.get("", response_model=list[ListPublic])
def read_lists(session: SessionDep) -> list[ListPublic]:
    rows = session.exec(select(ListMember.list_name, func.count()).group_by(ListMember.list_name)
                        .order_by(ListMember.list_name)).all()
    return [ListPublic(name=name, members=count) for name, count in rows]


@router.get("/{name}/members", response_model=list[ListMemberPublic])
def read_list_members(name: str, session: SessionDep) -> list[ListMemberPublic]:
    rows = session.exec(select(ListMember, Lead.email).join(Lead, col(Lead.id) == col(ListMember.lead_id))
                        .where(ListMember.list_name == name).order_by(col(ListMember.added_at))).all()
    if not rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no list named {name!r} (a list exists once it has members)")
    return [ListMemberPublic(lead_id=m.lead_id, email=email, reason=m.reason, added_at=as_utc(m.added_at))
            for m, email in rows]

"""Lists are data: who is on which list ("loyal-customers", ...), and why.

    GET    /lists                          the lists and how many members each
    GET    /lists/{name}/members           the members, oldest first
    POST   /lists/{name}/members           {"lead_ids": [...], "reason": "..."}: all or nothing
    DELETE /lists/{name}/members/{lead_id}

Journeys use the ``change_list_membership`` activity (activities/lists.py). A list exists
while it has members.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Path, Response, status
from sqlmodel import Session, col, func, select
from temporalio.service import RPCError

from api.deps import DatabaseDep, SessionDep, SettingsDep, TemporalDep, require_api_key
from api.schemas import ListMemberPublic, ListMembersAdd, ListMembersAdded, ListPublic
from relance.domain.db import retry_on_conflict
from relance.domain.lists import LIST_NAME, add_member, remove_member
from relance.domain.models import Lead, ListMember, as_utc
from relance.services.triggers import LIST, on_list_joined, reevaluate_segments

router = APIRouter(prefix="/lists", tags=["lists"], dependencies=[Depends(require_api_key)])

ListName = Annotated[str, Path(pattern=LIST_NAME, description="a-z, 0-9, _ . - (64 at most)")]


@router.get("", response_model=list[ListPublic])
def read_lists(session: SessionDep) -> list[ListPublic]:
    rows = session.exec(
        select(ListMember.list_name, func.count())
        .group_by(ListMember.list_name)
        .order_by(ListMember.list_name)
    ).all()
    return [ListPublic(name=name, members=count) for name, count in rows]


@router.get(
    "/{name}/members",
    response_model=list[ListMemberPublic],
    responses={404: {"description": "No list by this name (a list exists once it has members)"}},
)
def read_list_members(name: str, session: SessionDep) -> list[ListMemberPublic]:
    rows = session.exec(
        select(ListMember, Lead.email)
        .join(Lead, col(Lead.id) == col(ListMember.lead_id))
        .where(ListMember.list_name == name)
        .order_by(col(ListMember.added_at))
    ).all()
    if not rows:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no list named {name!r} (a list exists once it has members)"
        )
    return [
        ListMemberPublic(
            lead_id=m.lead_id, email=email, reason=m.reason, added_at=as_utc(m.added_at)
        )
        for m, email in rows
    ]


# the same lead added by two requests at once: the second finds it there ("already")
@retry_on_conflict
def add_members(
    *, session: Session, name: str, body: ListMembersAdd
) -> tuple[ListMembersAdded, list[str]]:
    """(the answer, the leads newly on the list)."""
    lead_ids = list(dict.fromkeys(body.lead_ids))
    known = set(session.exec(select(Lead.id).where(col(Lead.id).in_(lead_ids))).all())
    unknown = [lead_id for lead_id in lead_ids if lead_id not in known]
    if unknown:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"no lead with id {', '.join(unknown[:10])}"
            f"{' ...' if len(unknown) > 10 else ''}; nobody was added",
        )
    added = [
        lead_id
        for lead_id in lead_ids
        if add_member(session, list_name=name, lead_id=lead_id, reason=body.reason)
    ]
    session.commit()
    return ListMembersAdded(list=name, added=len(added), already=len(lead_ids) - len(added)), added


@router.post(
    "/{name}/members",
    response_model=ListMembersAdded,
    responses={
        404: {"description": "A lead id is unknown: nobody was added"},
        503: {"description": "Added, but the journeys it triggers could not all be started"},
    },
)
async def post_list_members(
    name: ListName,
    body: ListMembersAdd,
    db: DatabaseDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    background: BackgroundTasks,
) -> ListMembersAdded:
    """Put leads on the list (created with its first member). Leads already on it are counted
    in ``already`` and keep their first reason. The leads new on it enter the defined journeys
    a ``list_joined`` trigger of this list starts."""
    answer, added = await db.run(add_members, name=name, body=body)
    background.add_task(
        reevaluate_segments, temporal, settings, db.engine, lead_ids=added, facts=(LIST,)
    )
    try:
        await on_list_joined(temporal, settings, db.engine, lead_ids=added, list_name=name)
    except RPCError as err:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the leads are on the list but the journey engine (Temporal) is unreachable: "
            "the journeys it triggers were not all started",
        ) from err
    return answer


def delete_member(*, session: Session, name: str, lead_id: str) -> None:
    if not remove_member(session, list_name=name, lead_id=lead_id):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"lead {lead_id} is not on the list {name!r}"
        )
    session.commit()


@router.delete(
    "/{name}/members/{lead_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "The lead is not on the list"}},
)
async def delete_list_member(
    name: ListName,
    lead_id: str,
    db: DatabaseDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    background: BackgroundTasks,
) -> Response:
    await db.run(delete_member, name=name, lead_id=lead_id)
    background.add_task(
        reevaluate_segments, temporal, settings, db.engine, lead_ids=[lead_id], facts=(LIST,)
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)

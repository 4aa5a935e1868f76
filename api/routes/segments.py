"""Rule segments: saved rule trees over the leads (relance/domain/conditions.py), counted,
listed and exported on demand, never stored as members.

    POST   /segments                 {name, rules}: saved once the rules are checked (422 names
                                     the faulty rule by its path in the tree)
    GET    /segments                 every segment
    GET    /segments/{id}            one
    PUT    /segments/{id}            {name, rules}: replaced
    DELETE /segments/{id}            refused (409) while another segment refers to it
    GET    /segments/{id}/count      how many leads are in it now
    GET    /segments/{id}/members    a page of members, in id order (?limit=&after=<lead id>)
    GET    /segments/{id}/export     every member as CSV, streamed
    POST   /segments/preview         {rules}: the count and a first page, nothing saved

Set operations are rules: ``any`` (union), ``all`` (intersection) and ``not`` (exclusion) over
``in_segment`` and ``in_list``. A segment referring to itself through others is refused.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from api.deps import SessionDep, SettingsDep, require_api_key
from api.errors import validation_response
from relance.domain.conditions import Test
from relance.domain.models import Segment, as_utc, utcnow
from relance.domain.segment_query import (
    Compiler,
    RuleError,
    count,
    member_rows,
    referring_segments,
    stored_segments,
)
from relance.domain.settings import Settings

router = APIRouter(prefix="/segments", tags=["segments"], dependencies=[Depends(require_api_key)])

EXPORT_PAGE = 1000
RULES_422 = validation_response(
    "The rules cannot be read: each entry's `loc` names the faulty rule by its path in the tree "
    '(`["body", "rules", "all", 1, "attribute"]`) and its `msg` what is wrong (an unknown '
    "attribute or event, an operator that does not apply to the attribute's type, a value of the "
    "wrong type, a segment that does not exist or a cycle of segments)"
)
NOT_FOUND = {"description": "No segment with this id"}


class SegmentIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    rules: Test = Field(description="the rule tree (see the module relance/domain/conditions.py)")


class RulesIn(BaseModel):
    rules: Test


class SegmentPublic(BaseModel):
    id: str
    name: str
    rules: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class SegmentCount(BaseModel):
    segment: str
    count: int


class Member(BaseModel):
    id: str
    email: str
    first_name: str | None
    country: str | None
    score: int
    segment: str  # hot | warm | cold
    stage: str


class MembersPage(BaseModel):
    members: list[Member]
    next: str | None = Field(description="the cursor of the next page (`after=`), none at the end")


class Preview(MembersPage):
    count: int


def _public(row: Segment) -> SegmentPublic:
    return SegmentPublic(
        id=row.id,
        name=row.name,
        rules=row.rules,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


def _loc(path: str) -> list[str | int]:
    """``all[1].not.attribute`` -> ["all", 1, "not", "attribute"] (as pydantic locates)."""
    out: list[str | int] = []
    for part in filter(None, path.split(".")):
        name, _, index = part.partition("[")
        out.append(name)
        if index:
            out.append(int(index.rstrip("]")))
    return out


def _checked(session: Session, settings: Settings, rules: Test, own_id: str | None = None) -> None:
    try:
        Compiler(settings, resolve=stored_segments(session)).check(rules, own_id=own_id)
    except RuleError as err:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [
                {"loc": ["body", "rules", *_loc(p.path)], "msg": str(p), "type": "value_error"}
                for p in err.problems[:20]
            ],
        ) from None


def _stored(rules: Test) -> dict[str, Any]:
    return rules.model_dump(mode="json", by_alias=True, exclude_none=True)


def _get(session: Session, segment_id: str) -> Segment:
    row = session.get(Segment, segment_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no segment with id {segment_id}")
    return row


def _page(session: Session, settings: Settings, rules: Test, limit: int, after: str | None):
    rows = member_rows(session, rules, settings, limit=limit, after=after)
    members = [
        Member(
            id=lead.id,
            email=lead.email,
            first_name=lead.first_name,
            country=lead.country,
            score=lead.score,
            segment=segment,
            stage=stage,
        )
        for lead, segment, stage in rows
    ]
    return members, (members[-1].id if len(members) == limit else None)


@router.post(
    "",
    response_model=SegmentPublic,
    status_code=status.HTTP_201_CREATED,
    responses={422: RULES_422},
)
def create_segment(body: SegmentIn, session: SessionDep, settings: SettingsDep) -> SegmentPublic:
    """Save a segment: its rules are checked against the lead schema and the saved segments."""
    _checked(session, settings, body.rules)
    row = Segment(name=body.name, rules=_stored(body.rules))
    session.add(row)
    session.commit()
    return _public(row)


@router.get("", response_model=list[SegmentPublic])
def read_segments(session: SessionDep) -> list[SegmentPublic]:
    rows = session.exec(select(Segment).order_by(col(Segment.name), col(Segment.id))).all()
    return [_public(row) for row in rows]


@router.post("/preview", response_model=Preview, responses={422: RULES_422})
def preview_segment(
    body: RulesIn,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Preview:
    """What the rules select now, without saving them: the count and the first page."""
    _checked(session, settings, body.rules)
    members, after = _page(session, settings, body.rules, limit, None)
    return Preview(count=count(session, body.rules, settings), members=members, next=after)


@router.get("/{segment_id}", response_model=SegmentPublic, responses={404: NOT_FOUND})
def read_segment(segment_id: str, session: SessionDep) -> SegmentPublic:
    return _public(_get(session, segment_id))


@router.put(
    "/{segment_id}", response_model=SegmentPublic, responses={404: NOT_FOUND, 422: RULES_422}
)
def replace_segment(
    segment_id: str, body: SegmentIn, session: SessionDep, settings: SettingsDep
) -> SegmentPublic:
    """Replace the name and rules (refused if the new rules lead back to this segment)."""
    row = _get(session, segment_id)
    _checked(session, settings, body.rules, own_id=segment_id)
    row.name, row.rules, row.updated_at = body.name, _stored(body.rules), utcnow()
    session.add(row)
    session.commit()
    return _public(row)


@router.delete(
    "/{segment_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        404: NOT_FOUND,
        409: {"description": "Another segment refers to this one (in_segment): change it first"},
    },
)
def delete_segment(segment_id: str, session: SessionDep) -> Response:
    row = _get(session, segment_id)
    referring = referring_segments(session, segment_id)
    if referring:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"segment {segment_id} is used by {', '.join(sorted(referring))}: "
            "change or delete those first; nothing was deleted",
        )
    session.delete(row)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _rules(session: Session, segment_id: str) -> Test:
    return Test.model_validate(_get(session, segment_id).rules)


@router.get("/{segment_id}/count", response_model=SegmentCount, responses={404: NOT_FOUND})
def count_segment(segment_id: str, session: SessionDep, settings: SettingsDep) -> SegmentCount:
    """How many leads are in the segment now."""
    return SegmentCount(
        segment=segment_id, count=count(session, _rules(session, segment_id), settings)
    )


@router.get("/{segment_id}/members", response_model=MembersPage, responses={404: NOT_FOUND})
def read_segment_members(
    segment_id: str,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[
        str | None, Query(max_length=32, description="the `next` of the previous page")
    ] = None,
) -> MembersPage:
    """A page of the segment's members, in lead id order: a member joining or leaving between
    pages never shifts the others."""
    members, cursor = _page(session, settings, _rules(session, segment_id), limit, after)
    return MembersPage(members=members, next=cursor)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """A cell a spreadsheet shows as text, never runs: lead data starting like a formula
    (``=HYPERLINK(...)``, ``+1``, ``@SUM``) is prefixed with a quote. Numbers stay numbers."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _csv(rows: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
    return out.getvalue()


@router.get(
    "/{segment_id}/export",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "Every member, one row each"},
        404: NOT_FOUND,
    },
)
def export_segment(
    segment_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> StreamingResponse:
    """Every member as CSV (id, email, first name, country, score, segment, stage, then each
    custom attribute), streamed a page at a time. Cells are neutralised against formula
    injection: lead data is shown, never run."""
    rules = _rules(session, segment_id)
    attributes = sorted(settings.lead_schema().attributes)
    engine = request.app.state.engine
    header = ["id", "email", "first_name", "country", "score", "segment", "stage", *attributes]

    def lines() -> Iterator[str]:
        yield _csv([header])
        after: str | None = None
        with Session(engine) as export_session:
            while True:
                rows = member_rows(export_session, rules, settings, limit=EXPORT_PAGE, after=after)
                yield _csv(
                    [
                        [
                            lead.id,
                            lead.email,
                            lead.first_name,
                            lead.country,
                            lead.score,
                            segment,
                            stage,
                            *((lead.attributes or {}).get(a) for a in attributes),
                        ]
                        for lead, segment, stage in rows
                    ]
                )
                if len(rows) < EXPORT_PAGE:
                    return
                after = rows[-1][0].id

    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="segment-{segment_id}.csv"'},
    )

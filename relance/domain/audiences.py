"""Who a broadcast goes to: one function from the audience a caller names (a list, a saved
segment) to the query of its lead ids, for the API's checks and for freezing the audience at
start. A segment is its rules as of now (relance/domain/segment_query.py): the broadcast freezes
who is in it when it starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, func, select
from sqlmodel import Session, col

from relance.domain.conditions import Test
from relance.domain.models import Lead, ListMember, Segment
from relance.domain.segment_query import Compiler, stored_segments
from relance.domain.settings import Settings, get_settings

KINDS = ("list", "segment")


class AudienceError(ValueError):
    """The audience cannot be resolved: the message names why (the API answers 422)."""


@dataclass(frozen=True)
class Audience:
    kind: str  # list | segment
    id: str  # the list's name, the segment's id


def lead_ids(session: Session, audience: Audience, settings: Settings | None = None) -> Select:
    """The audience's lead ids, one row each (column ``lead_id``), in no particular order.
    ``settings``: a segment's thresholds (hot / warm / cold) and lead schema, the process's by
    default."""
    if audience.kind == "list":
        return select(col(ListMember.lead_id).label("lead_id")).where(
            ListMember.list_name == audience.id
        )
    if audience.kind == "segment":
        segment = session.get(Segment, audience.id)
        if segment is None:
            raise AudienceError(f"there is no segment {audience.id!r}")
        compiler = Compiler(settings or get_settings(), resolve=stored_segments(session))
        return select(col(Lead.id).label("lead_id")).where(
            compiler.where(Test.model_validate(segment.rules))
        )
    raise AudienceError(f"an audience is a list or a segment, not {audience.kind!r}")


def audience_size(session: Session, audience: Audience, settings: Settings | None = None) -> int:
    """How many leads the audience holds now; raises AudienceError when it holds none."""
    size = session.execute(
        select(func.count()).select_from(lead_ids(session, audience, settings).subquery())
    ).scalar_one()
    if not size:
        if audience.kind == "list":
            raise AudienceError(
                f"the list {audience.id!r} has no members (a list exists once it has members): "
                "the audience is empty"
            )
        raise AudienceError(f"the {audience.kind} {audience.id!r} is empty")
    return int(size)

"""Who a broadcast goes to: one function from the audience a caller names (a list, a segment)
to the query of its lead ids, for the API's checks and for freezing the audience at start.

Segments plug in here: until they exist, naming one is refused with ``AudienceError``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, func, select
from sqlmodel import Session, col

from relance.domain.models import ListMember

KINDS = ("list", "segment")


class AudienceError(ValueError):
    """The audience cannot be resolved: the message names why (the API answers 422)."""


@dataclass(frozen=True)
class Audience:
    kind: str  # list | segment
    id: str  # the list's name, the segment's id


def lead_ids(audience: Audience) -> Select:
    """The audience's lead ids, one row each (column ``lead_id``), in no particular order."""
    if audience.kind == "list":
        return select(col(ListMember.lead_id).label("lead_id")).where(
            ListMember.list_name == audience.id
        )
    if audience.kind == "segment":
        raise AudienceError("segments are not available yet: send to a list")
    raise AudienceError(f"an audience is a list or a segment, not {audience.kind!r}")


def audience_size(session: Session, audience: Audience) -> int:
    """How many leads the audience holds now; raises AudienceError when it holds none."""
    size = session.execute(
        select(func.count()).select_from(lead_ids(audience).subquery())
    ).scalar_one()
    if not size:
        if audience.kind == "list":
            raise AudienceError(
                f"the list {audience.id!r} has no members (a list exists once it has members): "
                "the audience is empty"
            )
        raise AudienceError(f"the {audience.kind} {audience.id!r} is empty")
    return int(size)

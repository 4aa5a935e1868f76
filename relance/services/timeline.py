"""A lead's timeline: everything that happened to them, newest first, in one list.

It answers support's question "why didn't she get it?": every journey entered and left (and
why), every enrollment refused, every message sent, skipped, deferred or failed with its reason,
every open and click (human or machine, and why a machine), unsubscribe, score change, MQL
crossing (the lead's stage), consent change, page view or purchase, list joined.

Paginated by cursor: an entry's key is (time, source, row id); a page is the entries before
the cursor, newest first, read from each source with the lead's index and merged here.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, func, or_, select
from sqlalchemy.engine import Engine

from relance.domain.models import (
    Consent,
    EnrollmentRefusal,
    JourneyRun,
    Lead,
    LeadActivity,
    ListMember,
    Message,
    MqlNotification,
    ScoreEvent,
    TrackingEvent,
    as_utc,
)


class BadCursor(ValueError):
    """The cursor is not one this API gave."""


@dataclass(frozen=True)
class Source:
    name: str
    table: Table
    at: Callable[[Table], Any]  # the entry's time, as a column expression
    entry: Callable[[Any], dict]  # a row -> the entry's fields
    where: Callable[[Table], Any] | None = None
    type_of: Callable[[Any], str] | None = None  # the entry's type, if not the source's name


def _t(model) -> Table:
    return model.__table__


SOURCES = (
    Source(
        "journey.entered",
        _t(JourneyRun),
        lambda t: t.c.entered_at,
        lambda r: {"journey": r.journey, "workflow_id": r.workflow_id},
    ),
    Source(
        "journey.left",
        _t(JourneyRun),
        lambda t: t.c.closed_at,
        lambda r: {
            "journey": r.journey,
            "workflow_id": r.workflow_id,
            "outcome": r.outcome,
            "reason": r.reason,
            "goal": r.goal,
            "checkpoints": list(r.checkpoints or []),
        },
        where=lambda t: t.c.closed_at.is_not(None),
    ),
    Source(
        "journey.refused",
        _t(EnrollmentRefusal),
        lambda t: t.c.created_at,
        lambda r: {
            "journey": r.target,
            "from_journey": r.source,
            "workflow_id": r.workflow_id,
            "reason": r.reason,
        },
    ),
    Source(
        "message",
        _t(Message),
        lambda t: func.coalesce(t.c.sent_at, t.c.created_at),
        lambda r: {
            "message_id": r.id,
            "journey": r.journey,
            "step": r.step,
            "template": r.template,
            "channel": r.channel,
            "status": r.status,
            "reason": r.reason,
            "deferred_until": as_utc(r.deferred_until),
        },
        type_of=lambda r: f"message.{r.status}",
    ),
    Source(
        "tracking",
        _t(TrackingEvent),
        lambda t: t.c.received_at,
        lambda r: {
            "message_id": r.message_id,
            "url": r.url,
            "machine": bool(r.machine),
            "machine_reason": r.machine_reason,
        },
        type_of=lambda r: f"tracking.{r.kind}",
    ),
    Source(
        "score",
        _t(ScoreEvent),
        lambda t: t.c.created_at,
        lambda r: {"event": r.event, "points": r.points, "reason": r.reason},
    ),
    Source(
        "stage.mql",
        _t(MqlNotification),
        lambda t: t.c.created_at,
        lambda r: {"score": r.score, "threshold": r.threshold, "reason": r.reason},
    ),
    Source(
        "consent",
        _t(Consent),
        lambda t: t.c.recorded_at,
        lambda r: {
            "channel": r.channel,
            "purpose": r.purpose,
            "status": r.status,
            "reason": r.reason,
            "source_url": r.source_url,
        },
    ),
    Source(
        "activity",
        _t(LeadActivity),
        lambda t: t.c.at,
        lambda r: {"kind": r.kind, "url": r.url, "category": r.category},
        type_of=lambda r: f"activity.{r.kind}",
    ),
    Source(
        "list.joined",
        _t(ListMember),
        lambda t: t.c.added_at,
        lambda r: {"list": r.list_name, "reason": r.reason},
    ),
)
_BY_NAME = {source.name: source for source in SOURCES}


def encode_cursor(at: datetime, source: str, row_id: Any) -> str:
    raw = json.dumps([at.isoformat(), source, row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, source, row_id = json.loads(raw)
        moment = as_utc(datetime.fromisoformat(at))
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as err:
        raise BadCursor("the cursor is not one this API gave") from err
    source_ = _BY_NAME.get(source)
    id_type = source_.table.c.id.type.python_type if source_ is not None else None
    if source_ is None or not isinstance(row_id, id_type) or isinstance(row_id, bool):
        raise BadCursor("the cursor is not one this API gave")
    return moment, source, row_id


def timeline(engine: Engine, lead_id: str, *, limit: int = 50, cursor: str | None = None) -> dict:
    """One page of the lead's timeline, newest first: ``entries`` and ``next_cursor`` (None on
    the last page). Raises BadCursor."""
    after = decode_cursor(cursor) if cursor else None
    found: list[tuple[tuple, dict]] = []
    with engine.connect() as conn:
        for source in SOURCES:
            table = source.table
            at = source.at(table).label("entry_at")
            where = [table.c.lead_id == lead_id]
            if source.where is not None:
                where.append(source.where(table))
            if after is not None:
                where.append(_before(source, at.element, table, after))
            query = (
                select(table, at)
                .where(*where)
                .order_by(at.element.desc(), table.c.id.desc())
                .limit(limit + 1)
            )
            for row in conn.execute(query):
                moment = as_utc(row.entry_at)
                entry = {
                    "at": moment,
                    "type": source.type_of(row) if source.type_of else source.name,
                    "id": f"{source.name}:{row.id}",
                    **source.entry(row),
                }
                found.append(((moment, source.name, row.id), entry))
    found.sort(key=lambda pair: pair[0], reverse=True)
    page = found[:limit]
    next_cursor = encode_cursor(*page[-1][0]) if len(found) > limit else None
    return {"entries": [entry for _, entry in page], "next_cursor": next_cursor}


def _before(source: Source, at, table: Table, after: tuple[datetime, str, Any]):
    """The source's entries that come after the cursor in the timeline's order (newest first:
    earlier times; at the same time, sources and ids in descending order)."""
    moment, name, row_id = after
    if source.name < name:
        return at <= moment
    if source.name > name:
        return at < moment
    return or_(at < moment, and_(at == moment, table.c.id < row_id))


def lead_header(engine: Engine, lead_id: str) -> dict | None:
    """Who the timeline is about (its page's heading): id, email, first name, score; None when
    there is no such lead."""
    leads = _t(Lead)
    with engine.connect() as conn:
        row = conn.execute(
            select(leads.c.id, leads.c.email, leads.c.first_name, leads.c.score).where(
                leads.c.id == lead_id
            )
        ).first()
    return dict(row._mapping) if row is not None else None

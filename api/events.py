"""Events for the API: database work (keyword-only, one session passed in, for ``db.run``) and
the Temporal side (start a registration's journey, tell running journeys what changed).

Each registration runs the catalogue's ``event`` journey, id ``event-<event id>-<lead id>``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, timedelta

from fastapi import HTTPException, status
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.crud import get_lead_or_404, normalize_email
from api.errors import unprocessable
from api.schemas import AttendanceIn, EventCreate, EventPublic, EventUpdate
from relance.contracts import catalogue
from relance.domain.models import Event, Lead, Registration, as_utc, utcnow
from relance.domain.settings import Settings
from relance.services import journeys

# Changing one of these moves or ends the journeys: they are told (signal), then re-read the event.
SCHEDULE_FIELDS = {"starts_at", "duration_minutes", "status"}


EVENT = catalogue.entry("event")


def workflow_id(event_id: str, lead_id: str) -> str:
    return EVENT.workflow_id(event_id=event_id, lead_id=lead_id)


# Database -------------------------------------------------------------------------------
def get_event_or_404(*, session: Session, event_id: str) -> Event:
    event = session.get(Event, event_id)
    if event is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no event with id {event_id}")
    return event


def event_public(*, session: Session, event: Event) -> EventPublic:
    count = session.exec(
        select(func.count()).select_from(Registration).where(Registration.event_id == event.id)
    ).one()
    starts_at = as_utc(event.starts_at)
    # speakers and topics: a row written before null meant "clear" may hold a JSON null
    return EventPublic(
        **{
            **event.model_dump(),
            "speakers": event.speakers or [],
            "topics": event.topics or [],
            "starts_at": starts_at,
            "ends_at": starts_at + timedelta(minutes=event.duration_minutes),
            "created_at": as_utc(event.created_at),
            "updated_at": as_utc(event.updated_at),
            "registrations": count,
        }
    )


def create_event(*, session: Session, data: EventCreate) -> EventPublic:
    event = Event(**_columns(data.model_dump()))
    session.add(event)
    session.commit()
    return event_public(session=session, event=event)


def update_event(
    *, session: Session, event_id: str, data: EventUpdate
) -> tuple[EventPublic, list[str]]:
    """Apply the change. Returns the event and, when its schedule or status was touched, the
    journeys to tell (every registration's; the closed ones will just not answer)."""
    event = get_event_or_404(session=session, event_id=event_id)
    if event.status == "cancelled":
        raise unprocessable("the event is cancelled; it cannot change any more", "path", "event_id")
    changes = _columns(
        data.model_dump(exclude_unset=True)
    )  # null for a required field: refused by the schema
    if "starts_at" in changes and changes["starts_at"] != as_utc(event.starts_at):
        event.sequence += 1  # calendars replace the invite they have
    for name, value in changes.items():
        setattr(event, name, value)
    if not (event.join_url or event.address):
        raise unprocessable("an event needs a join_url, an address, or both")
    event.updated_at = utcnow()
    session.add(event)
    session.commit()
    to_tell = []
    if SCHEDULE_FIELDS & changes.keys():
        to_tell = list(
            session.exec(
                select(Registration.workflow_id).where(Registration.event_id == event.id)
            ).all()
        )
    return event_public(session=session, event=event), to_tell


def create_registration(
    *, session: Session, event_id: str, lead_id: str
) -> tuple[Registration, Lead | None, Event]:
    """The registration row, claimed before the journey starts. An existing one comes back with
    ``None`` for the lead: the caller answers 409."""
    event = get_event_or_404(session=session, event_id=event_id)
    lead = get_lead_or_404(session=session, lead_id=lead_id)
    existing = session.exec(
        select(Registration).where(
            Registration.event_id == event_id, Registration.lead_id == lead_id
        )
    ).first()
    if existing is not None:
        return existing, None, event
    if event.status == "cancelled":
        raise unprocessable("the event is cancelled", "path", "event_id")
    if as_utc(event.starts_at) + timedelta(minutes=event.duration_minutes) <= utcnow():
        raise unprocessable("the event is over", "path", "event_id")
    registration = Registration(
        event_id=event_id, lead_id=lead_id, workflow_id=workflow_id(event_id, lead_id)
    )
    session.add(registration)
    try:
        session.commit()
    except IntegrityError:  # a concurrent registration of the same lead won
        session.rollback()
        return (
            session.exec(
                select(Registration).where(
                    Registration.event_id == event_id, Registration.lead_id == lead_id
                )
            ).one(),
            None,
            event,
        )
    return registration, lead, event


def delete_registration(*, session: Session, registration_id: int) -> None:
    """Undo the claim when the journey could not start (Temporal unreachable), so a retry works."""
    row = session.get(Registration, registration_id)
    if row is not None:
        session.delete(row)
        session.commit()


def mark_attendance(
    *, session: Session, event_id: str, data: AttendanceIn
) -> tuple[list[str], list[str], list[str]]:
    """Mark the registrations of the leads given. Returns (lead ids, their journeys, not
    registered)."""
    get_event_or_404(session=session, event_id=event_id)
    by_email = {}
    if data.emails:
        wanted = {normalize_email(e): e for e in data.emails}
        for lead_id, email in session.exec(
            select(Lead.id, Lead.email).where(col(Lead.email).in_(wanted))
        ).all():
            by_email[wanted[email]] = lead_id
    wanted_ids = set(data.lead_ids) | set(by_email.values())
    rows = session.exec(
        select(Registration).where(
            Registration.event_id == event_id, col(Registration.lead_id).in_(wanted_ids)
        )
    ).all()
    now = utcnow()
    for row in rows:
        if not row.attended:
            row.attended, row.attended_at = True, now
            session.add(row)
    session.commit()
    registered = {row.lead_id for row in rows}
    not_registered = [i for i in data.lead_ids if i not in registered] + [
        e for e in data.emails if by_email.get(e) not in registered
    ]
    return sorted(registered), [row.workflow_id for row in rows], not_registered


def _columns(values: dict) -> dict:
    """Schema values as stored: URLs as text, times in UTC."""
    out = {}
    for name, value in values.items():
        if name in ("join_url", "replay_url", "survey_url") and value is not None:
            value = str(value)
        if name == "starts_at" and value is not None:
            value = value.astimezone(UTC)
        out[name] = value
    return out


# Temporal ---------------------------------------------------------------------------------
@dataclass
class Started:
    workflow_id: str
    run_id: str | None


async def start_journey(
    client: Client, settings: Settings, *, event: Event, lead_id: str, score: int
) -> Started:
    """Raises ``WorkflowAlreadyStartedError`` when the registration's journey exists already."""
    # A safety net, not a plan: the journey ends a week after the event; a year more for
    # reschedules.
    until_end = as_utc(event.starts_at) + timedelta(minutes=event.duration_minutes) - utcnow()
    handle = await journeys.start_journey(
        client,
        settings,
        EVENT,
        lead_id=lead_id,
        keys={"event_id": event.id},
        score=score,
        execution_timeout=max(until_end, timedelta(0)) + timedelta(days=365),
    )
    return Started(handle.id, handle.result_run_id)


async def tell(client: Client, workflow_ids: list[str], signal: str) -> int:
    """Signal each journey; a closed one (over, cancelled, unsubscribed) is skipped. Returns how
    many running journeys were told."""

    async def one(wid: str) -> bool:
        try:
            await client.get_workflow_handle(wid).signal(signal)
            return True
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:  # closed: nothing left to tell it
                return False
            raise

    told = 0
    for start in range(0, len(workflow_ids), 50):  # bounded fan-out
        told += sum(await asyncio.gather(*(one(w) for w in workflow_ids[start : start + 50])))
    return told

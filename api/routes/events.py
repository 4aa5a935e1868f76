"""Events and registrations: create and change events, register leads, report attendance.

Registering starts the lead's ``EventReminderJourney``; rescheduling or cancelling the event
(``PATCH``) and reporting attendance signal the running journeys.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.responses import JSONResponse
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from api import events
from api.deps import DatabaseDep, SessionDep, SettingsDep, TemporalDep, require_api_key
from api.errors import validation_response
from api.schemas import (
    AttendanceIn,
    AttendancePublic,
    EventCreate,
    EventPublic,
    EventUpdate,
    RegistrationCreate,
    RegistrationPublic,
)
from relance.contracts.signals import ATTENDED, EVENT_CHANGED
from relance.domain.models import as_utc

router = APIRouter(prefix="/events", tags=["events"], dependencies=[Depends(require_api_key)])

TEMPORAL_DOWN = "the journey engine (Temporal) is unreachable"
NO_EVENT = {404: {"description": "No event with this id"}}


@router.post("", response_model=EventPublic, status_code=status.HTTP_201_CREATED)
def create_event(data: EventCreate, session: SessionDep) -> EventPublic:
    return events.create_event(session=session, data=data)


@router.get("/{event_id}", response_model=EventPublic, responses=NO_EVENT)
def read_event(event_id: str, session: SessionDep) -> EventPublic:
    return events.event_public(
        session=session, event=events.get_event_or_404(session=session, event_id=event_id)
    )


@router.patch(
    "/{event_id}",
    response_model=EventPublic,
    responses={
        **NO_EVENT,
        422: validation_response("Invalid change, or the event is cancelled already"),
    },
)
async def update_event(
    event_id: str, data: EventUpdate, db: DatabaseDep, temporal: TemporalDep
) -> EventPublic:
    """A new `starts_at` (or duration) moves every registration's reminders and sends a "new
    date" email; `{"status": "cancelled"}` ends every registration's journey with a cancellation
    email. Sending the same change again is harmless: journeys compare with what they know."""
    event, journeys = await db.run(events.update_event, event_id=event_id, data=data)
    try:
        await events.tell(temporal, journeys, EVENT_CHANGED)
    except RPCError as err:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the event is saved but {TEMPORAL_DOWN}: send the same PATCH again",
        ) from err
    return event


@router.post(
    "/{event_id}/registrations",
    response_model=RegistrationPublic,
    status_code=status.HTTP_201_CREATED,
    responses={
        404: {"description": "No event, or no lead, with this id"},
        409: {
            "model": RegistrationPublic,
            "description": "The lead is already registered (the journey's id is in the answer)",
        },
        422: validation_response("The event is cancelled or over"),
    },
)
async def register(
    event_id: str,
    data: RegistrationCreate,
    db: DatabaseDep,
    settings: SettingsDep,
    temporal: TemporalDep,
):
    registration, lead, event = await db.run(
        events.create_registration, event_id=event_id, lead_id=data.lead_id
    )
    if lead is None:
        return _already(registration)
    try:
        started = await events.start_journey(
            temporal, settings, event=event, lead_id=lead.id, score=lead.score
        )
    except WorkflowAlreadyStartedError:
        return _already(registration)
    except RPCError as err:
        await db.run(events.delete_registration, registration_id=registration.id)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"{TEMPORAL_DOWN}; nothing was saved, retry"
        ) from err
    return RegistrationPublic(
        event_id=event_id,
        lead_id=lead.id,
        workflow_id=started.workflow_id,
        run_id=started.run_id,
        registered_at=as_utc(registration.registered_at),
        attended=False,
        detail="registered; the event journey started",
    )


@router.post("/{event_id}/attendance", response_model=AttendancePublic, responses=NO_EVENT)
async def report_attendance(
    event_id: str, data: AttendanceIn, db: DatabaseDep, temporal: TemporalDep
):
    """Who was there (lead ids and/or emails). Their journeys send the attendees' thank-you the
    day after instead of the replay. Unknown or unregistered people are listed, not refused."""
    attended, journeys, not_registered = await db.run(
        events.mark_attendance, event_id=event_id, data=data
    )
    try:
        await events.tell(temporal, journeys, ATTENDED)
    except RPCError as err:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"attendance is saved but {TEMPORAL_DOWN}: send the same list again",
        ) from err
    return AttendancePublic(attended=attended, not_registered=not_registered)


def _already(registration) -> JSONResponse:
    body = RegistrationPublic(
        event_id=registration.event_id,
        lead_id=registration.lead_id,
        workflow_id=registration.workflow_id,
        registered_at=as_utc(registration.registered_at),
        attended=registration.attended,
        detail="the lead is already registered to this event",
    )
    return JSONResponse(status_code=status.HTTP_409_CONFLICT, content=body.model_dump(mode="json"))

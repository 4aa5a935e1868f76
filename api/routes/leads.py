"""Leads and their journeys: sign-up (create or update), read, enroll, follow."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Literal

from fastapi import (
    APIRouter,
    BackgroundTasks,
    Depends,
    File,
    HTTPException,
    Path,
    Query,
    Response,
    UploadFile,
    status,
)
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlmodel import col, select
from temporalio.service import RPCError

from api import crud, imports, privacy
from api.deps import ActorDep, DatabaseDep, SessionDep, SettingsDep, TemporalDep, require_api_key
from api.errors import ErrorBody, unprocessable, validation_response
from api.journeys import enroll, journey_status
from api.schemas import (
    JOURNEY_EXAMPLES,
    JOURNEY_KEY,
    JOURNEY_KEY_DESCRIPTION,
    Attributes,
    ConsentPublic,
    EnrollmentPublic,
    ErasurePublic,
    ImportReport,
    JourneyStatusPublic,
    LeadCreate,
    LeadExport,
    LeadPage,
    LeadPublic,
    LeadSaved,
    MessagePublic,
)
from relance.domain import audit
from relance.domain.lists import LIST_NAME
from relance.domain.models import Message, as_utc, utcnow
from relance.services.erasure import erase_lead
from relance.services.lead_activity import act_on
from relance.services.timeline import BadCursor, timeline
from relance.services.triggers import ATTRIBUTE, LIST, on_list_joined, reevaluate_segments

log = logging.getLogger("relance.api")

router = APIRouter(prefix="/leads", tags=["leads"], dependencies=[Depends(require_api_key)])

PENDING_WITHOUT_WELCOME = (
    "the email consent is pending the lead's confirmation (double opt-in, RELANCE_DOUBLE_OPT_IN): "
    "the confirmation email is the welcome journey's first step, and this sign-up did not enroll "
    "the lead in it; until the lead confirms, no journey sends them marketing email"
)
TEMPORAL_DOWN = (
    "the journey engine (Temporal) is unreachable; the lead is saved, retry the enrollment"
)
NO_LEAD = {404: {"description": "No lead with this id"}}
JourneyPath = Path(
    pattern=JOURNEY_KEY,
    max_length=60,
    description=JOURNEY_KEY_DESCRIPTION,
    examples=JOURNEY_EXAMPLES,
)


@router.post(
    "",
    response_model=LeadSaved,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": LeadSaved, "description": "An existing lead (same email) was updated"},
        409: {
            "description": "The address was erased at the person's request and is on the "
            "suppression list: it is never signed up again"
        },
    },
)
async def create_or_update_lead(
    data: LeadCreate,
    db: DatabaseDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    response: Response,
    background: BackgroundTasks,
) -> LeadSaved:
    """A form submission. Deduplicates by normalised email; records the consent evidence;
    optionally enrolls the lead in journeys (`"journeys": ["welcome"]`)."""
    if data.attributes:
        data = data.model_copy(
            update={
                "attributes": crud.checked_attributes(
                    settings, data.attributes, ["body", "attributes"]
                )
            }
        )
    lead, created = await db.run(
        crud.save_sign_up,
        data=data,
        default_phone_region=settings.default_phone_region,
        suppression_key=settings.suppression_hash_key,
        settings=settings,
    )
    if data.attributes:  # after the answer: the segments whose rules read attributes
        background.add_task(
            reevaluate_segments, temporal, settings, db.engine, lead_ids=[lead.id],
            facts=(ATTRIBUTE,),
        )  # fmt: skip
    if not created:
        response.status_code = status.HTTP_200_OK
        # a known lead filling a form is active: a re-engagement journey ends, a premium offer may
        # be due
        try:
            await act_on(
                temporal,
                settings,
                await db.run(
                    crud.activity_follow_ups, settings=settings, lead_id=lead.id, kind="form"
                ),
            )
        except RPCError as err:
            log.warning(
                "sign-up of lead %s: could not tell its journeys about the activity (%s)",
                lead.id,
                err.message,
            )
    enrollments = []
    for journey in dict.fromkeys(data.journeys):
        try:
            enrollments.append(
                await enroll(
                    temporal,
                    settings,
                    lead_id=lead.id,
                    score=lead.score,
                    journey=journey,
                    db=db,
                    new_lead=created,
                )
            )
        except RPCError as err:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, f"{TEMPORAL_DOWN} (lead id {lead.id})"
            ) from err
    notes = []
    if lead.consents.get("email") == "pending" and "welcome" not in data.journeys:
        notes.append(PENDING_WITHOUT_WELCOME)
    return LeadSaved(lead=lead, created=created, enrollments=enrollments, notes=notes)


@router.post(
    "/import",
    response_model=ImportReport,
    responses={
        413: {
            "model": ErrorBody,
            "description": "The file is larger than RELANCE_IMPORT_MAX_BYTES, "
            "or has more than 50,000 rows",
        },
        422: validation_response("Not a CSV file we can read"),
        503: {
            "model": ErrorBody,
            "description": "Imported, but the journeys the list triggers could not all be started",
        },
    },
)
async def import_csv(
    db: DatabaseDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    background: BackgroundTasks,
    file: UploadFile = File(
        description="CSV, UTF-8, with a header line: email, first_name, phone, "
        "country, consent, source_url, consented_at, wording_version, ip"
    ),
    list: str | None = Query(
        default=None, pattern=LIST_NAME, description="Also put every imported lead on this list"
    ),
) -> ImportReport:
    """Import leads from a CSV file with their consent evidence, deduplicated by normalised
    email. Each row is all or nothing; the report says how many were created and updated, and
    which lines were rejected and why. An address on the suppression list is refused. The leads
    new on ``list`` enter the defined journeys a ``list_joined`` trigger of it starts."""
    raw = await file.read(settings.import_max_bytes + 1)
    joined: list[str] = []
    report = await db.run(
        imports.import_leads, settings=settings, raw=raw, list_name=list, joined=joined
    )
    if list and joined:
        background.add_task(
            reevaluate_segments, temporal, settings, db.engine, lead_ids=joined, facts=(LIST,)
        )
        try:
            await on_list_joined(temporal, settings, db.engine, lead_ids=joined, list_name=list)
        except RPCError as err:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "the leads are imported but the journey engine (Temporal) is unreachable: the "
                "journeys their list triggers were not all started (import the file again)",
            ) from err
    return report


@router.get("", response_model=LeadPage)
def list_leads(
    session: SessionDep,
    settings: SettingsDep,
    actor: ActorDep,
    segment: Literal["hot", "warm", "cold"] | None = Query(
        default=None, description="hot | warm | cold"
    ),
    stage: Literal["subscriber", "lead", "mql", "sql", "customer"] | None = Query(default=None),
    limit: int = Query(default=50, ge=1, le=500),
    after: str | None = Query(
        default=None, max_length=32, description="The `next` of the previous page"
    ),
) -> LeadPage:
    """Leads by id, a page at a time, filtered by segment and lifecycle stage
    (`GET /leads?segment=hot&stage=mql`). Both are derived from the data at each request.
    Each lead listed is a read in the audit log (``lead.list``)."""
    leads, next_cursor = crud.list_leads(
        session=session, settings=settings, segment=segment, stage=stage, limit=limit, after=after
    )
    for lead in leads:
        audit.record(
            session,
            actor=actor,
            action=audit.LIST,
            lead_id=lead.id,
            detail={"segment": segment, "stage": stage},
        )
    session.commit()
    return LeadPage(leads=leads, next=next_cursor)


@router.get("/{lead_id}", response_model=LeadPublic, responses=NO_LEAD)
def read_lead(
    lead_id: str, session: SessionDep, settings: SettingsDep, actor: ActorDep
) -> LeadPublic:
    """The lead's profile, score, segment, lifecycle stage and current consents (the read is
    written to the audit log)."""
    lead = crud.read_lead_public(session=session, lead_id=lead_id, settings=settings)
    privacy.record_read(session=session, lead_id=lead_id, actor=actor)
    return lead


@router.patch(
    "/{lead_id}/attributes",
    response_model=LeadPublic,
    responses={
        **NO_LEAD,
        422: validation_response(
            "An attribute the lead schema does not declare, or a value of the wrong type: one "
            'entry per attribute, its `loc` naming it (`["body", "<attribute>"]`); nothing is '
            "changed"
        ),
    },
)
def update_lead_attributes(
    lead_id: str,
    values: Attributes,
    session: SessionDep,
    settings: SettingsDep,
    db: DatabaseDep,
    temporal: TemporalDep,
    background: BackgroundTasks,
) -> LeadPublic:
    """Set custom attributes (declared in config/lead_schema.yaml): a given value replaces the
    stored one, null removes it, the others are left as they are. The lead enters the journeys
    of a segment it enters by them (after the answer)."""
    checked = crud.checked_attributes(settings, values, ["body"]) or {}
    lead = crud.set_attributes(session=session, lead_id=lead_id, values=checked, settings=settings)
    background.add_task(
        reevaluate_segments, temporal, settings, db.engine, lead_ids=[lead_id], facts=(ATTRIBUTE,)
    )
    return lead


@router.get("/{lead_id}/consents", response_model=list[ConsentPublic], responses=NO_LEAD)
def read_lead_consents(lead_id: str, session: SessionDep, actor: ActorDep) -> list[ConsentPublic]:
    """The consent ledger's history for the lead, oldest first: the proof of every grant and
    withdrawal (channel, purpose, source, IP, user agent, wording version, time). Audited."""
    return privacy.consent_history(session=session, lead_id=lead_id, actor=actor)


@router.get("/{lead_id}/export", response_model=LeadExport, responses=NO_LEAD)
async def export_lead(
    lead_id: str, db: DatabaseDep, temporal: TemporalDep, actor: ActorDep
) -> LeadExport:
    """Everything held about the lead (right of access), as JSON: the profile, every row of
    every table holding the lead's id, and its journeys from Temporal. Audited."""
    privacy.check_id(lead_id)
    known = await db.run(privacy.workflow_ids_of, lead_id=lead_id)
    try:
        journeys = await privacy.journeys_of(temporal, lead_id, known)
    except RPCError as err:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"could not list the lead's journeys: {err.message}",
        ) from err
    lead, data = await db.run(privacy.export_rows, lead_id=lead_id, actor=actor)
    return LeadExport(exported_at=utcnow(), lead=lead, data=data, journeys=journeys)


@router.delete(
    "/{lead_id}",
    response_model=ErasurePublic,
    responses={
        404: {"description": "No such lead (or erased already)"},
        503: {"description": "Temporal is unreachable: nothing was erased, retry"},
    },
)
async def erase(
    lead_id: str,
    db: DatabaseDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    actor: ActorDep,
    reason: str = Query(
        default="erasure requested by the person",
        max_length=300,
        description="Why (kept in the audit log)",
    ),
) -> ErasurePublic:
    """Right to be forgotten: deletes every journey of the lead from Temporal (a running one is
    terminated by it, at once), then deletes every row about the lead. Kept: the address's keyed
    hash on the suppression list (it is never signed up or contacted again) and the audit log
    entries."""
    privacy.check_id(lead_id)
    known = await db.run(privacy.workflow_ids_of, lead_id=lead_id)
    try:
        journeys = await privacy.journeys_of(temporal, lead_id, known)
        closed = await privacy.close_and_delete(temporal, journeys)
    except RPCError as err:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"could not close the lead's journeys ({err.message}); nothing was erased, retry",
        ) from err
    report = await run_in_threadpool(
        erase_lead,
        db.engine,
        lead_id,
        actor=actor,
        reason=reason,
        hash_key=settings.suppression_hash_key,
    )
    if not report.found:  # erased meanwhile by another request
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no lead with id {lead_id}")
    # A journey that started while the rows were being erased (a sweep or another journey had
    # the lead in hand) would only fail on the missing lead: close it too. Nothing can start one
    # after the erasure, the lead being gone.
    try:
        late = [
            j
            for j in await privacy.journeys_of(temporal, lead_id, known)
            if j.workflow_id not in closed or j.status == "RUNNING"
        ]
        closed = sorted(set(closed) | set(await privacy.close_and_delete(temporal, late)))
    except RPCError as err:
        log.warning(
            "erasure of lead %s: rows erased, but a second look for late journeys failed (%s)",
            lead_id,
            err.message,
        )
    return ErasurePublic(
        lead_id=lead_id,
        erased_at=report.erased_at,
        journeys_closed=closed,
        rows_deleted=report.rows_deleted,
        suppressed=report.suppressed,
        kept=report.kept,
    )


@router.get("/{lead_id}/messages", response_model=list[MessagePublic], responses=NO_LEAD)
def read_lead_messages(lead_id: str, session: SessionDep, actor: ActorDep) -> list[MessagePublic]:
    """The messages sent (or skipped) to the lead, oldest first. Audited."""
    crud.get_lead_or_404(session=session, lead_id=lead_id)
    rows = session.exec(
        select(Message).where(Message.lead_id == lead_id).order_by(col(Message.created_at))
    ).all()
    messages = [
        MessagePublic.model_validate(
            {
                **row.model_dump(),
                **{
                    k: as_utc(getattr(row, k))
                    for k in ("created_at", "sent_at", "opened_at", "clicked_at")
                },
            }
        )
        for row in rows
    ]
    privacy.record_read(session=session, lead_id=lead_id, actor=actor, action=audit.MESSAGES)
    return messages


class TimelineEntry(BaseModel):
    """One thing that happened to the lead: ``type`` says what (journey.entered, journey.left,
    journey.refused, message.sent|skipped|deferred|failed|sending, tracking.opened|clicked|
    unsubscribed|email_confirmed, score, stage.mql, consent, activity.<kind>, list.joined); the
    other fields depend on it."""

    model_config = ConfigDict(extra="allow")
    at: datetime
    type: str
    id: str


class TimelinePage(BaseModel):
    entries: list[TimelineEntry]
    next_cursor: str | None


@router.get(
    "/{lead_id}/timeline",
    response_model=TimelinePage,
    responses={**NO_LEAD, 422: validation_response("The cursor is not one this API gave")},
)
def read_lead_timeline(
    lead_id: str,
    session: SessionDep,
    actor: ActorDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> dict:
    """Everything that happened to the lead, newest first: journeys entered and left (why),
    enrollments refused, every message sent, skipped, deferred or failed with its reason, every
    open and click (human or machine, and why), score changes, MQL crossings, consents, page views
    and purchases, lists joined. `next_cursor` fetches the next page. Audited."""
    crud.get_lead_or_404(session=session, lead_id=lead_id)
    try:
        page = timeline(session.get_bind(), lead_id, limit=limit, cursor=cursor)
    except BadCursor as err:
        raise unprocessable(str(err), "query", "cursor") from err
    privacy.record_read(session=session, lead_id=lead_id, actor=actor, action=audit.TIMELINE)
    return page


@router.post(
    "/{lead_id}/journeys/{journey}",
    response_model=EnrollmentPublic,
    status_code=status.HTTP_201_CREATED,
    responses={
        404: {
            "model": ErrorBody,
            "description": "No lead with this id, or no journey by this name (neither coded nor "
            "defined), or a defined journey never published",
        },
        409: {
            "description": "The lead is already in (or went through) this journey, or an "
            "enrollment rule refuses it (excluded, too many journeys at once), or the defined "
            "journey is paused or archived, or the coded journey was replaced by one written as "
            "data (a sentence in `detail`)"
        },
    },
)
async def enroll_lead(
    lead_id: str,
    db: DatabaseDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    journey: str = JourneyPath,
):
    """Enroll the lead into a journey: a coded one, or the current published version of one
    written as data (the lead keeps that version to its end, whatever is published after). The
    journey's enrollment rules apply (exclusions, cooldown, re-entry, journeys at once)."""
    lead = await db.run(crud.read_lead_public, lead_id=lead_id, settings=settings)
    try:
        enrollment = await enroll(
            temporal, settings, lead_id=lead.id, score=lead.score, journey=journey, db=db
        )
    except RPCError as err:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, TEMPORAL_DOWN) from err
    if enrollment.status in ("already_enrolled", "refused"):
        return JSONResponse(
            status_code=status.HTTP_409_CONFLICT,
            content={"detail": enrollment.detail, **enrollment.model_dump(exclude={"detail"})},
        )
    return enrollment


@router.get(
    "/{lead_id}/journeys/{journey}",
    response_model=JourneyStatusPublic,
    responses={
        404: {"description": "No lead with this id, or it was never enrolled in this journey"}
    },
)
async def read_journey(
    lead_id: str, db: DatabaseDep, temporal: TemporalDep, journey: str = JourneyPath
):
    """Where the lead is in the journey (its status query). `score` is the lead's score now, from
    the database (authoritative); `journey_score` is what the journey last saw, as its `Score`
    search attribute shows in the Temporal UI, and may lag it (an open is scored after the journey
    is told of it, and the journey does not read the score again until it needs it)."""
    lead = await db.run(crud.get_lead_or_404, lead_id=lead_id)
    try:
        found = await journey_status(
            temporal, lead_id=lead_id, journey=journey, lead_score=lead.score
        )
    except RPCError as err:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"could not read the journey: {err.message}"
        ) from err
    if found is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"lead {lead_id} was never enrolled in the {journey} journey"
        )
    return found

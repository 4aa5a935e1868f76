"""Broadcasts: one message to a whole audience, in waves (workflows/broadcast.py).

POST /broadcasts               {audience: {list: name} | {segment: id}, template, channel,
                                topic, send_at, per_hour}: 201 with the id, or 422 naming
                                the problem (nothing stored, nothing started)
GET  /broadcasts/{id}          progress: audience, sent, skipped by reason, failed, remaining,
                                ETA
POST /broadcasts/{id}/pause | /resume | /cancel
POST /broadcasts/preview       {template, lead_id}: rendered for the lead, untracked, stored
                                nowhere
POST /broadcasts/test-send     {template, to}: sent to that address; no lead, no ledger row,
                                so never in reports or caps
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, status
from pydantic import BaseModel, EmailStr, Field, model_validator
from sqlmodel import Session
from temporalio.service import RPCError, RPCStatusCode

from activities.channels import template_context
from activities.email import recipient
from api.deps import DatabaseDep, SettingsDep, SignerDep, TemporalDep, require_api_key
from api.errors import validation_response
from relance.contracts import broadcasts as bc
from relance.contracts.broadcasts import BroadcastProgress
from relance.contracts.sending import SendFailure
from relance.domain.audiences import Audience
from relance.domain.models import Broadcast, Lead, as_utc, new_id
from relance.domain.rendering import Renderer
from relance.services import broadcasts, smtp
from relance.services.broadcasts import BroadcastError, BroadcastSpec

router = APIRouter(
    prefix="/broadcasts", tags=["broadcasts"], dependencies=[Depends(require_api_key)]
)

NOT_FOUND = {404: {"description": "No broadcast with this id"}}
UNREACHABLE = {503: {"description": "The journey engine (Temporal) is unreachable"}}


class AudienceIn(BaseModel):
    list: str | None = Field(default=None, max_length=64, description="a list's name")
    segment: str | None = Field(default=None, max_length=64, description="a segment's id")

    @model_validator(mode="after")
    def one_of(self) -> AudienceIn:
        if (self.list is None) == (self.segment is None):
            raise ValueError('name one audience: {"list": name} or {"segment": id}')
        return self

    def audience(self) -> Audience:
        return Audience("list", self.list) if self.list else Audience("segment", self.segment)


class BroadcastCreate(BaseModel):
    audience: AudienceIn
    template: str = Field(max_length=128)
    channel: str = Field(default="email", max_length=16)
    topic: str | None = Field(default=None, max_length=64)
    send_at: datetime | None = Field(default=None, description="ISO 8601; none: now")
    per_hour: int = Field(default=1000, description="messages an hour, at least 1")


class BroadcastCreated(BaseModel):
    id: str
    workflow_id: str
    audience: int
    status: str


class BroadcastPublic(BaseModel):
    id: str
    workflow_id: str
    audience: dict[str, str]
    template: str
    channel: str
    topic: str | None
    per_hour: int
    send_at: datetime
    status: str
    audience_size: int
    sent: int
    skipped: int
    skipped_by_reason: dict[str, int]
    failed: int
    deferred: int = 0
    remaining: int
    eta: datetime | None = None
    detail: str = ""


class PreviewIn(BaseModel):
    template: str = Field(max_length=128)
    lead_id: str = Field(max_length=32)


class PreviewOut(BaseModel):
    subject: str
    html: str
    text: str


class TestSendIn(BaseModel):
    template: str = Field(max_length=128)
    to: EmailStr


class TestSent(BaseModel):
    to: str
    subject: str


def unprocessable(err: BroadcastError) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        [{"loc": ["body", err.field or "body"], "msg": str(err), "type": "value_error"}],
    )


def _create(*, session: Session, spec: BroadcastSpec) -> Broadcast:
    try:
        return broadcasts.create(session, spec)
    except BroadcastError as err:
        raise unprocessable(err) from None


@router.post(
    "",
    response_model=BroadcastCreated,
    status_code=status.HTTP_201_CREATED,
    responses={
        422: validation_response(
            "Nothing was started: an unknown or empty list or segment, an "
            "unknown channel or template, per_hour below 1, send_at not a date"
        ),
        **UNREACHABLE,
    },
)
async def post_broadcast(
    body: BroadcastCreate, db: DatabaseDep, settings: SettingsDep, temporal: TemporalDep
) -> BroadcastCreated:
    """Freeze nothing yet: the audience is frozen when the broadcast starts (at ``send_at``)."""
    spec = BroadcastSpec(
        audience=body.audience.audience(),
        template=body.template,
        channel=body.channel,
        topic=body.topic,
        send_at=body.send_at,
        per_hour=body.per_hour,
    )
    broadcast = await db.run(_create, spec=spec)
    try:
        handle = await broadcasts.start(temporal, settings, broadcast)
    except RPCError as err:
        await db.run(_forget, broadcast_id=broadcast.id)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "the journey engine (Temporal) is unreachable"
        ) from err
    return BroadcastCreated(
        id=broadcast.id,
        workflow_id=handle.id,
        audience=broadcast.audience_size,
        status=broadcast.status,
    )


# Before the routes of one broadcast: /broadcasts/preview is not a broadcast's id.
def _renderer(settings, signer) -> Renderer:
    return Renderer(signer, settings.public_base_url)


def _preview(*, session: Session, settings, signer, body: PreviewIn) -> PreviewOut:
    try:
        broadcasts.check_template("email", body.template)
    except BroadcastError as err:
        raise unprocessable(err) from None
    lead = session.get(Lead, body.lead_id)
    if lead is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no lead {body.lead_id!r}")
    rendered = _renderer(settings, signer).preview_email(
        body.template, template_context(settings, lead)
    )
    return PreviewOut(subject=rendered.subject, html=rendered.html, text=rendered.text)


@router.post(
    "/preview",
    response_model=PreviewOut,
    responses={
        404: {"description": "No lead with this id"},
        422: validation_response("No email template by this name"),
    },
)
async def preview_broadcast(
    body: PreviewIn, db: DatabaseDep, settings: SettingsDep, signer: SignerDep
) -> PreviewOut:
    """The email as this lead would read it: no tracking pixel, links as written, stored
    nowhere."""
    return await db.run(_preview, settings=settings, signer=signer, body=body)


@router.post(
    "/test-send",
    response_model=TestSent,
    responses={
        422: validation_response("No email template by this name, or not an address"),
        502: {"description": "The mail server refused the message"},
    },
)
async def test_send(body: TestSendIn, settings: SettingsDep, signer: SignerDep) -> TestSent:
    """The email to this address, as a sample lead would read it (untracked, subject marked
    [Test]). No lead, no row in the send ledger: never in reports, never against a cap."""
    try:
        broadcasts.check_template("email", body.template)
    except BroadcastError as err:
        raise unprocessable(err) from None
    context = {
        "first_name": None,
        "locale": "en",
        "brand_name": settings.brand_name,
        "site_url": settings.site_url.rstrip("/"),
    }
    rendered = _renderer(settings, signer).preview_email(body.template, context)
    mime = EmailMessage()
    mime["From"] = settings.mail_from
    mime["To"] = recipient(str(body.to))
    mime["Subject"] = f"[Test] {rendered.subject}"
    mime["Date"] = formatdate(localtime=False)
    mime["Message-ID"] = f"<test-{new_id()}@{settings.mail_domain}>"
    mime["X-Relance-Journey"] = f"{bc.BROADCAST_JOURNEY}/test-send"
    mime.set_content(rendered.text)
    mime.add_alternative(rendered.html, subtype="html")
    try:
        await asyncio.to_thread(smtp.deliver, settings, mime, mime["To"].addresses[0].addr_spec)
    except SendFailure as err:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"not sent: {err}") from err
    return TestSent(to=str(body.to), subject=mime["Subject"])


def _forget(*, session: Session, broadcast_id: str) -> None:
    """A broadcast whose workflow could not start is not kept: nothing was started."""
    row = session.get(Broadcast, broadcast_id)
    if row is not None:
        session.delete(row)
        session.commit()


def _read(*, session: Session, broadcast_id: str) -> Broadcast:
    row = session.get(Broadcast, broadcast_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no broadcast {broadcast_id!r}")
    session.expunge(row)
    return row


@router.get("/{broadcast_id}", response_model=BroadcastPublic, responses=NOT_FOUND)
async def read_broadcast(
    broadcast_id: Annotated[str, Path(max_length=32)], db: DatabaseDep, temporal: TemporalDep
) -> BroadcastPublic:
    """The counts as of the last wave; while it runs, from the workflow itself (also shown in
    the Temporal UI's current details)."""
    row = await db.run(_read, broadcast_id=broadcast_id)
    workflow_id = broadcasts.workflow_id(row.id)
    progress: BroadcastProgress | None = None
    if row.status not in ("completed", "cancelled"):
        try:
            progress = await temporal.get_workflow_handle(workflow_id).query(
                "progress", result_type=BroadcastProgress
            )
        except RPCError:
            progress = None  # not reachable now: the stored counts
    public = BroadcastPublic(
        id=row.id,
        workflow_id=workflow_id,
        audience={row.audience_kind: row.audience_id},
        template=row.template,
        channel=row.channel,
        topic=row.topic,
        per_hour=row.per_hour,
        send_at=as_utc(row.send_at),
        status=row.status,
        audience_size=row.audience_size,
        sent=row.sent,
        skipped=row.skipped,
        skipped_by_reason=dict(row.skipped_by_reason),
        failed=row.failed,
        remaining=max(0, row.audience_size - row.sent - row.skipped - row.failed),
    )
    if progress is not None:
        c = progress.counts
        if c.audience:
            public.audience_size, public.sent, public.failed = c.audience, c.sent, c.failed
            public.skipped, public.skipped_by_reason = c.skipped_total, dict(c.skipped)
            public.deferred, public.remaining = c.deferred, c.remaining
        public.status, public.eta, public.detail = progress.status, progress.eta, progress.detail
    return public


async def _signal(temporal, db, broadcast_id: str, signal: str) -> BroadcastPublic:
    row = await db.run(_read, broadcast_id=broadcast_id)
    if row.status in ("completed", "cancelled"):
        raise HTTPException(status.HTTP_409_CONFLICT, f"the broadcast is {row.status} already")
    try:
        await temporal.get_workflow_handle(broadcasts.workflow_id(row.id)).signal(signal)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise HTTPException(
                status.HTTP_409_CONFLICT, "the broadcast's workflow has ended"
            ) from err
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "the journey engine (Temporal) is unreachable"
        ) from err
    answer = await read_broadcast(broadcast_id, db, temporal)
    # The broadcast may have ended between the row read above and the signal (its workflow says
    # "completed" a moment before its row does): the answer is then the one a request a moment
    # later gets, not a 200 for a pause that changed nothing. A cancel that ends it is its own.
    ended = ("completed",) if signal == bc.CANCEL else ("completed", "cancelled")
    if answer.status in ended:
        raise HTTPException(status.HTTP_409_CONFLICT, f"the broadcast is {answer.status} already")
    return answer


SIGNAL_ANSWERS = {
    **NOT_FOUND,
    409: {"description": "The broadcast has ended (completed or cancelled)"},
    **UNREACHABLE,
}


@router.post("/{broadcast_id}/pause", response_model=BroadcastPublic, responses=SIGNAL_ANSWERS)
async def pause_broadcast(broadcast_id: str, db: DatabaseDep, temporal: TemporalDep):
    """No new wave starts until resumed; the time paused does not count in the pace."""
    return await _signal(temporal, db, broadcast_id, bc.PAUSE)


@router.post("/{broadcast_id}/resume", response_model=BroadcastPublic, responses=SIGNAL_ANSWERS)
async def resume_broadcast(broadcast_id: str, db: DatabaseDep, temporal: TemporalDep):
    return await _signal(temporal, db, broadcast_id, bc.RESUME)


@router.post("/{broadcast_id}/cancel", response_model=BroadcastPublic, responses=SIGNAL_ANSWERS)
async def cancel_broadcast(broadcast_id: str, db: DatabaseDep, temporal: TemporalDep):
    """The recipients not sent yet get nothing; the wave in flight ends first."""
    return await _signal(temporal, db, broadcast_id, bc.CANCEL)

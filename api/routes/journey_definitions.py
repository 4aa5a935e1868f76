"""Journeys written as data, stored and published (relance/services/journey_store.py).

    POST /journeys                  create a draft (checked: 422 naming each node at fault)
    PUT  /journeys/{key}            replace the draft (checked likewise)
    GET  /journeys                  every journey a lead can be enrolled into: coded and defined
    GET  /journeys/{key}            a defined journey: its status, current version and draft
    POST /journeys/{key}/publish    the draft checked again and published as the next version
                                    (the current one when the draft is unchanged)
    POST /journeys/{key}/pause      no new entries; the leads in it go on
    POST /journeys/{key}/resume     new entries again
    POST /journeys/{key}/archive    no new entries, never published again (the key stays taken)
    GET  /journeys/{key}/versions   its published versions, oldest first (never changed)

Leads enter the current version with ``POST /leads/{id}/journeys/{key}``; a lead keeps the
version it entered with. Registered after api/routes/definitions.py (``/journeys/schema`` and
``/journeys/check`` are not keys).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlmodel import Session

from api.deps import SessionDep, SettingsDep, require_api_key
from api.errors import ErrorBody
from api.routes.definitions import PROBLEMS_422, unprocessable
from relance.contracts import catalogue
from relance.domain.definitions import KEY
from relance.domain.models import JourneyDefinition, JourneyVersion, as_utc
from relance.services import journey_store as store
from relance.services.definitions import DefinitionError

router = APIRouter(prefix="/journeys", tags=["journeys"], dependencies=[Depends(require_api_key)])

KeyPath = Path(pattern=KEY, max_length=40, description="The defined journey's key")
NOT_FOUND = {404: {"model": ErrorBody, "description": "No defined journey with this key"}}


class JourneyPublic(BaseModel):
    key: str = Field(description="What to enroll a lead with: POST /leads/{id}/journeys/{key}")
    kind: Literal["coded", "defined"] = Field(
        description="coded: a workflow of the catalogue; defined: written as data"
    )
    name: str
    status: Literal["draft", "published", "paused", "archived"] = Field(
        description="draft: never published; published: takes leads; paused: no new entries "
        "(the leads in it go on); archived: no new entries, never published again. A coded "
        "journey is published, or archived when a journey written as data replaced it "
        "(`replaced_by`)"
    )
    version: int | None = Field(
        description="The current published version (new leads enter it); null: coded, or never "
        "published"
    )
    draft_changed: bool | None = Field(
        default=None,
        description="The draft says something the current version does not (publish it to "
        "make it the next version)",
    )
    replaced_by: str | None = Field(
        default=None,
        description="A coded journey's successor: the journey written as data (its key) that "
        "takes the leads it no longer takes",
    )
    created_at: datetime | None = None
    updated_at: datetime | None = None


class JourneyDetail(JourneyPublic):
    draft: dict[str, Any] = Field(description="The draft as it was sent (a checked definition)")


class VersionPublic(BaseModel):
    key: str
    version: int
    content_hash: str = Field(description="SHA-256 of the definition's normalised content")
    published_at: datetime
    body: dict[str, Any] = Field(description="The definition published, as it was sent")


class PublishedPublic(VersionPublic):
    created: bool = Field(
        description="false: the draft was the current version already; nothing was published"
    )


def _public(row: JourneyDefinition, current: JourneyVersion | None) -> dict[str, Any]:
    return {
        "key": row.key,
        "kind": "defined",
        "name": str(row.draft.get("name", row.key)),
        "status": row.status,
        "version": row.version,
        "draft_changed": current is None or current.content_hash != row.draft_hash,
        "created_at": as_utc(row.created_at),
        "updated_at": as_utc(row.updated_at),
    }


def _detail(session: Session, row: JourneyDefinition) -> JourneyDetail:
    return JourneyDetail(**_public(row, store.current_version(session, row)), draft=row.draft)


def _version(row: JourneyVersion) -> dict[str, Any]:
    return {
        "key": row.key,
        "version": row.version,
        "content_hash": row.content_hash,
        "published_at": as_utc(row.published_at),
        "body": row.body,
    }


def _refused(err: Exception) -> HTTPException:
    if isinstance(err, store.NotFound):
        return HTTPException(status.HTTP_404_NOT_FOUND, str(err))
    if isinstance(err, DefinitionError):
        return unprocessable(err)
    return HTTPException(status.HTTP_409_CONFLICT, str(err))


REFUSALS = (store.NotFound, store.Conflict, DefinitionError)


@router.post(
    "",
    response_model=JourneyDetail,
    status_code=status.HTTP_201_CREATED,
    responses={
        409: {
            "model": ErrorBody,
            "description": "A defined journey has this key already, or it is a coded journey's",
        },
        422: PROBLEMS_422,
    },
)
def create_journey(
    session: SessionDep,
    settings: SettingsDep,
    definition: dict[str, Any] = Body(...),  # noqa: B008
) -> JourneyDetail:
    """Store a new definition as a draft, checked as `POST /journeys/check` checks it. Nobody
    is enrolled before it is published."""
    try:
        row = store.create_draft(
            session=session, data=definition, webhooks=set(settings.journey_webhooks)
        )
    except REFUSALS as err:
        raise _refused(err) from None
    return _detail(session, row)


@router.get("", response_model=list[JourneyPublic])
def list_journeys(session: SessionDep) -> list[JourneyPublic]:
    """Every journey: the coded ones a lead can be enrolled into (published, or archived when
    a journey written as data replaced them), then the defined ones with their status and current
    version."""
    coded = [
        JourneyPublic(
            key=entry.name,
            kind="coded",
            name=entry.name,
            status="archived" if entry.replaced_by else "published",
            version=None,
            replaced_by=entry.replaced_by or None,
        )
        for entry in map(catalogue.entry, catalogue.enrollable_names())
    ]
    defined = [
        JourneyPublic(**_public(row, store.current_version(session, row)))
        for row in store.all_definitions(session)
    ]
    return coded + defined


@router.get("/{key}", response_model=JourneyDetail, responses=NOT_FOUND)
def read_journey_definition(session: SessionDep, key: str = KeyPath) -> JourneyDetail:
    """A defined journey: its status, its current version and its draft."""
    try:
        return _detail(session, store.get(session, key))
    except REFUSALS as err:
        raise _refused(err) from None


@router.put(
    "/{key}",
    response_model=JourneyDetail,
    responses={
        **NOT_FOUND,
        409: {"model": ErrorBody, "description": "The journey is archived"},
        422: PROBLEMS_422,
    },
)
def replace_journey_draft(
    session: SessionDep,
    settings: SettingsDep,
    key: str = KeyPath,
    definition: dict[str, Any] = Body(...),  # noqa: B008
) -> JourneyDetail:
    """Replace the draft (its `key` is the path's). The published versions do not change:
    publish the draft to make it the next one."""
    try:
        row = store.replace_draft(
            session=session, key=key, data=definition, webhooks=set(settings.journey_webhooks)
        )
    except REFUSALS as err:
        raise _refused(err) from None
    return _detail(session, row)


@router.post(
    "/{key}/publish",
    response_model=PublishedPublic,
    responses={
        **NOT_FOUND,
        200: {"model": PublishedPublic, "description": "The draft was the current version"},
        201: {"model": PublishedPublic, "description": "A new version was published"},
        409: {"model": ErrorBody, "description": "The journey is archived"},
        422: PROBLEMS_422,
    },
    status_code=status.HTTP_201_CREATED,
)
def publish_journey(session: SessionDep, settings: SettingsDep, key: str = KeyPath):
    """Check the draft again (a template may have gone) and publish it as the next version,
    written once and never changed. A draft that says what the current version says publishes
    nothing: the answer is that version (200). Two publishes at once make one version."""
    try:
        published = store.publish(session=session, key=key, webhooks=set(settings.journey_webhooks))
    except REFUSALS as err:
        raise _refused(err) from None
    body = PublishedPublic(**_version(published.version), created=published.created)
    if not published.created:
        return JSONResponse(body.model_dump(mode="json"), status_code=status.HTTP_200_OK)
    return body


def _move(action: str, summary: str):
    def endpoint(session: SessionDep, key: str = KeyPath) -> JourneyDetail:
        try:
            return _detail(session, store.move(session=session, key=key, action=action))
        except REFUSALS as err:
            raise _refused(err) from None

    endpoint.__name__ = f"{action}_journey"
    endpoint.__doc__ = summary
    router.add_api_route(
        f"/{{key}}/{action}",
        endpoint,
        methods=["POST"],
        response_model=JourneyDetail,
        responses={
            **NOT_FOUND,
            409: {
                "model": ErrorBody,
                "description": "The journey was never published, or it is archived",
            },
        },
    )


_move(
    "pause",
    "No new entries (enrollment answers 409); the leads in it go on to its end. Pausing a "
    "paused journey changes nothing.",
)
_move("resume", "New entries again, into the current version.")
_move(
    "archive",
    "No new entries, for good: an archived journey is not published or resumed again, and its "
    "key is not reused (its versions and the messages sent under it keep it). The leads in it "
    "go on to its end. To run it again, create it under a new key.",
)


@router.get("/{key}/versions", response_model=list[VersionPublic], responses=NOT_FOUND)
def list_versions(session: SessionDep, key: str = KeyPath) -> list[VersionPublic]:
    """The journey's published versions, oldest first: each as it was published, never
    changed (a lead keeps the version it entered with)."""
    try:
        return [VersionPublic(**_version(v)) for v in store.versions(session, key)]
    except REFUSALS as err:
        raise _refused(err) from None

"""Topics and a lead's preferences, for operators: ``GET /topics`` (the topics file, as the
preference page offers it), ``GET``/``PUT /leads/{id}/preferences`` (the lead's topics, pace and
channels; a change is recorded with the evidence "api", and audited)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlmodel import Session

from api.crud import get_lead_or_404
from api.deps import ActorDep, SessionDep, SettingsDep, require_api_key
from api.errors import unprocessable, validation_response
from api.schemas import PreferencesPublic, PreferencesUpdate, TopicPublic
from relance.domain.settings import Settings
from relance.services import preferences

router = APIRouter(tags=["topics"], dependencies=[Depends(require_api_key)])

NO_LEAD = {404: {"description": "No lead with this id"}}


@router.get("/topics", response_model=list[TopicPublic])
def list_topics(settings: SettingsDep) -> list[TopicPublic]:
    """The topics marketing messages are about (config/topics.yaml), in the file's order."""
    return [TopicPublic(**t.model_dump()) for t in settings.topics().topics]


def _public(chosen: preferences.Preferences) -> PreferencesPublic:
    return PreferencesPublic(
        topics=chosen.topics,
        frequency=chosen.frequency,
        paused_until=chosen.paused_until,
        channels=chosen.channels,
    )


@router.get("/leads/{lead_id}/preferences", response_model=PreferencesPublic, responses=NO_LEAD)
def read_preferences(lead_id: str, session: SessionDep, settings: SettingsDep) -> PreferencesPublic:
    """The lead's topics (their choice, else the topic's default), pace and channels."""
    lead = get_lead_or_404(session=session, lead_id=lead_id)
    return _public(preferences.read(session, lead, settings.topics()))


@router.put(
    "/leads/{lead_id}/preferences",
    response_model=PreferencesPublic,
    responses={
        **NO_LEAD,
        422: validation_response("An unknown topic, or a value out of range: nothing changed"),
    },
)
def update_preferences(
    lead_id: str,
    change: PreferencesUpdate,
    session: SessionDep,
    settings: SettingsDep,
    actor: ActorDep,
) -> PreferencesPublic:
    """Change the lead's preferences as the lead asked (by phone, by mail to support...): the
    consent ledger records each topic's and channel's change with the source "api"."""
    return _public(_update(session, lead_id, change, settings, actor))


def _update(
    session: Session, lead_id: str, body: PreferencesUpdate, settings: Settings, actor: str
) -> preferences.Preferences:
    topics = settings.topics()
    for key in body.topics or {}:
        if topics.get(key) is None:
            raise unprocessable(
                f"no topic {key!r}: the topics are {', '.join(topics.keys)}", "body", "topics", key
            )
    lead = get_lead_or_404(session=session, lead_id=lead_id)
    change = preferences.Change(
        topics=dict(body.topics or {}),
        frequency=body.frequency,
        pause_weeks=body.pause_weeks,
        channels=dict(body.channels or {}),
    )
    return preferences.save(
        session,
        lead,
        topics,
        change,
        preferences.Evidence(source="api", actor=actor),
        suppression_key=settings.suppression_hash_key,
    )

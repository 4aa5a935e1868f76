"""Broadcasts: check a campaign, store it and start its workflow (``POST /broadcasts``); what it
looks like to a reader (``GET /broadcasts/{id}``). Every check happens before anything is stored
or started: a broadcast that cannot go out is refused with the reason (``BroadcastError``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session
from temporalio.client import Client, WorkflowHandle

from relance.contracts import catalogue
from relance.contracts.channels import UnknownChannel, template_file
from relance.contracts.channels import channel as channel_of
from relance.domain.audiences import KINDS, Audience, AudienceError, audience_size
from relance.domain.models import Broadcast, as_utc, utcnow
from relance.domain.rendering import MESSAGE_VARIABLES, TEMPLATES_DIR, template_variables
from relance.domain.settings import Settings
from relance.services.journeys import start_journey

ENTRY = catalogue.entry("broadcast")


class BroadcastError(ValueError):
    """The broadcast cannot go out as asked; the message names the problem, ``field`` the part
    of the request at fault."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass
class BroadcastSpec:
    audience: Audience
    template: str
    channel: str = "email"
    topic: str | None = None
    send_at: datetime | None = None  # None: now
    per_hour: int = 1000


def workflow_id(broadcast_id: str) -> str:
    return ENTRY.workflow_id(broadcast_id=broadcast_id)


def check_template(channel: str, template: str) -> None:
    """The channel exists and has this template (``templates/<channel>/...``)."""
    try:
        path = template_file(channel, template)
    except UnknownChannel as err:
        raise BroadcastError(str(err), "channel") from None
    if "/" in template or "\\" in template or template.startswith(("_", ".")):
        raise BroadcastError(f"{template!r} is not a template name", "template")
    if not (TEMPLATES_DIR / path).is_file():
        raise BroadcastError(
            f"no {channel} template named {template!r} (templates/{path})", "template"
        )
    # A broadcast's message is about the lead alone: a template that needs an event or a cart
    # (an event journey's reminder) could not be rendered for anyone.
    needs = template_variables(path) - MESSAGE_VARIABLES
    if needs:
        raise BroadcastError(
            f"the template {template!r} needs {', '.join(sorted(needs))}, which a broadcast's "
            "message does not have (it is about the lead alone)",
            "template",
        )


def check(session: Session, spec: BroadcastSpec) -> int:
    """Raise BroadcastError naming what is wrong; else the audience's size now."""
    if spec.audience.kind not in KINDS:
        raise BroadcastError(
            f"an audience is a list or a segment, not {spec.audience.kind!r}", "audience"
        )
    if spec.per_hour <= 0:
        raise BroadcastError(f"per_hour must be at least 1, got {spec.per_hour}", "per_hour")
    try:
        channel_of(spec.channel)
    except UnknownChannel as err:
        raise BroadcastError(str(err), "channel") from None
    check_template(spec.channel, spec.template)
    try:
        return audience_size(session, spec.audience)
    except AudienceError as err:
        raise BroadcastError(str(err), "audience") from None


def create(session: Session, spec: BroadcastSpec) -> Broadcast:
    """Check and store the broadcast (committed); its workflow is started by ``start``."""
    size = check(session, spec)
    broadcast = Broadcast(
        audience_kind=spec.audience.kind,
        audience_id=spec.audience.id,
        template=spec.template,
        channel=spec.channel,
        topic=spec.topic,
        send_at=as_utc(spec.send_at) or utcnow(),
        per_hour=spec.per_hour,
        audience_size=size,
    )
    session.add(broadcast)
    session.commit()
    session.refresh(broadcast)
    return broadcast


async def start(client: Client, settings: Settings, broadcast: Broadcast) -> WorkflowHandle:
    """The broadcast's workflow, ``broadcast-<id>``."""
    return await start_journey(
        client,
        settings,
        ENTRY,
        keys={"broadcast_id": broadcast.id},
        knobs={"per_hour": broadcast.per_hour, "send_at": as_utc(broadcast.send_at)},
    )

"""Journeys written as data (relance/domain/definitions.py), through the API.

    GET  /journeys/schema   the definition's JSON Schema (an editor validates against it)
    POST /journeys/check    a definition checked as publishing checks it: 200 with no problem,
                            or 422 naming each node at fault and what is wrong

Checking changes nothing. Drafts, published versions and their lifecycle:
api/routes/journey_definitions.py (registered after this router: ``/journeys/schema`` and
``/journeys/check`` are not keys).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, status
from pydantic import BaseModel

from api.deps import SessionDep, SettingsDep, require_api_key
from api.errors import validation_response
from relance.domain.definitions import json_schema
from relance.domain.models import Segment
from relance.services.definitions import (
    DefinitionError,
    checked,
    known_templates,
    trigger_problems,
)

router = APIRouter(prefix="/journeys", tags=["journeys"], dependencies=[Depends(require_api_key)])


class DefinitionChecked(BaseModel):
    key: str
    nodes: int
    problems: list[str]  # none: it may be published


def unprocessable(err: DefinitionError) -> HTTPException:
    """A definition that cannot be published: a 422, one entry per problem naming its node."""
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        [
            {
                "loc": ["body", "triggers", p.trigger]
                if p.trigger is not None
                else ["body", "nodes", p.node]
                if p.node
                else ["body"],
                "msg": str(p),
                "type": "value_error",
            }
            for p in err.problems[:20]
        ],
    )


PROBLEMS_422 = validation_response(
    "The definition cannot be published: one entry per problem, its `loc` naming the "
    'node (`["body", "nodes", "<node id>"]`) or the entry trigger '
    '(`["body", "triggers", <index>]`) and its `msg` what is wrong'
)


@router.get("/schema", response_model=dict[str, Any])
def read_definition_schema() -> dict[str, Any]:
    """The JSON Schema of a journey definition (YAML or JSON), for editors and CI."""
    return json_schema()


@router.post(
    "/check",
    response_model=DefinitionChecked,
    responses={422: PROBLEMS_422},
)
def check_definition(
    settings: SettingsDep,
    session: SessionDep,
    definition: dict[str, Any] = Body(...),  # noqa: B008
) -> DefinitionChecked:
    """Check a definition as publishing will: its shape, its graph (dangling edges, unreachable
    nodes, branches that never end, loops with no wait), its experiments, its templates and its
    conditions' attributes and events (against the lead schema), its triggers' events,
    attributes and segments, its messages' topics (against the topics file), its updates'
    attributes and values, its waits' custom events, its tasks' templates, its webhook calls'
    endpoints (`RELANCE_JOURNEY_WEBHOOKS`) and the attributes they send and map."""
    try:
        parsed = checked(
            definition,
            templates=known_templates(),
            lead_schema=settings.lead_schema(),
            topics=settings.topics(),
            webhooks=set(settings.journey_webhooks),
        )
        segments = trigger_problems(
            parsed, settings.lead_schema(), lambda s: session.get(Segment, s) is not None
        )
        if segments:
            raise DefinitionError(segments)
    except DefinitionError as err:
        raise unprocessable(err) from None
    return DefinitionChecked(key=parsed.key, nodes=len(parsed.nodes), problems=[])

"""Starting journeys and reading their state, for the API.

Each journey is declared once, in the catalogue (relance/contracts/catalogue.py): its workflow,
how its id is built, its input, its rules; relance/services/journeys.py starts it. Here: what the
API's requests do with them (enroll, signal-with-start the cart and browse journeys, follow an
order, tell the journeys a goal was reached) and how a journey's state reads.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from collections.abc import Iterable
from functools import cache
from typing import Any, get_type_hints

from fastapi import HTTPException
from fastapi import status as http_status
from sqlmodel import Session
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.converter import AdvancedJSONEncoder
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.schemas import EnrollmentPublic, JourneyStatusPublic
from relance.contracts import catalogue
from relance.contracts.definitions import workflow_id
from relance.contracts.signals import (
    CART_UPDATED,
    GOAL_REACHED,
    PURCHASED,
    CartSignal,
    GoalSignal,
    PageViewSignal,
    PurchaseSignal,
)
from relance.domain import journey_rules
from relance.domain.settings import Settings
from relance.services import journey_store, journeys
from relance.services.definitions import entry_for
from relance.services.journeys import cooldown_check, start_journey
from relance.services.nurturing import SequenceError, load_sequence
from workflows.nurturing import NurturingStatus
from workflows.steps import JourneyStatus
from workflows.welcome import WelcomeStatus

NURTURING = catalogue.entry("nurturing")


def nurturing_sequence(settings: Settings) -> Any:
    """The sequence file is read (and checked) at each enrollment and travels in the input."""
    try:
        return load_sequence(settings.nurturing_sequence_file)
    except SequenceError as err:
        raise HTTPException(
            http_status.HTTP_500_INTERNAL_SERVER_ERROR,
            f"the nurturing sequence file is invalid, nobody can be enrolled: {err}",
        ) from err


# How enrollment reads each knob a catalogue entry ``requires``.
ENROLLMENT_KNOBS = {"sequence": nurturing_sequence}


def exclusion_reason(*, session: Session, lead_id: str, rules: tuple[str, ...]) -> str:
    """Why the lead may not enter a journey with these exclusions; "" when it may."""
    return journey_rules.exclusion_reason(session, lead_id, rules)


def is_coded(journey: str) -> bool:
    """A journey of the catalogue the API enrolls into; any other name is a defined journey's
    key (relance/services/journey_store.py)."""
    return journey in catalogue.enrollable_names()


async def enroll(
    client: Client,
    settings: Settings,
    *,
    lead_id: str,
    score: int,
    journey: str,
    db: Any = None,
    new_lead: bool = False,
) -> EnrollmentPublic:
    """Enroll the lead as relance/services/journeys.py ``enroll`` does, exclusions checked with
    ``db``. A journey whose configuration is broken (the nurturing sequence file) is a 500.

    A defined journey (``journey`` is its key) is entered at its current published version,
    which travels in the workflow's input (a lead keeps the version it entered with), under its
    definition's rules; one that does not exist or was never published is a 404, a paused or
    archived one a 409."""

    async def excluded(rules: tuple[str, ...]) -> str:
        return await db.run(exclusion_reason, lead_id=lead_id, rules=rules)

    defined: dict[str, Any] = {}
    if not is_coded(journey):
        try:
            target = await db.run(journey_store.enrollable, key=journey)
        except journey_store.NotFound as err:
            raise HTTPException(http_status.HTTP_404_NOT_FOUND, str(err)) from None
        except journey_store.Conflict as err:
            raise HTTPException(http_status.HTTP_409_CONFLICT, str(err)) from None
        defined = {
            "journey": entry_for(target.key),
            "keys": {"key": target.key},
            "inputs": {"definition": target.compiled},
            "rules": target.rules,
        }
    enrollment = await journeys.enroll(
        client,
        settings,
        lead_id=lead_id,
        score=score,
        excluded=excluded if db is not None else None,
        knobs=ENROLLMENT_KNOBS,
        new_lead=new_lead,
        **({"journey": journey} | defined),
    )
    return EnrollmentPublic(
        lead_id=enrollment.lead_id,
        journey=enrollment.journey,
        workflow_id=enrollment.workflow_id,
        run_id=enrollment.run_id,
        status=enrollment.status,
        detail=enrollment.detail,
    )


async def journey_status(
    client: Client, *, lead_id: str, journey: str, lead_score: int
) -> JourneyStatusPublic | None:
    """The journey's state (query), or None when the lead was never enrolled. Its ``score`` is
    the lead's (``lead_score``, from the database: the authoritative one); what the journey knows
    of it (its query, its ``Score`` search attribute) is ``journey_score``: the journey reads the
    score when it needs it, and nothing tells it of an open or a page view scored meanwhile."""
    if is_coded(journey):
        entry = catalogue.entry(journey)
        handle = client.get_workflow_handle(entry.workflow_id(lead_id=lead_id))
    else:  # a defined journey: the interpreter's run for this key
        entry = catalogue.entry("defined")
        handle = client.get_workflow_handle(entry.workflow_id(key=journey, lead_id=lead_id))
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    status = await handle.query("status", result_type=status_type(entry))
    result = None
    if description.status == WorkflowExecutionStatus.COMPLETED:
        result = await handle.result()  # as the journey returned it (its JSON)
    welcome = status if isinstance(status, WelcomeStatus) else None
    nurturing = status if isinstance(status, NurturingStatus) else None
    scored = welcome or nurturing  # the journeys that keep the score they saw
    return JourneyStatusPublic(
        lead_id=lead_id,
        journey=journey,
        workflow_id=handle.id,
        run_id=description.run_id,
        status=description.status.name,
        step=status.step,
        opened=welcome.opened if welcome else None,
        clicked=welcome.clicked if welcome else None,
        score=lead_score,
        journey_score=scored.score if scored else None,
        messages=_as_json(status.messages),
        gate=nurturing.gate if nurturing else None,
        downloads=nurturing.downloads if nurturing else None,
        open_tasks=_as_json(nurturing.open_tasks) if nurturing else None,
        result=result,
    )


@cache
def status_type(entry: catalogue.Journey) -> type[JourneyStatus]:
    """What the journey's ``status`` query answers: the type its workflow class declares (every
    journey's status derives from ``JourneyStatus``: its step and messages)."""
    module, _, name = entry.workflow.partition(":")
    query = getattr(importlib.import_module(module), name).status
    return get_type_hints(query, vars(sys.modules[query.__module__])).get("return", JourneyStatus)


def _as_json(items: list) -> list[dict]:
    """Dataclasses as the journey's own JSON has them (times in ISO 8601, as the payload held)."""
    return json.loads(json.dumps(items, cls=AdvancedJSONEncoder))


async def cart_updated(
    client: Client, settings: Settings, *, lead_id: str, cart_id: str, items: int
) -> str | None:
    """Signal-with-start: the first update starts the lead's cart journey, later ones reach it.
    Atomic on the server, so concurrent or repeated events make one journey. An emptied cart
    only reaches a running journey (it ends it); it never starts one."""
    workflow_id = catalogue.entry("cart").workflow_id(lead_id=lead_id)
    signal = CartSignal(cart_id=cart_id, item_count=items)
    if items == 0:
        try:
            await client.get_workflow_handle(workflow_id).signal(CART_UPDATED, signal)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return None
        return workflow_id
    await start_journey(client, settings, "cart", lead_id=lead_id, start_signal_arg=signal)
    return workflow_id


async def purchased(client: Client, settings: Settings, *, lead_id: str, order_id: str) -> str:
    """End the lead's cart journey, if any, and start the order's follow-up (once per order)."""
    try:
        await client.get_workflow_handle(
            catalogue.entry("cart").workflow_id(lead_id=lead_id)
        ).signal(PURCHASED, PurchaseSignal(order_id))
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
    await tell_nurturing(
        client, lead_id, PURCHASED, PurchaseSignal(order_id)
    )  # buying on their own: goal reached
    try:
        handle = await start_journey(
            client, settings, "purchase", lead_id=lead_id, keys={"order_id": order_id}
        )
        return handle.id
    except WorkflowAlreadyStartedError:  # the shop retried: the order is followed up already
        return catalogue.entry("purchase").workflow_id(order_id=order_id)


async def tell_nurturing(client: Client, lead_id: str, signal: str, *args: Any) -> str | None:
    """Signal the lead's nurturing journey, if one runs; returns its workflow id, or None."""
    workflow_id = NURTURING.workflow_id(lead_id=lead_id)
    try:
        await client.get_workflow_handle(workflow_id).signal(signal, *args)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return None
    return workflow_id


async def page_viewed(
    client: Client, settings: Settings, *, lead_id: str, category: str
) -> tuple[str | None, str]:
    """Signal-with-start the lead's browse-abandonment journey (``browse-<lead id>``).
    Returns (its workflow id, ""), or (None, why) when none runs and the lead left the previous
    one within the journey's cooldown (relance/domain/journey_rules.py): then no new one starts."""
    browse = catalogue.entry("browse")
    workflow_id = browse.workflow_id(lead_id=lead_id)
    refusal, _ = await cooldown_check(
        client, settings, journey=browse.label, workflow_id=workflow_id
    )
    if refusal:
        return None, refusal
    await start_journey(
        client,
        settings,
        browse,
        lead_id=lead_id,
        start_signal_arg=PageViewSignal(category=category),
    )
    return workflow_id, ""


async def goal_reached(
    client: Client, *, lead_id: str, goal: str, source: str, defined: Iterable[str] = ()
) -> list[str]:
    """Tell every running journey of the lead that declares ``goal`` to end as converted: the
    coded ones, and the defined journeys ``defined`` (their keys: those whose definition
    declares the goal, ``journey_store.keys_with_goal``). Returns the journeys told; the lead's
    other (or closed) journeys are left alone."""

    async def one(workflow_id: str) -> str | None:
        try:
            await client.get_workflow_handle(workflow_id).signal(
                GOAL_REACHED, GoalSignal(goal, source)
            )
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return None
        return workflow_id

    return [
        w
        for w in await asyncio.gather(
            *(one(w) for w in catalogue.journeys_with_goal(lead_id, goal)),
            *(one(workflow_id(key, lead_id)) for key in defined),
        )
        if w
    ]

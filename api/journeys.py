"""Starting journeys and reading their state, for the API.

Each journey the API can start is declared once here: its workflow, how its id is built from
the lead id, what its input is, and what happens when the lead is enrolled again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import HTTPException
from fastapi import status as http_status
from sqlmodel import Session
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.converter import AdvancedJSONEncoder
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.schemas import EnrollmentPublic, JourneyStatusPublic
from relance.contracts import search_attributes as sa
from relance.contracts.signals import (
    CART_UPDATED,
    GOAL_REACHED,
    PAGE_VIEWED,
    PURCHASED,
    CartSignal,
    GoalSignal,
    PageViewSignal,
    PurchaseSignal,
)
from relance.domain import journey_rules
from relance.domain.models import utcnow
from relance.domain.settings import Settings
from relance.services.nurturing import SequenceError, load_sequence
from workflows.abandoned_cart import AbandonedCartJourney, CartInput
from workflows.browse import BrowseAbandonmentJourney, BrowseInput
from workflows.goals import journeys_with_goal
from workflows.nurturing import WORKFLOW_ID_PREFIX as NURTURE
from workflows.nurturing import LeadNurturingJourney, NurturingInput, NurturingStatus
from workflows.purchase import PurchaseFollowUp, PurchaseInput
from workflows.steps import JourneyStatus
from workflows.welcome import WelcomeInput, WelcomeJourney, WelcomeOutcome, WelcomeStatus


@dataclass(frozen=True)
class JourneySpec:
    name: str
    run: Callable[..., Any]
    status_type: type[JourneyStatus]  # what its ``status`` query answers
    # (settings, lead id, reenrolled) -> the input; ``reenrolled``: the lead went through it before.
    make_input: Callable[..., Any]
    id_prefix: str = ""  # the workflow id is "<id_prefix or name>-<lead id>"
    # Re-enrollment, cooldown and exclusions: relance/domain/journey_rules.py (Settings.rules_for(name)).
    # Outcomes after which a journey that allows no re-enrollment may still run again for the lead
    # (the welcome: a lead who let the double opt-in confirmation lapse and signs up again gets a
    # new confirmation email).
    again_after: tuple[Any, ...] = ()  # the journey's outcome enum members

    def workflow_id(self, lead_id: str) -> str:
        return f"{self.id_prefix or self.name}-{lead_id}"


def nurturing_input(settings: Settings, lead_id: str, reenrolled: bool = False) -> NurturingInput:
    """The sequence file is read (and checked) at each enrollment and travels in the input."""
    try:
        sequence = load_sequence(settings.nurturing_sequence_file)
    except SequenceError as err:
        raise HTTPException(
            http_status.HTTP_500_INTERNAL_SERVER_ERROR,
            f"the nurturing sequence file is invalid, nobody can be enrolled: {err}",
        ) from err
    return NurturingInput(
        lead_id=lead_id,
        sequence=sequence,
        mql_threshold=settings.score_mql_threshold,
        task_due_business_days=settings.sales_task_due_business_days,
        reenrolled=reenrolled,
    )


JOURNEYS: dict[str, JourneySpec] = {
    "welcome": JourneySpec(
        name="welcome",
        run=WelcomeJourney.run,
        status_type=WelcomeStatus,
        make_input=lambda s, lead_id, reenrolled=False: WelcomeInput(
            lead_id=lead_id,
            relance_after_hours=s.welcome_relance_after_hours,
            relance_by_sms=s.welcome_relance_by_sms,
            relance_channels=list(s.welcome_relance_channels) or None,
            engagement_window_days=s.welcome_engagement_window_days,
            confirm_within_hours=s.double_opt_in_hours,
        ),
        again_after=(WelcomeOutcome.NOT_CONFIRMED,),
    ),
    # Again after its cooldown (a second run keys its sends apart: NurturingInput.reenrolled).
    "nurturing": JourneySpec(
        name="nurturing",
        run=LeadNurturingJourney.run,
        status_type=NurturingStatus,
        make_input=nurturing_input,
        id_prefix=NURTURE,
    ),
}


# The lead's journeys, by id prefix, counted against RELANCE_MAX_CONCURRENT_JOURNEYS (event journeys,
# one per registration, are not counted: the lead asked for them).
COUNTED_PREFIXES = (
    "welcome",
    NURTURE,
    "cart",
    "reengage",
    "browse",
    "premium",
    "scenario-newsletter",
    "scenario-white_paper",
)


def exclusion_reason(*, session: Session, lead_id: str, rules: tuple[str, ...]) -> str:
    """Why the lead may not enter a journey with these exclusions; "" when it may."""
    return journey_rules.exclusion_reason(session, lead_id, rules)


async def describe(client: Client, workflow_id: str) -> WorkflowExecutionDescription | None:
    """The latest run of ``workflow_id`` (describe is consistent, unlike visibility), or None."""
    try:
        return await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return None


async def cooldown_check(
    client: Client,
    settings: Settings,
    *,
    journey: str,
    workflow_id: str,
    now: datetime | None = None,
) -> tuple[str, WorkflowExecutionDescription | None]:
    """(why the lead may not start ``workflow_id`` again now, "" if it may; the previous run).
    Only a closed previous run counts: a running one is the journey the lead is in."""
    cooldown = journey_rules.cooldown_of(
        settings.rules_for(journey), settings.reenroll_cooldown_days
    )
    previous = await describe(client, workflow_id)
    if (
        previous is None
        or previous.status == WorkflowExecutionStatus.RUNNING
        or cooldown <= timedelta(0)
    ):
        return "", previous
    return journey_rules.cooldown_refusal(
        journey=journey, closed_at=previous.close_time, cooldown=cooldown, now=now or utcnow()
    ), previous


async def running_journeys(client: Client, lead_id: str) -> list[str]:
    async def one(workflow_id: str) -> str | None:
        try:
            description = await client.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return None
        return workflow_id if description.status == WorkflowExecutionStatus.RUNNING else None

    return [
        w for w in await asyncio.gather(*(one(f"{p}-{lead_id}") for p in COUNTED_PREFIXES)) if w
    ]


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
    """Start the journey unless an enrollment rule refuses it: an exclusion (checked with ``db``),
    the journey's cooldown since the lead's previous run of it closed, or the lead already in
    ``max_concurrent_journeys`` journeys. A journey that allows no re-enrollment (the welcome)
    answers ``already_enrolled`` once the lead went through it.

    ``new_lead``: the lead was created by this very request, so it has no previous run and is in
    no journey yet: the cooldown and concurrent-journeys lookups (describe calls) are skipped — at
    a sign-up burst they cost the Temporal server more than the start itself."""
    spec = JOURNEYS[journey]
    rules = settings.rules_for(journey)
    workflow_id = spec.workflow_id(lead_id)
    reason, previous = "", None
    if db is not None and rules.exclude:
        reason = await db.run(exclusion_reason, lead_id=lead_id, rules=rules.exclude)
    if not reason and rules.reenroll and not new_lead:
        reason, previous = await cooldown_check(
            client, settings, journey=journey, workflow_id=workflow_id
        )
    if not reason and settings.max_concurrent_journeys > 0 and not new_lead:
        running = [w for w in await running_journeys(client, lead_id) if w != workflow_id]
        if len(running) >= settings.max_concurrent_journeys:
            reason = (
                f"the lead is already in {len(running)} journeys (at most {settings.max_concurrent_journeys}): "
                + ", ".join(sorted(running))
            )
    if reason:
        return EnrollmentPublic(
            lead_id=lead_id,
            journey=journey,
            workflow_id=workflow_id,
            status="refused",
            detail=f"not enrolled: {reason}",
        )
    reenrolled = previous is not None and previous.status != WorkflowExecutionStatus.RUNNING

    def start(reuse_policy: WorkflowIDReusePolicy):
        return start_journey(
            client,
            settings,
            journey=journey,
            lead_id=lead_id,
            score=score,
            reuse_policy=reuse_policy,
            reenrolled=reenrolled,
        )

    try:
        try:
            # Running already: refused (409). Closed: again only if the journey allows it (cooldown checked above).
            handle = await start(
                WorkflowIDReusePolicy.ALLOW_DUPLICATE
                if rules.reenroll
                else WorkflowIDReusePolicy.REJECT_DUPLICATE
            )
        except WorkflowAlreadyStartedError:
            if not await _may_run_again(client, spec, workflow_id):
                raise
            handle = await start(
                WorkflowIDReusePolicy.ALLOW_DUPLICATE
            )  # still refused if one runs (FAIL)
    except WorkflowAlreadyStartedError as err:
        description = await client.get_workflow_handle(workflow_id).describe()
        running = description.status == WorkflowExecutionStatus.RUNNING
        detail = (
            f"lead {lead_id} is already in the {journey} journey"
            if running
            else f"lead {lead_id} already went through the {journey} journey (it ended: {description.status.name});"
            " it allows no re-enrollment"
        )
        return EnrollmentPublic(
            lead_id=lead_id,
            journey=journey,
            workflow_id=workflow_id,
            run_id=err.run_id,
            status="already_enrolled",
            detail=detail,
        )
    detail = f"{journey} journey started" + (
        " again (the lead went through it before)" if reenrolled else ""
    )
    return EnrollmentPublic(
        lead_id=lead_id,
        journey=journey,
        workflow_id=workflow_id,
        run_id=handle.result_run_id,
        status="started",
        detail=detail,
    )


async def start_journey(
    client: Client,
    settings: Settings,
    *,
    journey: str,
    lead_id: str,
    score: int,
    reuse_policy: WorkflowIDReusePolicy,
    reenrolled: bool = False,
) -> WorkflowHandle:
    """Start the lead's ``journey`` as every enrollment does: its id, input, search attributes
    (journey, lead, step, score), summary and a one-year execution timeout. A running journey of
    that id is never started twice (``WorkflowAlreadyStartedError``)."""
    spec = JOURNEYS[journey]
    return await client.start_workflow(
        spec.run,
        spec.make_input(settings, lead_id, reenrolled),
        id=spec.workflow_id(lead_id),
        task_queue=settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        id_reuse_policy=reuse_policy,
        execution_timeout=timedelta(days=365),
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(sa.JOURNEY, journey),
                SearchAttributePair(sa.LEAD_ID, lead_id),
                SearchAttributePair(sa.STEP, "starting"),
                SearchAttributePair(sa.SCORE, score),
            ]
        ),
        static_summary=f"{journey} journey for lead {lead_id}",
    )


async def _may_run_again(client: Client, spec: JourneySpec, workflow_id: str) -> bool:
    """Whether the journey's last run ended (completed) with one of ``spec.again_after``."""
    if not spec.again_after:
        return False
    handle = client.get_workflow_handle_for(spec.run, workflow_id)
    if (await handle.describe()).status != WorkflowExecutionStatus.COMPLETED:
        return False
    return (await handle.result()).outcome in spec.again_after


async def journey_status(
    client: Client, *, lead_id: str, journey: str, lead_score: int
) -> JourneyStatusPublic | None:
    """The journey's state (query), or None when the lead was never enrolled. Its ``score`` is
    the lead's (``lead_score``, from the database: the authoritative one); what the journey knows
    of it (its query, its ``Score`` search attribute) is ``journey_score``: the journey reads the
    score when it needs it, and nothing tells it of an open or a page view scored meanwhile."""
    spec = JOURNEYS[journey]
    handle = client.get_workflow_handle(spec.workflow_id(lead_id))
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    status = await handle.query("status", result_type=spec.status_type)
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


def _as_json(items: list) -> list[dict]:
    """Dataclasses as the journey's own JSON has them (times in ISO 8601, as the payload held)."""
    return json.loads(json.dumps(items, cls=AdvancedJSONEncoder))


def _attributes(journey: str, lead_id: str) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(sa.JOURNEY, journey),
            SearchAttributePair(sa.LEAD_ID, lead_id),
            SearchAttributePair(sa.STEP, "starting"),
        ]
    )


def cart_input(settings: Settings, lead_id: str) -> CartInput:
    return CartInput(
        lead_id=lead_id,
        reminder_delays_hours=list(settings.cart_reminder_delays_hours),
        last_reminder_percent_off=settings.cart_last_reminder_percent_off,
    )


async def cart_updated(
    client: Client, settings: Settings, *, lead_id: str, cart_id: str, items: int
) -> str | None:
    """Signal-with-start: the first update starts the lead's cart journey, later ones reach it.
    Atomic on the server, so concurrent or repeated events make one journey. An emptied cart
    only reaches a running journey (it ends it); it never starts one."""
    workflow_id = f"cart-{lead_id}"
    signal = CartSignal(cart_id=cart_id, item_count=items)
    if items == 0:
        try:
            await client.get_workflow_handle(workflow_id).signal(CART_UPDATED, signal)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return None
        return workflow_id
    await client.start_workflow(
        AbandonedCartJourney.run,
        cart_input(settings, lead_id),
        id=workflow_id,
        task_queue=settings.temporal_task_queue,
        start_signal=CART_UPDATED,
        start_signal_args=[signal],
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,  # running: just deliver the signal
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,  # a new cart after the last journey ended
        search_attributes=_attributes("cart", lead_id),
        static_summary=f"abandoned-cart journey for lead {lead_id}",
    )
    return workflow_id


async def purchased(client: Client, settings: Settings, *, lead_id: str, order_id: str) -> str:
    """End the lead's cart journey, if any, and start the order's follow-up (once per order)."""
    try:
        await client.get_workflow_handle(f"cart-{lead_id}").signal(
            PURCHASED, PurchaseSignal(order_id)
        )
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
    await tell_nurturing(
        client, lead_id, PURCHASED, PurchaseSignal(order_id)
    )  # buying on their own: goal reached
    workflow_id = f"purchase-{order_id}"
    try:
        await client.start_workflow(
            PurchaseFollowUp.run,
            PurchaseInput(
                order_id=order_id, first_purchase_percent_off=settings.first_purchase_percent_off
            ),
            id=workflow_id,
            task_queue=settings.temporal_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=_attributes("purchase", lead_id),
            static_summary=f"follow-up of order {order_id} for lead {lead_id}",
        )
    except WorkflowAlreadyStartedError:
        pass  # the shop retried: the order is followed up already
    return workflow_id


async def tell_nurturing(client: Client, lead_id: str, signal: str, *args: Any) -> str | None:
    """Signal the lead's nurturing journey, if one runs; returns its workflow id, or None."""
    workflow_id = f"{NURTURE}-{lead_id}"
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
    workflow_id = f"browse-{lead_id}"
    refusal, _ = await cooldown_check(client, settings, journey="browse", workflow_id=workflow_id)
    if refusal:
        return None, refusal
    await client.start_workflow(
        BrowseAbandonmentJourney.run,
        BrowseInput(lead_id=lead_id),
        id=workflow_id,
        task_queue=settings.temporal_task_queue,
        start_signal=PAGE_VIEWED,
        start_signal_args=[PageViewSignal(category=category)],
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        search_attributes=_attributes("browse", lead_id),
        static_summary=f"browse-abandonment journey for lead {lead_id}",
    )
    return workflow_id, ""


async def goal_reached(client: Client, *, lead_id: str, goal: str, source: str) -> list[str]:
    """Tell every running journey of the lead that declares ``goal`` to end as converted.
    Returns the journeys told; the lead's other (or closed) journeys are left alone."""

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
        w for w in await asyncio.gather(*(one(w) for w in journeys_with_goal(lead_id, goal))) if w
    ]

"""Starting journeys: one ``start_journey`` for every journey of the catalogue
(relance/contracts/catalogue.py), and the enrollment rules (``enroll``) the API and the journeys
that enroll each other apply.

A journey is started by its workflow type name, with the input its entry builds, so nothing here
imports a workflow: the worker decodes the input into the workflow's input dataclass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from relance.contracts import catalogue
from relance.contracts import search_attributes as sa
from relance.contracts.catalogue import Journey
from relance.domain import journey_rules
from relance.domain.journey_rules import JourneyRules
from relance.domain.models import utcnow
from relance.domain.settings import Settings


# Enrollment rules ---------------------------------------------------------------------------------
def check_topics(settings: Settings) -> None:
    """The topics file is valid and declares every topic the catalogue's journeys send on: a
    mistake stops the worker or the API at start (``TopicsError``, with the file and the place)."""
    settings.topics().check_named(
        catalogue.topics_named(), f"the journeys' catalogue (with {settings.topics_file})"
    )


def default_rules(journey: str) -> JourneyRules:
    """The catalogue's default rules of the journeys labelled ``journey`` (messages.journey)."""
    return JourneyRules(**asdict(catalogue.default_rules(journey)))


def rules_for(
    settings: Settings, journey: str, default: JourneyRules | None = None
) -> JourneyRules:
    """The journey's enrollment rules: RELANCE_JOURNEY_RULES, else ``default`` (a defined
    journey's: its definition's ``rules``), else the catalogue's default."""
    return settings.journey_rules.get(journey) or default or default_rules(journey)


# Starting -----------------------------------------------------------------------------------------
async def start_journey(
    client: Client,
    settings: Settings,
    journey: str | Journey,
    *,
    lead_id: str = "",
    score: int | None = None,
    keys: dict[str, str] | None = None,
    knobs: dict[str, Any] | None = None,
    reuse_policy: WorkflowIDReusePolicy | None = None,
    execution_timeout: timedelta | None = None,
    start_signal_arg: Any = None,
) -> WorkflowHandle:
    """Start ``journey`` (a catalogue name or entry) for the lead as its entry says: its id (from
    ``lead_id`` and ``keys``), its input (from the settings, the lead id, the keys and
    ``knobs``), the id policies, the search attributes (Journey, LeadId, Step "starting", and
    ``score`` when the entry shows it), its summary and timeout. ``reuse_policy`` and
    ``execution_timeout`` override the entry's; ``start_signal_arg``: the argument of the
    entry's start signal (signal-with-start). A running journey of that id is refused with
    ``WorkflowAlreadyStartedError`` (conflict policy FAIL) or reached (USE_EXISTING)."""
    spec = catalogue.entry(journey) if isinstance(journey, str) else journey
    ids = {"lead_id": lead_id, **(keys or {})} if lead_id else dict(keys or {})
    input = spec.input(settings, **ids, **(knobs or {}))
    start = spec.start
    options: dict[str, Any] = {}
    if start.conflict is not None:
        options["id_conflict_policy"] = start.conflict
    if (reuse_policy or start.reuse) is not None:
        options["id_reuse_policy"] = reuse_policy or start.reuse
    if (execution_timeout or start.timeout) is not None:
        options["execution_timeout"] = execution_timeout or start.timeout
    if start.signal is not None:
        options["start_signal"] = start.signal
        options["start_signal_args"] = [start_signal_arg]
    if start.lead_attributes:
        pairs: list[SearchAttributePair] = [
            SearchAttributePair(sa.JOURNEY, spec.label),
            SearchAttributePair(sa.LEAD_ID, lead_id),
            SearchAttributePair(sa.STEP, "starting"),
        ]
        if start.score:
            pairs.append(SearchAttributePair(sa.SCORE, score or 0))
        options["search_attributes"] = TypedSearchAttributes(pairs)
    return await client.start_workflow(
        spec.workflow_type,
        input,
        id=spec.workflow_id(**ids),
        task_queue=settings.temporal_task_queue,
        static_summary=spec.summary.format_map({**input, **ids, "name": spec.name}),
        **options,
    )


# Enrolling (the rules) ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Enrollment:
    lead_id: str
    journey: str
    workflow_id: str
    status: str  # started | already_enrolled | refused
    detail: str
    run_id: str | None = None


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
    rules: JourneyRules | None = None,
) -> tuple[str, WorkflowExecutionDescription | None]:
    """(why the lead may not start ``workflow_id`` again now, "" if it may; the previous run).
    Only a closed previous run counts: a running one is the journey the lead is in. ``journey``:
    the rules' name (the entry's label); ``rules``: its rules when the caller has them."""
    cooldown = journey_rules.cooldown_of(
        rules or rules_for(settings, journey), settings.reenroll_cooldown_days
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
    """The lead's running journeys counted against RELANCE_MAX_CONCURRENT_JOURNEYS."""

    async def one(workflow_id: str) -> str | None:
        description = await describe(client, workflow_id)
        if description is None or description.status != WorkflowExecutionStatus.RUNNING:
            return None
        return workflow_id

    found = await asyncio.gather(*(one(w) for w in catalogue.counted_workflow_ids(lead_id)))
    return [w for w in found if w]


def replaced_refusal(spec: Journey) -> str:
    """Why a coded journey that a journey written as data replaced takes no new lead."""
    return (
        f"not enrolled: the {spec.name} journey takes no new leads; the journey "
        f"{spec.replaced_by} tells its story now: enroll into {spec.replaced_by} (the leads "
        f"already in {spec.name} go on to its end)"
    )


async def enroll(
    client: Client,
    settings: Settings,
    *,
    lead_id: str,
    score: int,
    journey: str | Journey,
    excluded: Callable[[tuple[str, ...]], Awaitable[str]] | None = None,
    knobs: Mapping[str, Callable[[Settings], Any]] | None = None,
    new_lead: bool = False,
    keys: dict[str, str] | None = None,
    inputs: Mapping[str, Any] | None = None,
    rules: JourneyRules | None = None,
) -> Enrollment:
    """Start the journey unless an enrollment rule refuses it: an exclusion (``excluded``: why
    the lead is excluded by these rules, "" if it is not), the journey's cooldown since the lead's
    previous run of it closed, or the lead already in ``max_concurrent_journeys`` journeys. A
    journey that allows no re-enrollment (the welcome) answers ``already_enrolled`` once the lead
    went through it. ``knobs``: how to read each knob a journey ``requires`` (its loader may
    raise: then nobody is enrolled).

    ``new_lead``: the lead was created by this very request, so it has no previous run and is in
    no journey yet: the cooldown and concurrent-journeys lookups (describe calls) are skipped — at
    a sign-up burst they cost the Temporal server more than the start itself.

    A journey written as data is given as its entry (``definitions.entry_for``), with its id
    ``keys``, its ``inputs`` (the compiled definition) and its definition's ``rules``, which
    RELANCE_JOURNEY_RULES overrides by its key as it does a coded journey's."""
    spec = catalogue.entry(journey) if isinstance(journey, str) else journey
    journey = journey if isinstance(journey, str) else spec.label
    rules = rules_for(settings, spec.label, rules)
    workflow_id = spec.workflow_id(lead_id=lead_id, **(keys or {}))
    if spec.replaced_by:
        return Enrollment(lead_id, journey, workflow_id, "refused", replaced_refusal(spec))
    reason, previous = "", None
    if excluded is not None and rules.exclude:
        reason = await excluded(rules.exclude)
    if not reason and rules.reenroll and not new_lead:
        reason, previous = await cooldown_check(
            client, settings, journey=spec.label, workflow_id=workflow_id, rules=rules
        )
    if not reason and settings.max_concurrent_journeys > 0 and not new_lead:
        running = [w for w in await running_journeys(client, lead_id) if w != workflow_id]
        if len(running) >= settings.max_concurrent_journeys:
            reason = (
                f"the lead is already in {len(running)} journeys "
                f"(at most {settings.max_concurrent_journeys}): " + ", ".join(sorted(running))
            )
    if reason:
        return Enrollment(lead_id, journey, workflow_id, "refused", f"not enrolled: {reason}")
    reenrolled = previous is not None and previous.status != WorkflowExecutionStatus.RUNNING
    values = {name: (knobs or {})[name](settings) for name in spec.requires}
    values.update(inputs or {})
    values["reenrolled"] = reenrolled

    def start(reuse_policy: WorkflowIDReusePolicy):
        return start_journey(
            client,
            settings,
            spec,
            lead_id=lead_id,
            score=score,
            keys=keys,
            knobs=values,
            reuse_policy=reuse_policy,
        )

    try:
        try:
            # Running already: refused. Closed: again only if the journey allows it (cooldown
            # checked above).
            handle = await start(
                WorkflowIDReusePolicy.ALLOW_DUPLICATE
                if rules.reenroll
                else WorkflowIDReusePolicy.REJECT_DUPLICATE
            )
        except WorkflowAlreadyStartedError:
            if not await _may_run_again(client, spec, workflow_id):
                raise
            # still refused if one runs (FAIL)
            handle = await start(WorkflowIDReusePolicy.ALLOW_DUPLICATE)
    except WorkflowAlreadyStartedError as err:
        description = await client.get_workflow_handle(workflow_id).describe()
        running = description.status == WorkflowExecutionStatus.RUNNING
        detail = (
            f"lead {lead_id} is already in the {journey} journey"
            if running
            else f"lead {lead_id} already went through the {journey} journey "
            f"(it ended: {description.status.name}); it allows no re-enrollment"
        )
        return Enrollment(lead_id, journey, workflow_id, "already_enrolled", detail, err.run_id)
    detail = f"{journey} journey started" + (
        " again (the lead went through it before)" if reenrolled else ""
    )
    return Enrollment(lead_id, journey, workflow_id, "started", detail, handle.result_run_id)


async def _may_run_again(client: Client, spec: Journey, workflow_id: str) -> bool:
    """Whether the journey's last run ended (completed) with one of ``spec.again_after``."""
    if not spec.again_after:
        return False
    handle = client.get_workflow_handle(workflow_id)
    if (await handle.describe()).status != WorkflowExecutionStatus.COMPLETED:
        return False
    result = await handle.result()
    return isinstance(result, dict) and result.get("outcome") in spec.again_after

"""Starting journeys and reading their state, for the API.

Each journey the API can start is declared once here: its workflow, how its id is built from
the lead id, what its input is, and what happens when the lead is enrolled again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.schemas import EnrollmentPublic, JourneyStatusPublic
from relance.settings import Settings
from workflows import search_attributes as sa
from workflows.welcome import WelcomeInput, WelcomeJourney


@dataclass(frozen=True)
class JourneySpec:
    name: str
    run: Callable[..., Any]
    make_input: Callable[[Settings, str], Any]
    # Running already: refuse (409). Closed already: the welcome is once per lead, so refuse too.
    reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.REJECT_DUPLICATE

    def workflow_id(self, lead_id: str) -> str:
        return f"{self.name}-{lead_id}"


JOURNEYS: dict[str, JourneySpec] = {
    "welcome": JourneySpec(
        name="welcome",
        run=WelcomeJourney.run,
        make_input=lambda s, lead_id: WelcomeInput(
            lead_id=lead_id,
            relance_after_hours=s.welcome_relance_after_hours,
            relance_by_sms=s.welcome_relance_by_sms,
            engagement_window_days=s.welcome_engagement_window_days,
        ),
    ),
}


async def enroll(client: Client, settings: Settings, *, lead_id: str, score: int, journey: str) -> EnrollmentPublic:
    spec = JOURNEYS[journey]
    workflow_id = spec.workflow_id(lead_id)
    try:
        handle = await client.start_workflow(
            spec.run,
            spec.make_input(settings, lead_id),
            id=workflow_id,
            task_queue=settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=spec.reuse_policy,
            execution_timeout=timedelta(days=365),
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(sa.JOURNEY, journey), SearchAttributePair(sa.LEAD_ID, lead_id),
                SearchAttributePair(sa.STEP, "starting"), SearchAttributePair(sa.SCORE, score),
            ]),
            static_summary=f"{journey} journey for lead {lead_id}",
        )
    except WorkflowAlreadyStartedError as err:
        description = await client.get_workflow_handle(workflow_id).describe()
        running = description.status == WorkflowExecutionStatus.RUNNING
        detail = (f"lead {lead_id} is already in the {journey} journey" if running
                  else f"lead {lead_id} already went through the {journey} journey (it ended: {description.status.name})")
        return EnrollmentPublic(lead_id=lead_id, journey=journey, workflow_id=workflow_id, run_id=err.run_id,
                                status="already_enrolled", detail=detail)
    return EnrollmentPublic(lead_id=lead_id, journey=journey, workflow_id=workflow_id, run_id=handle.result_run_id,
                            status="started", detail=f"{journey} journey started")


async def journey_status(client: Client, *, lead_id: str, journey: str) -> JourneyStatusPublic | None:
    """The journey's state (query), or None when the lead was never enrolled."""
    spec = JOURNEYS[journey]
    handle = client.get_workflow_handle(spec.workflow_id(lead_id))
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    status = await handle.query("status")
    result = None
    if description.status == WorkflowExecutionStatus.COMPLETED:
        result = await handle.result()
    return JourneyStatusPublic(
        lead_id=lead_id, journey=journey, workflow_id=handle.id, run_id=description.run_id,
        status=description.status.name, step=status.get("step"), opened=status.get("opened"),
        clicked=status.get("clicked"), score=status.get("score"), messages=status.get("messages", []),
        result=result,
    )

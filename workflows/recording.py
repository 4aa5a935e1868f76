"""Every journey records its run in the database, where the reports read it (``journey_runs``):
once when it enters, once when it ends, with its outcome, reason, goal and checkpoints.

A worker interceptor does it around every journey's run, so that no journey's module carries
it and every journey, coded or defined, is counted the same way. Journeys started before it
(their histories have no ``journey-runs`` marker) keep their command sequence: they record
nothing (``workflow.patched``). Sweeps (no lead) are not journeys: they record nothing either.

A run that fails, is cancelled or terminated records no end: the reports show it as active
until it is, which the worker's log explains.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from temporalio import workflow
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from workflows.steps import ACTIVITY_OPTIONS

with workflow.unsafe.imports_passed_through():
    from relance.contracts.runs import JourneyRunRecord, record_journey_run

RUNS_PATCH = "journey-runs"


class JourneyRuns(Interceptor):
    """The worker's (and the replayer's) interceptor: journeys record their runs."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _RecordRun


class _RecordRun(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        journey = workflow.instance()
        lead_id = getattr(journey, "lead_id", None)
        if not (isinstance(lead_id, str) and lead_id and workflow.patched(RUNS_PATCH)):
            return await super().execute_workflow(input)
        info = workflow.info()
        record = JourneyRunRecord(
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            lead_id=lead_id,
            journey=str(getattr(journey, "NAME", "") or info.workflow_type),
            entered_at=info.start_time,
        )
        # The entry is written while the journey's first steps run: recording it delays nothing.
        entered = workflow.start_activity(
            record_journey_run, record, summary="record the journey's entry", **ACTIVITY_OPTIONS
        )
        try:
            result = await super().execute_workflow(input)
        finally:
            await entered
        record = dataclasses.replace(record)
        converted = getattr(journey, "converted", None)
        record.closed_at = workflow.now()
        record.outcome = str(getattr(result, "outcome", "") or "")
        record.reason = str(getattr(result, "reason", "") or "")
        record.goal = str(getattr(result, "goal", None) or getattr(converted, "goal", "") or "")
        record.checkpoints = list(getattr(result, "checkpoints", None) or [])
        record.arms = dict(getattr(result, "arms", None) or {})
        await workflow.execute_activity(
            record_journey_run, record, summary="record the journey's end", **ACTIVITY_OPTIONS
        )
        return result

"""Every journey records its run in the database, where the reports read it (``journey_runs``):
once when it enters, once when it ends, with its outcome, reason, goal and checkpoints.

The entry costs no Temporal action: every activity the journey starts carries the run's entry in
a header (``RUN_HEADER``: the lead, the journey, the workflow's start time), and the worker writes
the row the first time an activity of the run executes (activities/runs.py ``RunEntries``). Only
the end is one activity of its own (``record_journey_run``). A run that has run no activity yet
(a journey written as data may wait first) shows in the reports once its first activity runs,
entered at its start. Journeys started with the first way of recording (the ``journey-runs``
marker without ``journey-runs-entry-in-headers``) keep their entry activity when they replay.

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
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from workflows.steps import ACTIVITY_OPTIONS

with workflow.unsafe.imports_passed_through():
    from relance.contracts.runs import RUN_HEADER, JourneyRunRecord, record_journey_run

RUNS_PATCH = "journey-runs"
# The entry goes with the journey's activities (a header) instead of an activity of its own.
ENTRY_IN_HEADERS_PATCH = "journey-runs-entry-in-headers"


class JourneyRuns(Interceptor):
    """The worker's (and the replayer's) interceptor: journeys record their runs."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _RecordRun


class _RecordRun(WorkflowInboundInterceptor):
    entry: Any = None  # the run's entry as a header's payload, once the journey has entered

    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_TellEntry(outbound, self))

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
        if workflow.patched(ENTRY_IN_HEADERS_PATCH):
            # Written by the worker with the journey's first activity, whenever that runs: the
            # entry time is the workflow's start all the same.
            self.entry = workflow.payload_converter().to_payload(record)
            result = await super().execute_workflow(input)
        else:
            # Journeys started with an entry activity: written while their first steps run.
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


class _TellEntry(WorkflowOutboundInterceptor):
    """Every activity the journey starts carries its run's entry (not the end's own activity,
    which writes the whole row anyway). A header is no command: the history's commands and the
    actions billed stay those of the journey itself."""

    def __init__(self, next: WorkflowOutboundInterceptor, run: _RecordRun) -> None:
        super().__init__(next)
        self.run = run

    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle:
        if self.run.entry is not None and input.activity != "record_journey_run":
            input.headers = {**input.headers, RUN_HEADER: self.run.entry}
        return super().start_activity(input)

"""The hourly sweep of the defined journeys' date and segment-entered triggers: one activity at
the sweep's clock (relance/services/triggers.py does the work; a lead's journey starts at the
sweep that finds it due, never days ahead)."""

from __future__ import annotations

from temporalio import workflow

from workflows.steps import PAGE_OPTIONS, show_step

with workflow.unsafe.imports_passed_through():
    from relance.contracts.triggers import TriggerSweepInput, TriggerSweepResult, sweep_triggers


@workflow.defn(name="TriggerSweep")
class TriggerSweep:
    @workflow.run
    async def run(self, input: TriggerSweepInput) -> TriggerSweepResult:
        if input.now is None:
            input.now = workflow.now()
        show_step("sweeping", f"date and segment triggers at {input.now.isoformat()}")
        result = await workflow.execute_activity(
            sweep_triggers, input, summary="date and segment triggers", **PAGE_OPTIONS
        )
        show_step(
            "completed",
            f"{result.date_enrolled} by date, {result.segment_enrolled} by segment, "
            f"{result.refused} refused",
        )
        return result

"""Content scenarios that hand the lead on to another scenario when they are done with it, e.g.
a newsletter that leads to a white paper.

    enroll (with the chain of journeys that led here)
        ─► the scenario's email (send window, frequency cap)
               (not sent ─► end: excluded by the journey's exclusions, else not_sent)
        ─► no other scenario follows ─► end: finished
        ─► wait N days
        ─► redirect: enroll into the next scenario (end: redirected), unless the chain refuses it
               (the lead came from there already, or the chain is too deep), or the target's
               enrollment rules (exclusions, cooldown since the lead left it:
               relance/domain/journey_rules.py) refuse it, or the lead is in it already
               ─► end: redirect_refused, recorded (in the journey's result and in
               ``enrollment_refusals``, with the lead's data)
    Goal: a purchase ends it (converted).

The scenarios and their links are declared in the catalogue (``SCENARIOS``, one entry each,
``scenario-<name>``, which takes no new leads: the journey written as data
``newsletter_white_paper`` replaced them, and these run for the leads already in them and their
saved histories); the worker checks the graph at start
(relance/contracts/journey_graph.py): a loop no link guards is a start-up error naming it. Id
``scenario-<name>-<lead id>``; the next scenario is a child workflow that outlives this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from relance.contracts import catalogue
from relance.contracts.catalogue import SCENARIOS, scenario_entry_name
from relance.contracts.journey_graph import DEFAULT_MAX_DEPTH, chain_refusal
from workflows.goals import goals_of
from workflows.journey import Journey
from workflows.steps import JourneyResult, JourneyStatus, not_sent_outcome

with workflow.unsafe.imports_passed_through():
    from relance.contracts.enrollment import (
        EnrollmentCheck,
        RefusalRecord,
        check_enrollment,
        record_enrollment_refusal,
    )

JOURNEY = "scenario"
# Enrollment rules: a run keys its send with its start time (a lead may come back into a
# scenario after its cooldown), the redirect checks the target's rules, and refusals are recorded
# in enrollment_refusals. Scenarios started before the rules existed replay as they ran.
RECORD_REFUSALS_PATCH = "record-enrollment-refusals"
GOALS = goals_of(JOURNEY)  # declared in the catalogue


class ScenarioOutcome(StrEnum):
    REDIRECTED = "redirected"
    REDIRECT_REFUSED = "redirect_refused"
    FINISHED = "finished"  # no other scenario follows
    NOT_SENT = "not_sent"
    EXCLUDED = "excluded"
    CONVERTED = "converted"


def workflow_id(name: str, lead_id: str) -> str:
    return catalogue.entry(scenario_entry_name(name)).workflow_id(lead_id=lead_id)


@dataclass
class ScenarioInput:
    lead_id: str
    scenario: str
    chain: list[str] = field(default_factory=list)  # the journeys that led here, oldest first
    max_depth: int = DEFAULT_MAX_DEPTH
    wait_days: float | None = None  # None: the scenario's own wait; passed on down the chain


@dataclass
class ScenarioStatus(JourneyStatus):
    chain: list[str]  # the journeys that led here, and this one


@dataclass
class ScenarioResult(JourneyResult):
    outcome: ScenarioOutcome
    chain: list[str]  # the journeys that led here, and this one
    redirected_to: str | None = None  # the scenario the lead was sent on to (or refused)


@workflow.defn(name="ScenarioJourney")
class ScenarioJourney(Journey):
    NAME, GOALS, RESULT = JOURNEY, GOALS, ScenarioResult

    @workflow.init
    def __init__(self, input: ScenarioInput) -> None:
        super().__init__(input.lead_id)
        self.input = input
        self.chain = [*input.chain, input.scenario]
        self._rules = False  # set at the start of the steps (workflow.patched)

    @workflow.run
    async def run(self, input: ScenarioInput) -> ScenarioResult:
        result = await self.until_goal(self._steps(input))
        if result is None:
            return self.finish(ScenarioOutcome.CONVERTED, f"goal reached: {self.converted.goal}")
        return result

    async def _steps(self, input: ScenarioInput) -> ScenarioResult:
        scenario = SCENARIOS[input.scenario]
        # Enrollment rules: a lead may come back into a scenario after its cooldown, so a run
        # keys its send with its start time (or it would find the earlier run's send done).
        self._rules = workflow.patched(RECORD_REFUSALS_PATCH)
        step = (
            f"{input.scenario}@{workflow.info().start_time:%Y-%m-%dT%H:%M:%S}"
            if self._rules
            else input.scenario
        )
        self.enter("sending", f"Sending {scenario.template}")
        sent = await self.send(step, scenario.template, shown_as=input.scenario)
        if sent.status != "sent":
            return self.finish(ScenarioOutcome(not_sent_outcome(sent)), sent.reason)
        if scenario.redirect_to is None:
            return self.finish(ScenarioOutcome.FINISHED, "no other scenario follows")
        wait_days = scenario.wait_days if input.wait_days is None else input.wait_days
        await self.wait(
            "waiting",
            f"Waiting {wait_days:g} days before {scenario.redirect_to}",
            lambda: False,
            timedelta(days=wait_days),
        )

        target = scenario.redirect_to
        refusal = chain_refusal(self.chain, target, input.max_depth)
        if refusal:
            workflow.logger.warning(
                "scenario %s for lead %s: redirect refused: %s",
                input.scenario,
                input.lead_id,
                refusal,
            )
            return await self._refused(target, refusal)
        if self._rules:  # the target's enrollment rules, as the API applies them
            refusal = await self.activity(
                check_enrollment,
                EnrollmentCheck(
                    input.lead_id, JOURNEY, workflow_id(target, input.lead_id), f"{target} scenario"
                ),
            )
            if refusal:
                return await self._refused(target, refusal)
        self.enter("redirecting", f"Enrolling the lead into {target}")
        try:
            await workflow.start_child_workflow(
                ScenarioJourney.run,
                ScenarioInput(
                    input.lead_id, target, list(self.chain), input.max_depth, input.wait_days
                ),
                id=workflow_id(target, input.lead_id),
                parent_close_policy=ParentClosePolicy.ABANDON,
            )
        except WorkflowAlreadyStartedError:
            return await self._refused(target, f"the lead is already in {target}")
        return self.finish(
            ScenarioOutcome.REDIRECTED, f"enrolled into {target}", redirected_to=target
        )

    @workflow.query(name="status")
    def status(self) -> ScenarioStatus:
        return ScenarioStatus(step=self.step, chain=list(self.chain), messages=list(self.messages))

    def stopped(self) -> bool:
        return self.converted is not None

    async def _refused(self, target: str, reason: str) -> ScenarioResult:
        await self._record_refusal(target, reason)
        return self.finish(ScenarioOutcome.REDIRECT_REFUSED, reason, redirected_to=target)

    async def _record_refusal(self, target: str, reason: str) -> None:
        """Keep the refusal with the lead's data (``enrollment_refusals``, in the export). Journeys
        started before this existed replay without it."""
        if self._rules:
            info = workflow.info()
            await self.activity(
                record_enrollment_refusal,
                RefusalRecord(
                    self.input.lead_id,
                    info.workflow_id,
                    info.run_id,
                    self.input.scenario,
                    target,
                    reason,
                    list(self.chain),
                ),
            )

    def close(self, outcome: str, reason: str | None = None) -> None:
        """A scenario's last step is its outcome, as the Temporal UI shows it."""
        self.enter(str(outcome), f"Scenario over: {outcome} ({reason})")

    def result_fields(self) -> dict:
        return dict(chain=self.chain)

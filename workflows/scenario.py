"""Content scenarios that hand the lead on to another scenario (seed 004: "redirection vers un
autre scénario eCRM"), e.g. a newsletter that leads to a white paper.

    enroll (with the chain of journeys that led here)
        ─► the scenario's email (send window, frequency cap) ─► wait N days
        ─► redirect: enroll into the next scenario, unless the chain refuses it
               (the lead came from there already, or the chain is too deep), or the target's
               enrollment rules (exclusions, cooldown since the lead left it: relance/domain/journey_rules.py)
               refuse it: refused, recorded
               (in the journey's result and in ``enrollment_refusals``, with the lead's data)
    Goal: a purchase ends it (converted).

The scenarios and their links are declared in the catalogue (``SCENARIOS``, one entry each:
the API enrolls a lead into ``scenario-<name>``); the worker checks the graph at start
(relance/contracts/journey_graph.py): a loop no link guards is a start-up error naming it. Id
``scenario-<name>-<lead id>``; the next scenario is a child workflow that outlives this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from relance.contracts import catalogue
from relance.contracts.catalogue import SCENARIOS, scenario_entry_name
from relance.contracts.journey_graph import DEFAULT_MAX_DEPTH, chain_refusal
from relance.contracts.signals import GOAL_REACHED, GoalSignal
from workflows.goals import goals_of
from workflows.steps import (
    ACTIVITY_OPTIONS,
    SentMessage,
    not_sent_outcome,
    send_marketing,
    show_step,
    until_goal,
    wait_for,
)

with workflow.unsafe.imports_passed_through():
    from activities.email import EmailActivities
    from activities.enrollment import EnrollmentActivities, EnrollmentCheck, RefusalRecord
    from activities.sending import SendRequest

JOURNEY = "scenario"
RECORD_REFUSALS_PATCH = (
    "record-enrollment-refusals"  # refusals recorded in enrollment_refusals (issue 7)
)
GOALS = goals_of(JOURNEY)  # declared in the catalogue


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
class ScenarioResult:
    outcome: str  # redirected | redirect_refused | finished | not_sent | excluded | converted
    reason: str
    chain: list[str]
    redirected_to: str | None = None
    messages: list[SentMessage] = field(default_factory=list)


@workflow.defn(name="ScenarioJourney")
class ScenarioJourney:
    @workflow.init
    def __init__(self, input: ScenarioInput) -> None:
        self.input = input
        self.chain = [*input.chain, input.scenario]
        self.step = "starting"
        self.messages: list[SentMessage] = []
        self.converted: GoalSignal | None = None
        self._rules = False  # set at the start of the steps (workflow.patched)

    @workflow.run
    async def run(self, input: ScenarioInput) -> ScenarioResult:
        result = await until_goal(self._steps(input), lambda: self.converted is not None)
        if result is None:
            return self._finish(
                ScenarioResult("converted", f"goal reached: {self.converted.goal}", self.chain)
            )
        return result

    async def _steps(self, input: ScenarioInput) -> ScenarioResult:
        scenario = SCENARIOS[input.scenario]
        # Enrollment rules (issue 7): a lead may come back into a scenario after its cooldown, so a
        # run keys its send with its start time (or it would find the earlier run's send done);
        # the redirect checks the target's rules, refusals are recorded. Older runs replay as they ran.
        self._rules = workflow.patched(RECORD_REFUSALS_PATCH)
        step = (
            f"{input.scenario}@{workflow.info().start_time:%Y-%m-%dT%H:%M:%S}"
            if self._rules
            else input.scenario
        )
        self._enter("sending", f"Sending {scenario.template}")
        request = SendRequest(
            lead_id=input.lead_id,
            workflow_id=workflow.info().workflow_id,
            journey=JOURNEY,
            step=step,
            template=scenario.template,
        )
        sent = await send_marketing(
            EmailActivities.send_email,
            request,
            summary=f"email {scenario.template}",
            stop=lambda: self.converted is not None,
        )
        self.messages.append(
            SentMessage(
                input.scenario,
                "email",
                scenario.template,
                sent.status,
                sent.message_id,
                workflow.now(),
                sent.reason,
            )
        )
        if sent.status != "sent":
            return self._finish(ScenarioResult(not_sent_outcome(sent), sent.reason, self.chain))
        if scenario.redirect_to is None:
            return self._finish(ScenarioResult("finished", "no other scenario follows", self.chain))
        wait_days = scenario.wait_days if input.wait_days is None else input.wait_days
        self._enter("waiting", f"Waiting {wait_days:g} days before {scenario.redirect_to}")
        await wait_for(lambda: False, timedelta(days=wait_days))

        target = scenario.redirect_to
        refusal = chain_refusal(self.chain, target, input.max_depth)
        if refusal:
            workflow.logger.warning(
                "scenario %s for lead %s: redirect refused: %s",
                input.scenario,
                input.lead_id,
                refusal,
            )
            await self._record_refusal(target, refusal)
            return self._finish(ScenarioResult("redirect_refused", refusal, self.chain, target))
        if self._rules:  # the target's enrollment rules, as the API applies them
            refusal = await workflow.execute_activity_method(
                EnrollmentActivities.check_enrollment,
                EnrollmentCheck(
                    input.lead_id, JOURNEY, workflow_id(target, input.lead_id), f"{target} scenario"
                ),
                **ACTIVITY_OPTIONS,
            )
            if refusal:
                await self._record_refusal(target, refusal)
                return self._finish(ScenarioResult("redirect_refused", refusal, self.chain, target))
        self._enter("redirecting", f"Enrolling the lead into {target}")
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
            await self._record_refusal(target, f"the lead is already in {target}")
            return self._finish(
                ScenarioResult(
                    "redirect_refused", f"the lead is already in {target}", self.chain, target
                )
            )
        return self._finish(
            ScenarioResult("redirected", f"enrolled into {target}", self.chain, target)
        )

    @workflow.signal(name=GOAL_REACHED)
    def on_goal_reached(self, signal: GoalSignal) -> None:
        if signal.goal in GOALS and self.converted is None:
            self.converted = signal

    @workflow.query(name="status")
    def status(self) -> ScenarioResult:
        return ScenarioResult(self.step, "", self.chain, None, list(self.messages))

    async def _record_refusal(self, target: str, reason: str) -> None:
        """Keep the refusal with the lead's data (``enrollment_refusals``, in the export). Journeys
        started before this existed replay without it."""
        if self._rules:
            info = workflow.info()
            await workflow.execute_activity_method(
                EnrollmentActivities.record_enrollment_refusal,
                RefusalRecord(
                    self.input.lead_id,
                    info.workflow_id,
                    info.run_id,
                    self.input.scenario,
                    target,
                    reason,
                    list(self.chain),
                ),
                **ACTIVITY_OPTIONS,
            )

    def _enter(self, step: str, details: str) -> None:
        self.step = step
        show_step(step, details)

    def _finish(self, result: ScenarioResult) -> ScenarioResult:
        result.messages = list(self.messages)
        self._enter(result.outcome, f"Scenario over: {result.outcome} ({result.reason})")
        return result

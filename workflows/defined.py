"""The interpreter of journeys written as data (relance/domain/definitions.py): one durable
workflow runs every definition, node by node, with the guarantees of the coded journeys.

    enter ─► the start node ─► ... each node names the next ... ─► exit | goal | redirect

- a message goes through the send ledger (consent, suppression, exclusions, cap, window, once):
  marketing in the send window and within the frequency cap (``Journey.send``), transactional at
  once (``send_now``), "best" on the first channel of its preference the lead accepts
  (``send_best``); a message that does not go out ends the journey (not_sent, or excluded) unless
  the node says to go on;
- a delay is a durable timer: a duration, or until a local time on some weekdays in the lead's
  time zone (the zone read by ``get_send_profile``, the instant by relance/domain/send_window.py);
- a wait for an open or a click of a message node, or a signal by name (any signal the journey
  has no handler of its own for: the dynamic handler counts them), takes ``then`` when it comes,
  ``timeout`` when it does not; signals count from the moment the wait begins;
- a condition is asked of one activity (``evaluate_condition``), which answers the branch and
  why; the why is kept in the status (``decisions``);
- an experiment places the lead on an arm by a hash of the journey's key, the node and the lead
  id (relance/contracts/definitions.py ``assign_arm``): the same arm on replay and on re-entry; the
  arm is recorded on every message sent after it (its step: ``<node>:<arm>``);
- an update adds score points (an event of the scoring rules, once per run and node) or adds
  or removes a list, through the scoring and lists activities;
- a checkpoint is shown as the ``Step`` search attribute and kept in the status;
- a goal node ends the journey as converted, at once; so does one of the definition's goals
  reached (the ``goal_reached`` signal), wherever the lead is; an unsubscribe ends it too.

The compiled definition travels in the input (ids and knobs only): a lead keeps the version it
entered with. The ledger's step of a message is ``<node>[:<arm>][.<channel>][#<visit>]@<start>``:
a re-entry (the same workflow id, a later start) sends again, a retry or a replay never twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from temporalio import workflow
from temporalio.common import RawValue

from relance.contracts.signals import CLICKED, OPENED, TrackingSignal
from workflows.journey import Journey
from workflows.steps import ACTIVITY_OPTIONS, JourneyStatus, SentMessage, skip_of

with workflow.unsafe.imports_passed_through():
    from relance.contracts.definitions import (
        WORKFLOW_TYPE,
        CompiledNode,
        ConditionQuestion,
        DefinedJourneyInput,
        assign_arm,
        evaluate_condition,
    )
    from relance.contracts.leads import LeadRef, get_send_profile
    from relance.contracts.lists import ListChange, change_list_membership
    from relance.contracts.scoring import ScoreChange, add_score
    from relance.contracts.sending import SendRequest, SendResult
    from relance.contracts.skips import SkipReason
    from relance.domain.send_window import SendWindow, next_open

MAX_NODES_PER_RUN = 1000  # a definition's checks refuse instant loops; this is the last net


class DefinedOutcome(StrEnum):
    EXITED = "exited"  # an exit node, or a branch that ends
    CONVERTED = "converted"  # a goal node, or one of the definition's goals reached
    NOT_SENT = "not_sent"
    EXCLUDED = "excluded"
    UNSUBSCRIBED = "unsubscribed"
    REDIRECT_REFUSED = "redirect_refused"


@dataclass
class DefinedStatus(JourneyStatus):
    key: str
    version: int
    node: str  # the node the lead is at ("" before the first, and after the end)
    path: list[str] = field(default_factory=list)  # the nodes taken, in order
    checkpoints: list[str] = field(default_factory=list)
    arms: dict[str, str] = field(default_factory=dict)  # experiment node -> the lead's arm
    decisions: list[str] = field(default_factory=list)  # why each branch was taken


@dataclass
class DefinedResult:
    outcome: DefinedOutcome
    reason: str
    key: str
    version: int
    path: list[str]
    checkpoints: list[str]
    arms: dict[str, str]
    decisions: list[str]
    goal: str | None = None  # the conversion: the goal node's goal, or the goal signalled
    messages: list[SentMessage] = field(default_factory=list)


@workflow.defn(name=WORKFLOW_TYPE)
class DefinedJourney(Journey):
    @workflow.init
    def __init__(self, input: DefinedJourneyInput) -> None:
        super().__init__(input.lead_id)
        self.input = input
        self.definition = input.definition
        self.NAME = self.definition.key  # the label of its messages and its rules
        self.GOALS = tuple(self.definition.goals)
        self.node = ""
        self.path: list[str] = []
        self.checkpoints: list[str] = []
        self.arms: dict[str, str] = {}
        self.decisions: list[str] = []
        self.arm = ""  # the experiment arm the lead is on: recorded on the messages that follow
        self.sent: dict[str, str] = {}  # message node -> the id of the message it last sent
        self.opened: set[str] = set()  # message ids opened (or clicked)
        self.clicked: set[str] = set()
        self.signals: Counter[str] = Counter()
        self.visits: Counter[str] = Counter()

    @workflow.run
    async def run(self, input: DefinedJourneyInput) -> DefinedResult:
        result = await self.until_goal(self._steps())
        if result is None:
            await self.settle()
            goal = self.converted
            return self._finish(
                DefinedOutcome.CONVERTED, f"goal reached: {goal.goal} ({goal.source})", goal.goal
            )
        return result

    async def _steps(self) -> DefinedResult:
        node_id: str | None = self.definition.start
        for _ in range(MAX_NODES_PER_RUN):
            if self.unsubscribed:
                return self._finish(DefinedOutcome.UNSUBSCRIBED, "the lead unsubscribed")
            if node_id is None:
                return self._finish(DefinedOutcome.EXITED, "the path ended")
            node = self.definition.node(node_id)
            self.node = node.id
            self.path.append(node.id)
            self.visits[node.id] += 1
            outcome = await self._run(node)
            if isinstance(outcome, DefinedResult):
                return outcome
            node_id = outcome
        return self._finish(
            DefinedOutcome.EXITED, f"stopped after {MAX_NODES_PER_RUN} nodes in one run"
        )

    async def _run(self, node: CompiledNode) -> str | None | DefinedResult:
        """Run one node: the next node's id (None: the path ends), or the journey's end."""
        match node.type:
            case "message":
                return await self._message(node)
            case "delay":
                await self._delay(node)
                return node.next
            case "wait_for":
                return await self._wait_for(node)
            case "condition":
                answer = await workflow.execute_activity(
                    evaluate_condition,
                    ConditionQuestion(self.lead_id, node.test),
                    summary=f"condition {node.id}",
                    **ACTIVITY_OPTIONS,
                )
                branch, target = ("then", node.then) if answer.holds else ("else", node.otherwise)
                self.decisions.append(f"{node.id}: {answer.why} -> {branch}")
                self.enter(f"condition:{node.id}", f"{answer.why}: {branch} branch")
                return target
            case "experiment":
                arms = [*node.arms, *([node.holdout] if node.holdout else [])]
                arm = assign_arm(self.definition.key, node.id, self.lead_id, arms)
                self.arms[node.id] = arm.name
                self.arm = arm.name
                held = node.holdout is not None and arm.name == node.holdout.name
                self.decisions.append(f"{node.id}: arm {arm.name}" + (" (holdout)" if held else ""))
                self.enter(f"experiment:{node.id}", f"arm {arm.name} ({arm.percent:g} %)")
                return arm.next
            case "update":
                await self._update(node)
                return node.next
            case "checkpoint":
                self.checkpoints.append(node.name)
                self.enter(f"checkpoint:{node.name}", f"Checkpoint {node.name} ({node.id})")
                return node.next
            case "goal":
                return self._finish(
                    DefinedOutcome.CONVERTED, f"goal {node.goal} reached ({node.id})", node.goal
                )
            case "redirect":
                # Checked at publish (loops between journeys, journey_graph's guards); running
                # it needs the published definitions, which this journey cannot read yet.
                return self._finish(
                    DefinedOutcome.REDIRECT_REFUSED,
                    f"redirect to {node.journey} ({node.id}): redirects are not run yet",
                )
            case _:  # "exit"
                return self._finish(DefinedOutcome.EXITED, f"exit ({node.id})")

    def request(self, step: str, template: str, **options) -> SendRequest:
        """Every send carries the definition's exclusions: the ledger checks them at the moment
        of sending (a lead who joined an excluded list since entering gets no more messages)."""
        if self.definition.exclude:
            options["exclude"] = list(self.definition.exclude)
        return super().request(step, template, **options)

    # Nodes -----------------------------------------------------------------------------------
    def _ledger_step(self, node: CompiledNode, channel: str = "") -> str:
        visit = self.visits[node.id]
        return (
            self._shown(node)
            + (f".{channel}" if channel else "")
            + (f"#{visit}" if visit > 1 else "")
            + f"@{workflow.info().start_time:%y%m%d%H%M%S}"
        )

    def _shown(self, node: CompiledNode) -> str:
        return node.id + (f":{self.arm}" if self.arm else "")

    async def _message(self, node: CompiledNode) -> str | None | DefinedResult:
        shown = self._shown(node)
        self.enter(f"message:{node.id}", f"Sending {node.template} ({node.channel}, {node.kind})")
        if node.channel == "best":

            async def on(channel: str) -> SendResult:
                return await self._send_one(node, channel, self._ledger_step(node, channel), shown)

            _, result = await self.send_best(node.channels, on)
        else:
            result = await self._send_one(node, node.channel, self._ledger_step(node), shown)
        if result is not None and result.status == "sent":
            self.sent[node.id] = result.message_id or ""
            return node.next
        reason = result.reason if result is not None else "no channel to send on"
        excluded = result is not None and skip_of(result) == SkipReason.EXCLUDED
        return self._finish(
            DefinedOutcome.EXCLUDED if excluded else DefinedOutcome.NOT_SENT,
            f"{node.id} not sent: {reason}",
        )

    async def _send_one(
        self, node: CompiledNode, channel: str, step: str, shown: str
    ) -> SendResult:
        if node.kind == "transactional":
            result = await self.send_now(
                step, node.template, channel, kind="transactional", record=False
            )
            self.record(shown, channel, node.template, result)
            return result
        return await self.send(step, node.template, channel, shown_as=shown)

    async def _delay(self, node: CompiledNode) -> None:
        if node.until_time:
            profile = await workflow.execute_activity(
                get_send_profile, LeadRef(self.lead_id), **ACTIVITY_OPTIONS
            )
            hours, minutes = (int(x) for x in node.until_time.split(":"))
            end = hours * 60 + minutes + 1
            moment = SendWindow(
                days=node.until_days, start=node.until_time, end=f"{end // 60:02d}:{end % 60:02d}"
            )
            now = workflow.now()
            until = next_open(now, profile.time_zone, moment)
            details = f"Until {moment.describe()} {profile.time_zone}: {until:%Y-%m-%d %H:%M} UTC"
            duration = until - now
        else:
            duration = timedelta(seconds=node.seconds)
            details = f"Waiting {_human(duration)}"
        await self.wait(f"delay:{node.id}", details, lambda: self.unsubscribed, duration)

    async def _wait_for(self, node: CompiledNode) -> str | None:
        within = timedelta(seconds=node.seconds)
        if node.event == "signal":
            seen = self.signals[node.signal]
            what = f"the signal {node.signal}"

            def came() -> bool:
                return self.signals[node.signal] > seen
        else:
            what = f"the {node.event} of {node.message}"
            seen_in = self.clicked if node.event == "clicked" else self.opened

            def came() -> bool:
                return node.message in self.sent and self.sent[node.message] in seen_in

        came_in_time = await self.wait(
            f"wait_for:{node.id}",
            f"Waiting up to {_human(within)} for {what}",
            lambda: came() or self.unsubscribed,
            within,
        )
        if self.unsubscribed:
            return None
        branch, target = ("then", node.then) if came_in_time else ("timeout", node.otherwise)
        self.decisions.append(
            f"{node.id}: {what} {'came' if came_in_time else 'did not come'} -> {branch}"
        )
        return target

    async def _update(self, node: CompiledNode) -> None:
        self.enter(f"update:{node.id}", "Updating the lead")
        key = f"{workflow.info().workflow_id}:{workflow.info().start_time:%y%m%d%H%M%S}:{node.id}"
        key += f"#{self.visits[node.id]}"
        reason = f"the {self.definition.key} journey, {node.id}"
        if node.score_event:
            scored = await workflow.execute_activity(
                add_score,
                ScoreChange(self.lead_id, node.score_event, key, reason),
                **ACTIVITY_OPTIONS,
            )
            self.set_score(scored.score)
        for action, name in (("add", node.add_to_list), ("remove", node.remove_from_list)):
            if name:
                await workflow.execute_activity(
                    change_list_membership,
                    ListChange(self.lead_id, name, action, reason),
                    **ACTIVITY_OPTIONS,
                )

    # What the lead does ------------------------------------------------------------------
    @workflow.signal(name=OPENED)
    def on_opened(self, signal: TrackingSignal) -> None:
        self.opened.add(signal.message_id)

    @workflow.signal(name=CLICKED)
    def on_clicked(self, signal: TrackingSignal) -> None:
        self.clicked.add(signal.message_id)
        self.opened.add(signal.message_id)  # a click implies the message was seen

    @workflow.signal(dynamic=True)
    def on_signal(self, name: str, args: Sequence[RawValue]) -> None:
        """Any other signal, by name: what a ``wait_for`` of a signal waits for."""
        self.signals[name] += 1

    @workflow.query(name="status")
    def status(self) -> DefinedStatus:
        return DefinedStatus(
            step=self.step,
            key=self.definition.key,
            version=self.definition.version,
            node=self.node,
            path=list(self.path),
            checkpoints=list(self.checkpoints),
            arms=dict(self.arms),
            decisions=list(self.decisions),
            messages=list(self.messages),
        )

    def _finish(self, outcome: DefinedOutcome, reason: str, goal: str | None = None):
        self.close(outcome, reason)
        self.node = ""
        return DefinedResult(
            outcome,
            reason,
            self.definition.key,
            self.definition.version,
            list(self.path),
            list(self.checkpoints),
            dict(self.arms),
            list(self.decisions),
            goal,
            list(self.messages),
        )


def _human(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"

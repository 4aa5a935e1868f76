"""The lead-nurturing journey: a sequence of content emails that brings a lead to a demo, with
validation rules (a step waits for a download), feedback loops, and the sales team's tasks.

    enroll ─► consent for email? ──no──► end: not_sent
                 │ yes
                 ▼
    the sequence (config/nurturing.yaml, read at enrollment; default 4 days apart):
        welcome newsletter ─► case study ─► white paper ─► demo proposal ─► promotional offer
                                                              │
                    gate: "the demo proposal requires the white paper downloaded"
                    after the wait: downloaded? ──yes──► send the demo proposal
                                        │ no
                                        ▼
                    feedback loop: send the alternative (another case study), wait up to
                    4 days for the download (it ends the wait), check again; at most N times
                    (default 2), then skip the step or end the journey: gate_not_met (per
                    configuration)
                                                              ▼
    sequence over ─► stay while a sales task is open (until it is done or escalated)
                  ─► end: sequence_completed

    At any point:
      white paper downloaded, or score crosses the MQL threshold ─► a sales task for a rep
          (territory or round-robin), the rep emailed; still open at its due date (2 business
          days) ─► escalated to the manager, once
      task completed "meeting_booked" ─► end: converted; "not_interested" ─► end: not_interested
      demo booked or purchase (the lead on their own) ─► end: goal_reached
      unsubscribe ─► end: unsubscribed
      a message refused by the journey's exclusions (checked before each send: the lead became a
          customer, joined an excluded list) ─► end: excluded; not sent otherwise ─► not_sent
      (goals: demo_booked, purchase, declared in the catalogue; a meeting booked by sales
       reaches demo_booked for the lead's other journeys too)

One journey per lead, id ``nurture-<lead id>``. The input carries the sequence itself (names,
templates, delays, gates: no personal data), so editing the file never changes a running journey.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from temporalio import workflow
from temporalio.exceptions import ActivityError

from relance.contracts.signals import (
    ASSET_DOWNLOADED,
    CLICKED,
    DEMO_BOOKED,
    DEMO_BOOKED_GOAL,
    OPENED,
    PURCHASED,
    SCORE_CHANGED,
    TASK_COMPLETED,
    AssetSignal,
    GoalSignal,
    PurchaseSignal,
    ScoreSignal,
    TaskSignal,
    TrackingSignal,
)
from workflows.goals import goals_of
from workflows.journey import Journey
from workflows.steps import JourneyResult, JourneyStatus, not_sent_outcome, reach_goal, wait_for

with workflow.unsafe.imports_passed_through():
    from relance.contracts.nurturing import Gate, NurturingSequence, NurturingStep
    from relance.contracts.sales import (
        TaskNotice,
        TaskRef,
        TaskRequest,
        create_sales_task,
        escalate_sales_task,
        notify_sales_task,
    )
    from relance.contracts.sending import SendResult
    from relance.domain.send_window import SendWindow

JOURNEY = "nurturing"
GOALS = goals_of(JOURNEY)  # declared in the catalogue
# Journeys started before goals existed do not tell the lead's other journeys of a meeting booked.
GOALS_PATCH = "goals"


class NurturingOutcome(StrEnum):
    CONVERTED = "converted"  # the sales rep booked a meeting
    GOAL_REACHED = "goal_reached"  # the lead booked a demo or bought on their own
    NOT_INTERESTED = "not_interested"
    UNSUBSCRIBED = "unsubscribed"
    NOT_SENT = "not_sent"
    EXCLUDED = "excluded"
    GATE_NOT_MET = "gate_not_met"
    SEQUENCE_COMPLETED = "sequence_completed"


@dataclass
class NurturingInput:
    lead_id: str
    sequence: NurturingSequence
    mql_threshold: int = 50
    task_due_business_days: int = 2
    send_window: SendWindow | None = None  # None: the global send window (RELANCE_SEND_WINDOW_*)
    # The lead went through the journey before (re-enrolled after the cooldown): this run keys its
    # sends and sales tasks apart from the earlier run's (by its start time), or they would count
    # as done.
    reenrolled: bool = False


@dataclass
class TaskView:
    task_id: str
    reason: str
    assignee: str | None  # the rep's name
    due_at: datetime
    status: str  # open | done | escalated
    outcome: str | None = None
    escalated: bool = False


@dataclass
class NurturingStatus(JourneyStatus):
    gate: str | None  # the validation rule the journey waits on, if any
    downloads: list[str]
    score: int
    open_tasks: list[TaskView]


@dataclass
class NurturingResult(JourneyResult):
    outcome: NurturingOutcome
    steps_sent: list[str]
    loops: dict[str, int]  # alternatives sent per gated step
    downloads: list[str]
    score: int
    tasks: list[TaskView]


def add_business_days(start: datetime, days: int) -> datetime:
    """``days`` working days after ``start``, same time of day, Saturdays and Sundays skipped."""
    current, added = start, 0
    while added < days:
        current += timedelta(days=1)
        if current.weekday() < 5:
            added += 1
    return current


@workflow.defn(name="LeadNurturingJourney")
class LeadNurturingJourney(Journey):
    NAME, GOALS, LOG_NAME, RESULT = JOURNEY, GOALS, "nurturing journey", NurturingResult

    @workflow.init
    def __init__(self, input: NurturingInput) -> None:
        super().__init__(input.lead_id, input.send_window)
        self.input = input
        self.seq = input.sequence
        self.gate: str | None = None
        self.score = 0
        self.downloads: list[str] = []
        self.steps_sent: list[str] = []
        self.loops: dict[str, int] = {}
        self.tasks: dict[str, TaskView] = {}
        # (outcome, reason): something ended the sequence
        self.stop: tuple[NurturingOutcome, str] | None = None
        self._mql = False
        self._mql_crossings = 0
        self._handed_off: set[str] = set()
        self._background: list[asyncio.Task] = []
        self._closing = False
        self._run_tag = (
            f"@{workflow.info().start_time:%Y-%m-%dT%H:%M:%S}" if input.reenrolled else ""
        )

    @workflow.run
    async def run(self, input: NurturingInput) -> NurturingResult:
        # 1. Consent first: no marketing email without it.
        consent = await self.consent_step("email")
        if not consent.granted:
            return await self._finish(NurturingOutcome.NOT_SENT, consent.reason)
        await self.refresh_score()

        # 2. The sequence, step by step: wait, check the step's gate, send.

        for step in self.seq.steps:
            if step.gate:
                self.gate = f"{step.name} requires the {step.gate.downloaded} downloaded"
            if step.delay_days > 0:
                if await self.wait(
                    f"waiting_for_{step.name}",
                    f"Waiting {step.delay_days:g} days before {step.name}",
                    self.stopped,
                    timedelta(days=step.delay_days),
                ):
                    break
                await self.refresh_score()  # other journeys (clicks, purchases) may have moved it
            if step.gate and not await self._pass_gate(step, step.gate):
                if self.stop:
                    break
                if step.gate.on_exhausted == "end":
                    return await self._finish(
                        NurturingOutcome.GATE_NOT_MET,
                        f"the {step.gate.downloaded} was not downloaded after "
                        f"{self.loops.get(step.name, 0)} alternative(s); {step.name} not sent",
                    )
                continue
            self.enter(f"sending_{step.name}", f"Sending {step.name} ({step.template})")
            sent = await self._send(step.name, step.template)
            if sent.status != "sent" and not self.stop:
                return await self._finish(_not_sent(sent), sent.reason)
            if self.stop:
                break

        # 3. Sequence over: the sales team may still be working on the lead.
        if self.stop is None and self._open_tasks():
            self.enter("waiting_for_sales", "Sequence over; waiting for the open sales tasks")
            await workflow.wait_condition(lambda: self.stopped() or not self._open_tasks())
        if self.stop:
            return await self._finish(*self.stop)
        return await self._finish(
            NurturingOutcome.SEQUENCE_COMPLETED, "every step of the sequence was handled"
        )

    # Gates and the feedback loop ----------------------------------------------------------
    def _met(self, gate: Gate) -> bool:
        return gate.downloaded in self.downloads

    async def _pass_gate(self, step: NurturingStep, gate: Gate) -> bool:
        for loop in range(1, gate.max_loops + 1):
            if self._met(gate) or self.stop:
                break
            template = gate.alternatives[min(loop, len(gate.alternatives)) - 1]
            self.gate = (
                f"{step.name} requires the {gate.downloaded} downloaded "
                f"(feedback loop {loop}/{gate.max_loops})"
            )
            self.enter(
                f"feedback_{step.name}",
                f"No {gate.downloaded} download yet: sending {template} instead",
            )
            sent = await self._send(f"{step.name}_alt_{loop}", template)
            self.loops[step.name] = loop
            if sent.status != "sent" and not self.stop:
                self._stop(_not_sent(sent), sent.reason)
            await self.wait(
                f"feedback_{step.name}",
                f"Waiting up to {gate.retry_after_days:g} days for the {gate.downloaded} download",
                lambda: self._met(gate) or self.stopped(),
                timedelta(days=gate.retry_after_days),
            )
        self.gate = None
        return self._met(gate) and not self.stop

    # What the lead (and the sales team) do -----------------------------------------------
    @workflow.signal(name=OPENED)
    def on_opened(self, signal: TrackingSignal) -> None:
        pass  # opens say little (machine opens); clicks and downloads drive this journey

    @workflow.signal(name=CLICKED)
    async def on_clicked(self, signal: TrackingSignal) -> None:
        for asset, url_part in self.seq.assets.items():
            if signal.url and url_part in signal.url:
                self._downloaded(asset)
        scored = await self.score_click(
            signal, "clicked a link in the {step} message of the nurturing journey"
        )
        if scored is not None:
            self.set_score(scored.score)

    @workflow.signal(name=ASSET_DOWNLOADED)
    def on_asset_downloaded(self, signal: AssetSignal) -> None:
        self._downloaded(signal.asset)

    @workflow.signal(name=SCORE_CHANGED)
    def on_score_changed(self, signal: ScoreSignal) -> None:
        self.set_score(signal.score)

    @workflow.signal(name=TASK_COMPLETED)
    def on_task_completed(self, signal: TaskSignal) -> None:
        task = self.tasks.get(signal.task_id)
        if task is not None:
            if task.status == "done":
                return  # told twice
            task.status, task.outcome = "done", signal.outcome
        if signal.outcome == "meeting_booked":
            self._stop(
                NurturingOutcome.CONVERTED,
                f"the sales rep booked a meeting (task {signal.task_id})",
            )
        elif signal.outcome == "not_interested":
            self._stop(
                NurturingOutcome.NOT_INTERESTED,
                f"the lead told the sales rep they are not interested (task {signal.task_id})",
            )

    @workflow.signal(name=DEMO_BOOKED)
    def on_demo_booked(self) -> None:
        self._stop(NurturingOutcome.GOAL_REACHED, "the lead booked a demo")

    @workflow.signal(name=PURCHASED)
    def on_purchased(self, signal: PurchaseSignal) -> None:
        self._stop(NurturingOutcome.GOAL_REACHED, f"the lead bought (order {signal.order_id})")

    def goal_reached(self, signal: GoalSignal) -> None:
        self._stop(NurturingOutcome.GOAL_REACHED, f"goal reached: {signal.goal} ({signal.source})")

    def lead_unsubscribed(self) -> None:
        self._stop(NurturingOutcome.UNSUBSCRIBED, "the lead unsubscribed")

    def stopped(self) -> bool:
        return self.stop is not None

    @workflow.query(name="status")
    def status(self) -> NurturingStatus:
        return NurturingStatus(
            step=self.step,
            gate=self.gate,
            downloads=list(self.downloads),
            score=self.score,
            open_tasks=self._open_tasks(),
            messages=list(self.messages),
        )

    def _downloaded(self, asset: str) -> None:
        if asset in self.downloads:
            return
        self.downloads.append(asset)
        if asset in self.seq.hand_off_downloads:
            self._hand_off(f"download-{asset}", f"downloaded the {asset}")

    def set_score(self, score: int) -> None:
        super().set_score(score)
        if score < self.input.mql_threshold:
            self._mql = False  # below again: the next crossing is a new hand-off
        elif not self._mql:
            self._mql = True
            self._mql_crossings += 1
            if self.seq.hand_off_on_mql:
                self._hand_off(
                    f"mql-{self._mql_crossings}",
                    f"score {score} reached the MQL threshold ({self.input.mql_threshold})",
                )

    def _stop(self, outcome: NurturingOutcome, reason: str) -> None:
        if self.stop is None:
            self.stop = (outcome, reason)

    # Sales hand-off ------------------------------------------------------------------------
    def _hand_off(self, key: str, reason: str) -> None:
        if key in self._handed_off or self._closing:
            return
        self._handed_off.add(key)
        self._background.append(asyncio.create_task(self._run_task(key, reason)))

    async def _run_task(self, key: str, reason: str) -> None:
        due = add_business_days(workflow.now(), self.input.task_due_business_days)
        created = await self.activity(
            create_sales_task,
            TaskRequest(
                self.input.lead_id,
                workflow.info().workflow_id,
                f"{workflow.info().workflow_id}:{key}{self._run_tag}",
                reason,
                due,
            ),
            summary=f"sales task: {reason}",
        )
        task = self.tasks.setdefault(
            created.task_id,
            TaskView(
                created.task_id, reason, created.assignee_name, created.due_at, created.status
            ),
        )
        workflow.logger.info(
            "nurturing for lead %s: sales task %s (%s)", self.input.lead_id, task.task_id, reason
        )
        await self._notify(task, "assigned")
        await wait_for(lambda: task.status != "open" or self._closing, task.due_at - workflow.now())
        if task.status != "open" or self._closing:
            return
        escalation = await self.activity(escalate_sales_task, TaskRef(task.task_id))
        if task.status == "open":  # not completed by a signal meanwhile
            task.status = escalation.status
        task.escalated = escalation.escalated
        if escalation.escalated:
            await self._notify(task, "escalated")

    async def _notify(self, task: TaskView, kind: str) -> None:
        try:
            notice = await self.activity(notify_sales_task, TaskNotice(task.task_id, kind))
        except ActivityError as err:  # e.g. the SMTP server refused the address for good
            workflow.logger.warning(
                "sales task %s: the %s email failed: %s", task.task_id, kind, err.cause
            )
            return
        if not notice.sent:
            workflow.logger.warning(
                "sales task %s: no %s email: %s", task.task_id, kind, notice.reason
            )

    def _open_tasks(self) -> list[TaskView]:
        return [t for t in self.tasks.values() if t.status == "open"]

    # Sending ---------------------------------------------------------------------------------
    async def _send(self, step: str, template: str) -> SendResult:
        """A step's email; a re-enrolled lead's run keys it apart (``_run_tag``)."""
        result = await self.send(f"{step}{self._run_tag}", template, shown_as=step)
        if result.status == "sent":
            self.steps_sent.append(step)
        return result

    async def _finish(self, outcome: NurturingOutcome, reason: str) -> NurturingResult:
        """The journey's end, once the sales tasks it watches are left to the sales team."""
        self._closing = True  # hand-offs stop watching due dates; none starts any more
        # A meeting booked is the demo goal, for the lead's other journeys too.
        if outcome == NurturingOutcome.CONVERTED and workflow.patched(GOALS_PATCH):
            await reach_goal(self.input.lead_id, DEMO_BOOKED_GOAL)
        await self.settle()
        await asyncio.gather(*self._background)
        self.gate = None
        return self.finish(outcome, reason)

    def result_fields(self) -> dict:
        return dict(
            steps_sent=list(self.steps_sent),
            loops=dict(self.loops),
            downloads=list(self.downloads),
            score=self.score,
            tasks=list(self.tasks.values()),
        )


def _not_sent(result: SendResult) -> NurturingOutcome:
    return NurturingOutcome(not_sent_outcome(result))

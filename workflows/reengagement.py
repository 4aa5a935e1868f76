"""The re-engagement journey (seed 000 "workflow de relance": "no visit for 2 months"; seed 001:
remove the unresponsive). Started by the daily sweep (workflows/sweep.py) for an inactive lead.

    inactive lead ─► consent for email? ──no──► end (reason recorded)
                          │ yes
                          ▼
          email 1 "the best of what you missed" ─► wait 7 days ──┐
          email 2 "what do you want to hear about?" ─► 7 days ───┤ any activity (open, click,
          email 3 "shall we stay in touch?" ─► 7 days ───────────┤ visit, purchase) ─► re-engaged:
                          │ no reaction                          │ points added, journey over
                          ▼
          sunset, per setting: suppress (marketing email consent withdrawn, reason "sunset")
                               or delete (the lead is erased, as for a GDPR request)

    An unsubscribe, at any point, ends the journey at once. The outcome is recorded on the lead.
    Goal: a purchase (workflows/goals.py). Reached, at any point, it ends the journey: converted.

Id ``reengage-<lead id>``; a lead who came back and went quiet again can go through it again,
so every send step carries the date the journey started (the send ledger is keyed by workflow
id + step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from relance.contracts import search_attributes as sa
from relance.contracts.signals import (
    ACTIVITY,
    CLICKED,
    GOAL_REACHED,
    OPENED,
    UNSUBSCRIBED,
    ActivitySignal,
    GoalSignal,
    TrackingSignal,
)
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
    from activities.leads import ConsentQuestion, LeadActivities
    from activities.reengagement import OutcomeRecord, ReEngagementActivities, SunsetRequest
    from activities.scoring import ScoreChange, ScoringActivities
    from activities.sending import SendRequest, SendResult
    from relance.domain.send_window import SendWindow

JOURNEY = "reengage"
GOALS = goals_of(JOURNEY)  # declared in the catalogue
# The three emails, in order: different content each time.
EMAILS = ("reengage_best_of", "reengage_preferences", "reengage_last_call")


@dataclass
class ReEngagementInput:
    lead_id: str
    # Days after email 1 before email 2, after email 2 before email 3, after email 3 before the sunset.
    delays_days: list[float] = field(default_factory=lambda: [7.0, 7.0, 7.0])
    sunset: str = "suppress"  # suppress | delete
    send_window: SendWindow | None = None  # None: the global send window (RELANCE_SEND_WINDOW_*)


@dataclass
class ReEngagementStatus:
    step: str
    reaction: str | None  # what the lead did: opened | clicked | page_view | purchase | ...
    score: int | None
    messages: list[SentMessage] = field(default_factory=list)


@dataclass
class ReEngagementResult:
    # not_sent | re_engaged | unsubscribed | consent_withdrawn | excluded | sunset_suppressed | sunset_deleted | converted
    outcome: str
    reason: str
    reaction: str | None
    score: int | None
    messages: list[SentMessage] = field(default_factory=list)
    rows_deleted: dict[str, int] = field(
        default_factory=dict
    )  # sunset_deleted: what the erasure removed


@workflow.defn(name="ReEngagementJourney")
class ReEngagementJourney:
    @workflow.init
    def __init__(self, input: ReEngagementInput) -> None:
        self.input = input
        self.step = "starting"
        self.reaction: str | None = None
        self.unsubscribed = False
        self.score: int | None = None
        self.messages: list[SentMessage] = []
        self.converted: GoalSignal | None = None

    @workflow.run
    async def run(self, input: ReEngagementInput) -> ReEngagementResult:
        result = await until_goal(self._steps(input), lambda: self.converted is not None)
        if result is None:
            await workflow.wait_condition(workflow.all_handlers_finished)
            await self._record("converted")
            return self._finish(
                "converted", f"goal reached: {self.converted.goal} ({self.converted.source})"
            )
        return result

    async def _steps(self, input: ReEngagementInput) -> ReEngagementResult:
        if len(input.delays_days) != len(
            EMAILS
        ):  # fails the run (a ValueError would retry the task for ever)
            raise ApplicationError(
                f"delays_days needs {len(EMAILS)} values, got {input.delays_days}",
                type="BadJourneyInput",
                non_retryable=True,
            )
        # 1. Consent first (the sweep checked it, but it may have changed since).
        self._enter("checking_consent", "Checking the lead's marketing consent for email")
        consent = await workflow.execute_activity_method(
            LeadActivities.check_consent,
            ConsentQuestion(input.lead_id, "email"),
            **ACTIVITY_OPTIONS,
        )
        if not consent.granted:
            await self._record("not_sent")
            return self._finish("not_sent", consent.reason)
        await self._record("in_journey")

        # 2. Up to three emails, each followed by a wait; any activity of the lead ends the series.
        started_on = workflow.info().start_time.strftime("%Y-%m-%d")
        for number, (template, delay) in enumerate(
            zip(EMAILS, input.delays_days, strict=False), start=1
        ):
            self._enter(
                f"sending_email_{number}", f"Sending re-engagement email {number} ({template})"
            )
            sent = await self._send(f"email_{number}@{started_on}", template)
            if sent.status != "sent":
                if self._reacted_or_left():
                    break
                outcome = (
                    "excluded" if not_sent_outcome(sent) == "excluded" else "consent_withdrawn"
                )
                await self._record(outcome)
                return self._finish(outcome, sent.reason)
            wait = timedelta(days=delay)
            self._enter(
                f"waiting_after_email_{number}",
                f"Email {number} sent; waiting up to {delay:g} days for any activity of the lead",
            )
            if await wait_for(self._reacted_or_left, wait):
                break
        await workflow.wait_condition(workflow.all_handlers_finished)

        # 3. The outcome: came back, left, or sunset.
        if self.unsubscribed:
            await self._record("unsubscribed")
            return self._finish("unsubscribed", "the lead unsubscribed")
        if self.reaction is not None:
            self._enter("re_engaged", f"The lead came back ({self.reaction}): adding points")
            score = await workflow.execute_activity_method(
                ScoringActivities.add_score,
                ScoreChange(
                    lead_id=input.lead_id,
                    event="reengaged",
                    key=f"{workflow.info().workflow_id}:{started_on}:reengaged",
                    reason=f"came back during the re-engagement journey ({self.reaction})",
                ),
                **ACTIVITY_OPTIONS,
            )
            self.score = score.score
            workflow.upsert_search_attributes([sa.SCORE.value_set(score.score)])
            await self._record("re_engaged")
            return self._finish("re_engaged", f"the lead came back: {self.reaction}")
        self._enter("sunset", f"No reaction to {len(EMAILS)} emails: sunset ({input.sunset})")
        sunset = await workflow.execute_activity_method(
            ReEngagementActivities.sunset_lead,
            SunsetRequest(input.lead_id, input.sunset, workflow.info().workflow_id),
            **ACTIVITY_OPTIONS,
        )
        if sunset.policy == "delete":
            result = self._finish(
                "sunset_deleted", "no reaction to the re-engagement emails: lead erased"
            )
            result.rows_deleted = sunset.rows_deleted
            return result
        return self._finish(
            "sunset_suppressed", "no reaction to the re-engagement emails: marketing email stopped"
        )

    # What the lead does ------------------------------------------------------------------
    @workflow.signal(name=OPENED)
    def on_opened(self, signal: TrackingSignal) -> None:
        self.reaction = self.reaction or "opened"

    @workflow.signal(name=CLICKED)
    def on_clicked(self, signal: TrackingSignal) -> None:
        self.reaction = self.reaction or "clicked"

    @workflow.signal(name=ACTIVITY)
    def on_activity(self, signal: ActivitySignal) -> None:
        self.reaction = self.reaction or signal.kind

    @workflow.signal(name=UNSUBSCRIBED)
    def on_unsubscribed(self, signal: TrackingSignal) -> None:
        self.unsubscribed = True

    @workflow.signal(name=GOAL_REACHED)
    def on_goal_reached(self, signal: GoalSignal) -> None:
        if signal.goal in GOALS and self.converted is None:
            self.converted = signal

    @workflow.query(name="status")
    def status(self) -> ReEngagementStatus:
        return ReEngagementStatus(self.step, self.reaction, self.score, list(self.messages))

    # Steps -------------------------------------------------------------------------------
    def _reacted_or_left(self) -> bool:
        return self.reaction is not None or self.unsubscribed

    async def _send(self, step: str, template: str) -> SendResult:
        request = SendRequest(
            lead_id=self.input.lead_id,
            workflow_id=workflow.info().workflow_id,
            journey=JOURNEY,
            step=step,
            template=template,
        )
        result = await send_marketing(
            EmailActivities.send_email,
            request,
            summary=f"email {template}",
            window=self.input.send_window,
            stop=self._reacted_or_left,
        )
        self.messages.append(
            SentMessage(
                step,
                "email",
                template,
                result.status,
                result.message_id,
                workflow.now(),
                result.reason,
            )
        )
        return result

    async def _record(self, status: str) -> None:
        await workflow.execute_activity_method(
            ReEngagementActivities.record_reengagement,
            OutcomeRecord(self.input.lead_id, status),
            **ACTIVITY_OPTIONS,
        )

    def _enter(self, step: str, details: str) -> None:
        self.step = step
        show_step(step, details)
        workflow.logger.info("re-engagement journey for lead %s: %s", self.input.lead_id, details)

    def _finish(self, outcome: str, reason: str) -> ReEngagementResult:
        self._enter("completed", f"Journey over: {outcome} ({reason})")
        return ReEngagementResult(outcome, reason, self.reaction, self.score, list(self.messages))

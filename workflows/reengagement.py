"""The re-engagement journey: win back a lead who has not visited for two months, or stop
writing to them. Started by the daily sweep (workflows/sweep.py) for an inactive lead.

    inactive lead ─► consent for email? ──no──► end: not_sent (the ledger's reason)
                          │ yes
                          ▼
          email 1 "the best of what you missed" ─► wait 7 days ──┐
          email 2 "what do you want to hear about?" ─► 7 days ───┤ any activity (open, click,
          email 3 "shall we stay in touch?" ─► 7 days ───────────┤ visit, purchase) ─► re-engaged:
                          │ no reaction                          │ points added, journey over
                          │                                      │ (re_engaged)
                          ▼
          sunset, per setting: suppress (marketing email consent withdrawn, reason "sunset":
                               sunset_suppressed) or delete (the lead is erased, as for a GDPR
                               request: sunset_deleted)

    An email not sent ends the journey: excluded (the journey's exclusions refused it) or
    consent_withdrawn. An unsubscribe, at any point, ends the journey at once (unsubscribed).
    Goal: a purchase (declared in the catalogue). Reached, at any point, it ends the journey:
    converted. The outcome is recorded on the lead.

Id ``reengage-<lead id>``; a lead who came back and went quiet again can go through it again,
so every send step carries the date the journey started (the send ledger is keyed by workflow
id + step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from relance.contracts.signals import (
    ACTIVITY,
    CLICKED,
    OPENED,
    ActivitySignal,
    TrackingSignal,
)
from workflows.goals import goals_of
from workflows.journey import Journey
from workflows.steps import JourneyResult, JourneyStatus, not_sent_outcome

with workflow.unsafe.imports_passed_through():
    from relance.contracts.reengagement import (
        OutcomeRecord,
        SunsetRequest,
        record_reengagement,
        sunset_lead,
    )
    from relance.domain.send_window import SendWindow

JOURNEY = "reengage"
GOALS = goals_of(JOURNEY)  # declared in the catalogue
# The three emails, in order: different content each time.
EMAILS = ("reengage_best_of", "reengage_preferences", "reengage_last_call")


class ReEngagementOutcome(StrEnum):
    """Also recorded on the lead (``OutcomeRecord.status``), with ``in_journey`` while it runs."""

    NOT_SENT = "not_sent"
    RE_ENGAGED = "re_engaged"
    UNSUBSCRIBED = "unsubscribed"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    EXCLUDED = "excluded"
    SUNSET_SUPPRESSED = "sunset_suppressed"
    SUNSET_DELETED = "sunset_deleted"
    CONVERTED = "converted"


IN_JOURNEY = "in_journey"  # what the lead's record says while the journey runs


@dataclass
class ReEngagementInput:
    lead_id: str
    # Days after email 1 before email 2, after email 2 before email 3, after email 3 before the
    # sunset.
    delays_days: list[float] = field(default_factory=lambda: [7.0, 7.0, 7.0])
    sunset: str = "suppress"  # suppress | delete
    send_window: SendWindow | None = None  # None: the global send window (RELANCE_SEND_WINDOW_*)


@dataclass
class ReEngagementStatus(JourneyStatus):
    reaction: str | None  # what the lead did: opened | clicked | page_view | purchase | ...
    score: int | None


@dataclass
class ReEngagementResult(JourneyResult):
    outcome: ReEngagementOutcome
    reaction: str | None
    score: int | None
    # sunset_deleted: what the erasure removed
    rows_deleted: dict[str, int] = field(default_factory=dict)


@workflow.defn(name="ReEngagementJourney")
class ReEngagementJourney(Journey):
    NAME, GOALS, LOG_NAME, RESULT = JOURNEY, GOALS, "re-engagement journey", ReEngagementResult

    @workflow.init
    def __init__(self, input: ReEngagementInput) -> None:
        super().__init__(input.lead_id, input.send_window)
        self.input = input
        self.reaction: str | None = None

    @workflow.run
    async def run(self, input: ReEngagementInput) -> ReEngagementResult:
        result = await self.until_goal(self._steps(input))
        if result is None:
            return await self._end(ReEngagementOutcome.CONVERTED, self.goal_reason)
        return result

    async def _steps(self, input: ReEngagementInput) -> ReEngagementResult:
        if len(input.delays_days) != len(EMAILS):
            # Fails the run (a ValueError would retry the task for ever).
            raise ApplicationError(
                f"delays_days needs {len(EMAILS)} values, got {input.delays_days}",
                type="BadJourneyInput",
                non_retryable=True,
            )
        # 1. Consent first (the sweep checked it, but it may have changed since).
        consent = await self.consent_step("email")
        if not consent.granted:
            return await self._end(ReEngagementOutcome.NOT_SENT, consent.reason)
        await self._record(IN_JOURNEY)

        # 2. Up to three emails, each followed by a wait; any activity of the lead ends the series.
        started_on = workflow.info().start_time.strftime("%Y-%m-%d")
        for number, (template, delay) in enumerate(
            zip(EMAILS, input.delays_days, strict=False), start=1
        ):
            self.enter(
                f"sending_email_{number}", f"Sending re-engagement email {number} ({template})"
            )
            sent = await self.send(f"email_{number}@{started_on}", template)
            if sent.status != "sent":
                if self.stopped():
                    break
                if not_sent_outcome(sent) == "excluded":
                    return await self._end(ReEngagementOutcome.EXCLUDED, sent.reason)
                return await self._end(ReEngagementOutcome.CONSENT_WITHDRAWN, sent.reason)
            if await self.wait(
                f"waiting_after_email_{number}",
                f"Email {number} sent; waiting up to {delay:g} days for any activity of the lead",
                self.stopped,
                timedelta(days=delay),
            ):
                break
        await self.settle()

        # 3. The outcome: came back, left, or sunset.
        if self.unsubscribed:
            return await self._end(ReEngagementOutcome.UNSUBSCRIBED, "the lead unsubscribed")
        if self.reaction is not None:
            self.enter("re_engaged", f"The lead came back ({self.reaction}): adding points")
            score = await self.add_score(
                "reengaged",
                f"{workflow.info().workflow_id}:{started_on}:reengaged",
                f"came back during the re-engagement journey ({self.reaction})",
            )
            self.set_score(score.score)
            return await self._end(
                ReEngagementOutcome.RE_ENGAGED, f"the lead came back: {self.reaction}"
            )
        self.enter("sunset", f"No reaction to {len(EMAILS)} emails: sunset ({input.sunset})")
        sunset = await self.activity(
            sunset_lead, SunsetRequest(input.lead_id, input.sunset, workflow.info().workflow_id)
        )
        if sunset.policy == "delete":
            return self.finish(
                ReEngagementOutcome.SUNSET_DELETED,
                "no reaction to the re-engagement emails: lead erased",
                rows_deleted=sunset.rows_deleted,
            )
        return self.finish(
            ReEngagementOutcome.SUNSET_SUPPRESSED,
            "no reaction to the re-engagement emails: marketing email stopped",
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

    @workflow.query(name="status")
    def status(self) -> ReEngagementStatus:
        return ReEngagementStatus(
            step=self.step, reaction=self.reaction, score=self.score, messages=list(self.messages)
        )

    # Steps -------------------------------------------------------------------------------
    def stopped(self) -> bool:
        """The lead reacted (any activity) or left: no more emails of the series."""
        return self.reaction is not None or self.unsubscribed

    async def _record(self, status: str) -> None:
        await self.activity(record_reengagement, OutcomeRecord(self.input.lead_id, status))

    async def _end(self, outcome: ReEngagementOutcome, reason: str) -> ReEngagementResult:
        """The journey's end, recorded on the lead (a sunset records itself)."""
        await self._record(outcome)
        return self.finish(outcome, reason)

    def result_fields(self) -> dict:
        return dict(reaction=self.reaction, score=self.score)

"""The welcome journey (seed 002 "workflow de bienvenue", seed 000 "relance après 48 h").

    sign-up ─► consent for email? ──no──► end (reason recorded)
                   │           │ pending (double opt-in)
                   │           ▼
                   │      confirmation email (transactional) ─► wait up to 48 h for the click
                   │           │ confirmed                         │ nothing (or unsubscribed)
                   │◄──────────┘                                   ▼
                   │ yes                                   end: not_confirmed, no marketing email ever
                   ▼
         new contact? ─► "welcome" email     already a contact? ─► "other content" email
                   │
                   ▼
         wait up to 48 h for an open or a click
                   │ nothing
                   ▼
         relance: SMS if the lead has a phone and SMS consent, else an email with another subject
                   │
                   ▼
         count clicks (score) until the engagement window closes; a click ends the journey

    An unsubscribe, at any point, ends the journey at once.
    Goal: a purchase (workflows/goals.py). Reached, at any point, it ends the journey: converted.

Inputs are ids and knobs only; every fact about the lead comes from an activity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow

from relance.contracts import search_attributes as sa
from relance.contracts.signals import (
    CLICKED,
    EMAIL_CONFIRMED,
    GOAL_REACHED,
    OPENED,
    UNSUBSCRIBED,
    GoalSignal,
    TrackingSignal,
)
from workflows.goals import goals_of
from workflows.steps import (
    ACTIVITY_OPTIONS,
    SentMessage,
    send_marketing,
    show_step,
    until_goal,
    wait_for,
)

with workflow.unsafe.imports_passed_through():
    from activities.email import EmailActivities
    from activities.leads import ConsentQuestion, LeadActivities, LeadFacts, LeadRef
    from activities.scoring import ScoreChange, ScoringActivities
    from activities.sending import SendRequest, SendResult
    from activities.sms import SmsActivities
    from relance.domain.send_window import SendWindow

JOURNEY = "welcome"
GOALS = goals_of(JOURNEY)  # declared in the catalogue
DOUBLE_OPT_IN_PATCH = "double-opt-in"  # journeys started before it never wait for a confirmation


@dataclass
class WelcomeInput:
    lead_id: str
    relance_after_hours: float = 48.0
    relance_by_sms: bool = True  # relance by SMS when the lead has a phone and SMS consent
    engagement_window_days: float = 7.0  # how long after the welcome clicks still count
    send_window: SendWindow | None = None  # None: the global send window (RELANCE_SEND_WINDOW_*)
    confirm_within_hours: float = (
        48.0  # double opt-in: how long the lead has to confirm (RELANCE_DOUBLE_OPT_IN_HOURS)
    )


@dataclass
class WelcomeStatus:
    step: str
    opened: bool
    clicked: bool
    score: int
    messages: list[SentMessage] = field(default_factory=list)


@dataclass
class WelcomeResult:
    outcome: str  # not_sent | not_confirmed | clicked | opened | no_reaction | unsubscribed | converted (a goal was reached)
    reason: str
    opened: bool
    clicked: bool
    relanced_by: str | None  # email | sms | None
    score: int
    messages: list[SentMessage] = field(default_factory=list)


@workflow.defn(name="WelcomeJourney")
class WelcomeJourney:
    @workflow.init
    def __init__(self, input: WelcomeInput) -> None:
        self.input = input
        self.step = "starting"
        self.opened = False
        self.clicked = False
        self.unsubscribed = False
        self.score = 0
        self.messages: list[SentMessage] = []
        self._scored_messages: set[str] = set()
        self.converted: GoalSignal | None = None
        self.confirmed = False  # double opt-in: the lead clicked the confirmation link
        self.confirming = False  # opens and clicks of the confirmation email are not engagement

    @workflow.run
    async def run(self, input: WelcomeInput) -> WelcomeResult:
        result = await until_goal(self._steps(input), lambda: self.converted is not None)
        if result is None:
            await workflow.wait_condition(workflow.all_handlers_finished)
            return self._finish(
                "converted", f"goal reached: {self.converted.goal} ({self.converted.source})"
            )
        return result

    async def _steps(self, input: WelcomeInput) -> WelcomeResult:
        # 1. Consent first: no marketing email without it.
        self._enter("checking_consent", "Checking the lead's marketing consent for email")
        consent = await workflow.execute_activity_method(
            LeadActivities.check_consent,
            ConsentQuestion(input.lead_id, "email"),
            **ACTIVITY_OPTIONS,
        )
        if not consent.granted:
            if not (consent.pending and workflow.patched(DOUBLE_OPT_IN_PATCH)):
                return self._finish("not_sent", consent.reason)
            # 1b. Double opt-in: nothing but the confirmation email until the lead confirms.
            ended = await self._confirm(input, consent.pending_id)
            if ended is not None:
                return ended
        facts = await workflow.execute_activity_method(
            LeadActivities.get_lead_facts, LeadRef(input.lead_id), **ACTIVITY_OPTIONS
        )
        self._set_score(facts.score)

        # 2. Welcome a new contact; offer other content to someone already known.
        template = "welcome_known" if facts.known_contact else "welcome_new"
        self._enter("sending_welcome", f"Sending the welcome email ({template})")
        welcome = await self._send("welcome", "email", template)
        if welcome.status != "sent":
            return self._finish("not_sent", welcome.reason)
        window_end = workflow.now() + timedelta(days=input.engagement_window_days)

        # 3. Wait for the lead to open or click.
        wait = timedelta(hours=input.relance_after_hours)
        self._enter(
            "waiting_for_open",
            f"Welcome email sent; waiting up to {_hours(wait)} for an open or a click",
        )
        engaged = await wait_for(lambda: self.opened or self.clicked or self.unsubscribed, wait)

        # 4. Nothing: relance, by SMS when allowed, else by email with another subject.
        relanced_by = None if engaged else await self._relance(facts)

        # 5. Clicks are what we want: count them until the window closes, end at the first one.
        if not (self.clicked or self.unsubscribed):
            self._enter(
                "waiting_for_click", f"Counting clicks until {window_end:%Y-%m-%d %H:%M} UTC"
            )
            await wait_for(lambda: self.clicked or self.unsubscribed, window_end - workflow.now())
        await workflow.wait_condition(workflow.all_handlers_finished)

        outcome = (
            "unsubscribed"
            if self.unsubscribed
            else "clicked"
            if self.clicked
            else "opened"
            if self.opened
            else "no_reaction"
        )
        reasons = {
            "unsubscribed": "the lead unsubscribed",
            "clicked": "the lead clicked a link",
            "opened": "the lead opened the welcome email but did not click",
            "no_reaction": "no open or click before the engagement window closed",
        }
        return self._finish(outcome, reasons[outcome], relanced_by)

    # What the lead does ------------------------------------------------------------------
    @workflow.signal(name=OPENED)
    def on_opened(self, signal: TrackingSignal) -> None:
        if not self.confirming:
            self.opened = True

    @workflow.signal(name=CLICKED)
    async def on_clicked(self, signal: TrackingSignal) -> None:
        if self.confirming:
            return
        self.clicked = True
        self.opened = True  # a click implies the message was seen, even with images blocked
        if signal.message_id in self._scored_messages:
            return  # one score per message, however many clicks or link scanners
        self._scored_messages.add(signal.message_id)
        step = next((m.step for m in self.messages if m.message_id == signal.message_id), "a")
        result = await workflow.execute_activity_method(
            ScoringActivities.add_score,
            ScoreChange(
                lead_id=self.input.lead_id,
                event="email_clicked",
                key=f"{workflow.info().workflow_id}:click:{signal.message_id}",
                reason=f"clicked a link in the {step} message of the welcome journey",
            ),
            **ACTIVITY_OPTIONS,
        )
        self._set_score(result.score)

    @workflow.signal(name=EMAIL_CONFIRMED)
    def on_email_confirmed(self, signal: TrackingSignal) -> None:
        self.confirmed = True  # the grant is in the ledger already (GET /confirm/{token})

    @workflow.signal(name=UNSUBSCRIBED)
    def on_unsubscribed(self, signal: TrackingSignal) -> None:
        self.unsubscribed = True  # the withdrawal is in the ledger already; sends would be refused

    @workflow.signal(name=GOAL_REACHED)
    def on_goal_reached(self, signal: GoalSignal) -> None:
        if signal.goal in GOALS and self.converted is None:
            self.converted = signal

    @workflow.query(name="status")
    def status(self) -> WelcomeStatus:
        return WelcomeStatus(self.step, self.opened, self.clicked, self.score, list(self.messages))

    # Steps -------------------------------------------------------------------------------
    async def _confirm(self, input: WelcomeInput, pending_id: int) -> WelcomeResult | None:
        """Double opt-in: send the confirmation email (transactional: no send window, no cap, not
        blocked by the pending consent) and wait for the click. None when the lead confirmed and
        the consent ledger now says granted; else the journey's end.

        The send is keyed by the pending ledger row: a lead who let one confirmation lapse and
        signs up again (a new journey, relance/services/journeys.py) gets a new email, a retry never two."""
        self.confirming = True
        self._enter(
            "sending_confirmation",
            "Email consent pending: sending the confirmation email (double opt-in)",
        )
        step = f"confirm-{pending_id}"
        request = SendRequest(
            lead_id=input.lead_id,
            workflow_id=workflow.info().workflow_id,
            journey=JOURNEY,
            step=step,
            template="welcome_confirm",
            kind="transactional",
        )
        sent = await workflow.execute_activity_method(
            EmailActivities.send_email, request, summary="email welcome_confirm", **ACTIVITY_OPTIONS
        )
        self.messages.append(
            SentMessage(
                step,
                "email",
                "welcome_confirm",
                sent.status,
                sent.message_id,
                workflow.now(),
                sent.reason,
            )
        )
        if sent.status != "sent":
            return self._finish("not_sent", f"the confirmation email was not sent: {sent.reason}")
        wait = timedelta(hours=input.confirm_within_hours)
        self._enter(
            "awaiting_confirmation",
            f"Confirmation email sent; waiting up to {_hours(wait)} for the lead to click its link",
        )
        await wait_for(lambda: self.confirmed or self.unsubscribed, wait)
        self.confirming = False
        if self.unsubscribed:
            return self._finish("unsubscribed", "the lead unsubscribed before confirming")
        # The ledger decides, not the signal: granted by the click, or meanwhile by an import.
        consent = await workflow.execute_activity_method(
            LeadActivities.check_consent,
            ConsentQuestion(input.lead_id, "email"),
            **ACTIVITY_OPTIONS,
        )
        if consent.granted:
            return None
        if self.confirmed:
            return self._finish("not_sent", consent.reason)
        return self._finish(
            "not_confirmed",
            f"the lead did not confirm the subscription within {_hours(wait)}; "
            "no marketing email is sent",
        )

    async def _relance(self, facts: LeadFacts) -> str | None:
        if self.input.relance_by_sms and facts.has_phone:
            sms_consent = await workflow.execute_activity_method(
                LeadActivities.check_consent,
                ConsentQuestion(self.input.lead_id, "sms"),
                **ACTIVITY_OPTIONS,
            )
            if sms_consent.granted:
                self._enter("sending_relance", "No open after the wait: relance by SMS")
                if (await self._send("relance_sms", "sms", "welcome_relance")).status == "sent":
                    return "sms"
        self._enter(
            "sending_relance", "No open after the wait: relance by email with another subject"
        )
        if (await self._send("relance_email", "email", "welcome_relance")).status == "sent":
            return "email"
        return None

    async def _send(self, step: str, channel: str, template: str) -> SendResult:
        request = SendRequest(
            lead_id=self.input.lead_id,
            workflow_id=workflow.info().workflow_id,
            journey=JOURNEY,
            step=step,
            template=template,
        )
        method = EmailActivities.send_email if channel == "email" else SmsActivities.send_sms
        result = await send_marketing(
            method,
            request,
            summary=f"{channel} {template}",
            window=self.input.send_window,
            stop=lambda: self.unsubscribed,
        )
        self.messages.append(
            SentMessage(
                step,
                channel,
                template,
                result.status,
                result.message_id,
                workflow.now(),
                result.reason,
            )
        )
        return result

    # What the Temporal UI shows -----------------------------------------------------------
    def _enter(self, step: str, details: str) -> None:
        self.step = step
        show_step(step, details)
        workflow.logger.info("welcome journey for lead %s: %s", self.input.lead_id, details)

    def _set_score(self, score: int) -> None:
        self.score = score
        workflow.upsert_search_attributes([sa.SCORE.value_set(score)])

    def _finish(self, outcome: str, reason: str, relanced_by: str | None = None) -> WelcomeResult:
        self._enter("completed", f"Journey over: {outcome} ({reason})")
        return WelcomeResult(
            outcome, reason, self.opened, self.clicked, relanced_by, self.score, list(self.messages)
        )


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:g} h"

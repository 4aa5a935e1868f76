"""The welcome journey: greet a new sign-up, and relance a lead who did not react in 48 h.

    sign-up ─► consent for email? ──no──► end: not_sent (the ledger's reason)
                   │           │ pending (double opt-in)
                   │           ▼
                   │      confirmation email (transactional) ─► wait up to 48 h for the click
                   │           │ clicked, and the ledger says granted   │ nothing
                   │◄──────────┘                                        ▼
                   │ yes                          end: not_confirmed, no marketing email ever
                   ▼
         new contact? ─► "welcome" email     already a contact? ─► "other content" email
                   │ (not sent ─► end: not_sent)
                   ▼
         wait up to 48 h for an open or a click
                   │ nothing
                   ▼
         relance: on the best channel the lead accepts (SMS if the lead has a phone and SMS
                  consent, else an email with another subject; RELANCE_WELCOME_RELANCE_CHANNELS)
                   │
                   ▼
         count clicks (score) until the engagement window closes; a click ends the journey
                   ▼
         end: clicked, opened (no click) or no_reaction

    An unsubscribe, at any point, ends the journey at once (unsubscribed).
    Goal: a purchase (declared in the catalogue). Reached, at any point, it ends the journey:
    converted.

Inputs are ids and knobs only; every fact about the lead comes from an activity.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from temporalio import workflow

from relance.contracts.channels import channel_label
from relance.contracts.signals import CLICKED, EMAIL_CONFIRMED, OPENED, TrackingSignal
from workflows.goals import goals_of
from workflows.journey import Journey
from workflows.steps import JourneyResult, JourneyStatus, wait_for

with workflow.unsafe.imports_passed_through():
    from relance.contracts.leads import LeadFacts
    from relance.contracts.sending import SendResult
    from relance.domain.send_window import SendWindow

JOURNEY = "welcome"
GOALS = goals_of(JOURNEY)  # declared in the catalogue
DOUBLE_OPT_IN_PATCH = "double-opt-in"  # journeys started before it never wait for a confirmation


class WelcomeOutcome(StrEnum):
    NOT_SENT = "not_sent"
    NOT_CONFIRMED = "not_confirmed"  # double opt-in: the lead never confirmed
    CLICKED = "clicked"
    OPENED = "opened"
    NO_REACTION = "no_reaction"
    UNSUBSCRIBED = "unsubscribed"
    CONVERTED = "converted"  # a goal was reached


@dataclass
class WelcomeInput:
    lead_id: str
    relance_after_hours: float = 48.0
    relance_by_sms: bool = True  # relance by SMS when the lead has a phone and SMS consent
    # The relance's channels, best first (relance/contracts/channels.py), e.g. ["webhook", "sms",
    # "email"]; None: SMS then email, as ``relance_by_sms`` says.
    relance_channels: list[str] | None = None
    engagement_window_days: float = 7.0  # how long after the welcome clicks still count
    send_window: SendWindow | None = None  # None: the global send window (RELANCE_SEND_WINDOW_*)
    # Double opt-in: how long the lead has to confirm (RELANCE_DOUBLE_OPT_IN_HOURS).
    confirm_within_hours: float = 48.0


@dataclass
class WelcomeStatus(JourneyStatus):
    opened: bool
    clicked: bool
    score: int


@dataclass
class WelcomeResult(JourneyResult):
    outcome: WelcomeOutcome
    opened: bool
    clicked: bool
    score: int
    # The channel that relanced (email, sms, webhook...); None: none did, or the journey ended
    # before its end of steps (unsubscribed while confirming, not sent, converted).
    relanced_by: str | None = None


@workflow.defn(name="WelcomeJourney")
class WelcomeJourney(Journey):
    NAME, GOALS, LOG_NAME, RESULT = JOURNEY, GOALS, "welcome journey", WelcomeResult

    @workflow.init
    def __init__(self, input: WelcomeInput) -> None:
        super().__init__(input.lead_id, input.send_window)
        self.input = input
        self.opened = False
        self.clicked = False
        self.score = 0
        self.confirmed = False  # double opt-in: the lead clicked the confirmation link
        self.confirming = False  # opens and clicks of the confirmation email are not engagement
        self.window_end: datetime | None = None  # when clicks stop counting

    @workflow.run
    async def run(self, input: WelcomeInput) -> WelcomeResult:
        result = await self.until_goal(self._steps(input))
        if result is None:
            return self.finish(WelcomeOutcome.CONVERTED, self.goal_reason)
        return result

    async def _steps(self, input: WelcomeInput) -> WelcomeResult:
        # 1. Consent first: no marketing email without it.
        consent = await self.consent_step("email")
        if not consent.granted:
            if not (consent.pending and (self.lean or workflow.patched(DOUBLE_OPT_IN_PATCH))):
                return self.finish(WelcomeOutcome.NOT_SENT, consent.reason)
            # 1b. Double opt-in: nothing but the confirmation email until the lead confirms.
            ended = await self._double_opt_in(input, consent.pending_id)
            if ended is not None:
                return ended
        facts = await self.refresh_score()

        # 2. Welcome a new contact; offer other content to someone already known.
        template = "welcome_known" if facts.known_contact else "welcome_new"
        self.enter("sending_welcome", f"Sending the welcome email ({template})")
        welcome = await self.send("welcome", template)
        if welcome.status != "sent":
            return self.finish(WelcomeOutcome.NOT_SENT, welcome.reason)
        window_end = workflow.now() + timedelta(days=input.engagement_window_days)

        # 3. Wait for the lead to open or click.
        wait = timedelta(hours=input.relance_after_hours)
        if self.lean:
            engaged = await self._wait_for_engagement(wait, window_end)
        else:
            engaged = await self.wait(
                "waiting_for_open",
                f"Welcome email sent; waiting up to {_hours(wait)} for an open or a click",
                lambda: self.opened or self.clicked or self.unsubscribed,
                wait,
            )

        # 4. Nothing: the relance, on the best channel the lead accepts.
        relanced_by = None if engaged else await self._relance(facts)

        # 5. Clicks are what we want: count them until the window closes, end at the first one.
        if self.step == "waiting_for_click":  # an open showed it already, during the wait
            await wait_for(lambda: self.clicked or self.unsubscribed, window_end - workflow.now())
        elif not (self.clicked or self.unsubscribed):
            await self.wait(
                "waiting_for_click",
                f"Counting clicks until {window_end:%Y-%m-%d %H:%M} UTC",
                lambda: self.clicked or self.unsubscribed,
                window_end - workflow.now(),
            )
        await self.settle()

        if self.unsubscribed:
            return self.finish(
                WelcomeOutcome.UNSUBSCRIBED, "the lead unsubscribed", relanced_by=relanced_by
            )
        if self.clicked:
            return self.finish(
                WelcomeOutcome.CLICKED, "the lead clicked a link", relanced_by=relanced_by
            )
        if self.opened:
            return self.finish(
                WelcomeOutcome.OPENED,
                "the lead opened the welcome email but did not click",
                relanced_by=relanced_by,
            )
        return self.finish(
            WelcomeOutcome.NO_REACTION,
            "no open or click before the engagement window closed",
            relanced_by=relanced_by,
        )

    # What the lead does ------------------------------------------------------------------
    @workflow.signal(name=OPENED)
    def on_opened(self, signal: TrackingSignal) -> None:
        if self.confirming:
            return
        if not self.opened and self.step == "waiting_for_open" and self.lean:
            self._counting_clicks()  # the wait goes on, now for a click
        self.opened = True

    @workflow.signal(name=CLICKED)
    async def on_clicked(self, signal: TrackingSignal) -> None:
        if self.confirming:
            return
        self.clicked = True
        self.opened = True  # a click implies the message was seen, even with images blocked
        scored = await self.score_click(
            signal, "clicked a link in the {step} message of the welcome journey"
        )
        if scored is not None:
            self.set_score(scored.score)

    @workflow.signal(name=EMAIL_CONFIRMED)
    def on_email_confirmed(self, signal: TrackingSignal) -> None:
        self.confirmed = True  # the grant is in the ledger already (GET /confirm/{token})

    @workflow.query(name="status")
    def status(self) -> WelcomeStatus:
        return WelcomeStatus(
            step=self.step,
            opened=self.opened,
            clicked=self.clicked,
            score=self.score,
            messages=list(self.messages),
        )

    # Steps -------------------------------------------------------------------------------
    async def _double_opt_in(self, input: WelcomeInput, pending_id: int) -> WelcomeResult | None:
        """Send the confirmation email (transactional: no send window, no cap, not blocked by the
        pending consent) and wait for the click. None when the lead confirmed and the consent
        ledger now says granted; else the journey's end.

        The send is keyed by the pending ledger row: a lead who let one confirmation lapse and
        signs up again (a new journey, relance/services/journeys.py) gets a new email, a retry
        never two."""
        self.confirming = True
        self.enter(
            "sending_confirmation",
            "Email consent pending: sending the confirmation email (double opt-in)",
        )
        sent = await self.send_now(f"confirm-{pending_id}", "welcome_confirm", kind="transactional")
        if sent.status != "sent":
            return self.finish(
                WelcomeOutcome.NOT_SENT, f"the confirmation email was not sent: {sent.reason}"
            )
        wait = timedelta(hours=input.confirm_within_hours)
        await self.wait(
            "awaiting_confirmation",
            f"Confirmation email sent; waiting up to {_hours(wait)} for the lead to click its link",
            lambda: self.confirmed or self.unsubscribed,
            wait,
        )
        self.confirming = False
        if self.unsubscribed:
            return self.finish(
                WelcomeOutcome.UNSUBSCRIBED, "the lead unsubscribed before confirming"
            )
        # The ledger decides, not the signal: granted by the click, or meanwhile by an import.
        consent = await self.check_consent("email")
        if consent.granted:
            return None
        if self.confirmed:
            return self.finish(WelcomeOutcome.NOT_SENT, consent.reason)
        return self.finish(
            WelcomeOutcome.NOT_CONFIRMED,
            f"the lead did not confirm the subscription within {_hours(wait)}; "
            "no marketing email is sent",
        )

    async def _wait_for_engagement(self, wait: timedelta, window_end: datetime) -> bool:
        """Wait up to ``wait`` for an open or a click (True), on one timer: an open shows the
        next step (counting clicks) at once, but only a click (or an unsubscribe) ends the wait
        early. Opened and no click when it ends: the click wait goes on until the window closes,
        as it did when an open ended this wait (then a second timer was started at once)."""
        self.window_end = window_end
        if self.opened or self.clicked or self.unsubscribed:
            return True  # before the wait began (while the welcome was being sent)
        await self.wait(
            "waiting_for_open",
            f"Welcome email sent; waiting up to {_hours(wait)} for an open or a click",
            lambda: self.clicked or self.unsubscribed,
            wait,
        )
        return self.opened or self.clicked or self.unsubscribed

    def _counting_clicks(self) -> None:
        self.enter(
            "waiting_for_click", f"Counting clicks until {self.window_end:%Y-%m-%d %H:%M} UTC"
        )

    async def _relance(self, facts: LeadFacts) -> str | None:
        """On the best channel the lead accepts, of the journey's preference (email last)."""
        channels = self.input.relance_channels or (
            ["sms", "email"] if self.input.relance_by_sms else ["email"]
        )
        relanced_by, _ = await self.send_best(channels, self._relance_on, facts=facts)
        return relanced_by

    async def _relance_on(self, channel: str) -> SendResult:
        self.enter(
            "sending_relance", f"No open after the wait: relance by {channel_label(channel)}"
        )
        return await self.send(f"relance_{channel}", "welcome_relance", channel)

    def result_fields(self) -> dict:
        return dict(opened=self.opened, clicked=self.clicked, score=self.score)


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:g} h"

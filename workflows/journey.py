"""The frame every journey shares, so that each journey's module keeps only its diagram.

A journey (``@workflow.defn`` class) derives from ``Journey`` and calls ``super().__init__`` from
its ``@workflow.init``. It gets:

- the current step and what the Temporal UI shows of it (``enter``: the ``Step`` search
  attribute and the current details), and the journey's end (``close``);
- the messages it sent (``messages``: each send recorded as a ``SentMessage``), ``send`` (a
  marketing message: send window, frequency cap, stopped by ``stopped()``) and ``send_now`` (a
  message the lead asked for, or a transactional one: sent at once), both built with the journey's
  workflow id and name — the one place journeys build a ``SendRequest``; the channel's activity
  comes from the channel list (``send_on``, relance/contracts/channels.py);
- the unsubscribe and goal signals (``unsubscribed``, ``converted``; same signal names as ever),
  ``until_goal`` to run the steps until a goal ends them;
- the lead's score as the journey knows it (``set_score``: also its ``Score`` search attribute)
  and ``score_click`` (one score per message clicked, however many clicks);
- ``wait`` (show the waiting step, then a durable timer that a condition ends early) and
  ``wait_quiet`` (until nothing changed for a while: each change restarts the clock);
- what a journey asks about its lead (``check_consent``, ``consent_step``, ``lead_facts``,
  ``refresh_score``), scores (``add_score``), promo codes (``promo_code``), ``send_best`` (the
  best channel the lead accepts) and ``activity`` (any other step's activity, retried like all);
- its end: ``finish`` (the last step shown, and the journey's result: its ``RESULT`` type, a
  ``JourneyResult`` with the journey's ``result_fields()``).

Fewer Temporal actions (each billed; ``FEWER_ACTIONS_PATCH``, for journeys started since): a
journey reads its lead in one activity (``read_lead``: the consent asked, the facts and the send
profile), and what it read at this very moment is not read again (``lead_facts``, the send
window of the next send); only the steps a journey stays in are searchable (a wait, its end;
not the moments it checks or sends: ``MOMENTS``; the current details still show them), and the
score goes in the same upsert as the next searchable step.

Temporal's ``@workflow.defn`` registers the signal handlers a class inherits (the handlers are
looked up on the class with its bases); a journey that overrides one decorates it again with the
same signal name. Every helper issues exactly the commands the journeys issued when each carried
its own copy, so the saved histories (tests/histories) still replay.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar

from temporalio import workflow

from relance.contracts import search_attributes as sa
from relance.contracts.channels import channel as channel_named
from relance.contracts.signals import GOAL_REACHED, UNSUBSCRIBED, GoalSignal, TrackingSignal
from workflows.steps import (
    ACTIVITY_OPTIONS,
    FEWER_ACTIONS_PATCH,
    JourneyResult,
    SentMessage,
    send_on,
    show_step,
    until_goal,
    wait_for,
)

with workflow.unsafe.imports_passed_through():
    from relance.contracts import commerce, leads, scoring
    from relance.contracts.commerce import PromoRequest
    from relance.contracts.leads import (
        ConsentAnswer,
        ConsentQuestion,
        LeadFacts,
        LeadQuestion,
        LeadReading,
        LeadRef,
        SendProfile,
    )
    from relance.contracts.scoring import ScoreChange, ScoreResult
    from relance.contracts.sending import SendRequest, SendResult
    from relance.domain.send_window import SendWindow

T = TypeVar("T")

# Steps that are a moment, not a place: the journey checks or sends and moves on. With
# ``FEWER_ACTIONS_PATCH`` they are shown in the current details only, not in the ``Step`` search
# attribute (nobody searches for journeys in the middle of a send).
MOMENTS = ("checking_", "sending_", "reading_", "finding_")


class Journey:
    """The common frame of a journey (see the module's docstring)."""

    NAME: ClassVar[str] = ""  # the journey's name in the send ledger (``SendRequest.journey``)
    GOALS: ClassVar[tuple[str, ...]] = ()  # the goals that end it as converted (workflows/goals.py)
    LOG_NAME: ClassVar[str] = ""  # how the worker's log names it ("" = no log line per step)
    RESULT: ClassVar[type[JourneyResult]] = JourneyResult  # what ``finish`` returns

    def __init__(self, lead_id: str, send_window: SendWindow | None = None) -> None:
        self.lead_id = lead_id
        self.send_window = send_window  # None: the global send window (RELANCE_SEND_WINDOW_*)
        self.step = "starting"
        self.messages: list[SentMessage] = []
        self.unsubscribed = False
        self.converted: GoalSignal | None = None  # the goal that ended the journey, if any
        self.score: int | None = None
        self._scored_messages: set[str] = set()
        self._lean: bool | None = None  # FEWER_ACTIONS_PATCH, asked once (``lean``)
        self._reading: LeadReading | None = None  # the last ``read_lead``, and when
        self._read_at: datetime | None = None

    @property
    def lean(self) -> bool:
        """Whether this run has ``FEWER_ACTIONS_PATCH`` (journeys started before it replay as
        they ran)."""
        if self._lean is None:
            self._lean = workflow.patched(FEWER_ACTIONS_PATCH)
        return self._lean

    # What the lead does, for every journey ---------------------------------------------------
    @workflow.signal(name=UNSUBSCRIBED)
    def on_unsubscribed(self, signal: TrackingSignal) -> None:
        self.unsubscribed = True  # the withdrawal is in the ledger already; sends would be refused
        self.lead_unsubscribed()

    @workflow.signal(name=GOAL_REACHED)
    def on_goal_reached(self, signal: GoalSignal) -> None:
        if signal.goal in self.GOALS and self.converted is None:
            self.converted = signal
            self.goal_reached(signal)

    def lead_unsubscribed(self) -> None:
        """What else the journey does when the lead unsubscribes (``unsubscribed`` is set)."""

    def goal_reached(self, signal: GoalSignal) -> None:
        """What else the journey does when one of its goals is reached (``converted`` is set)."""

    def stopped(self) -> bool:
        """Whether a marketing message waiting for its moment should not go out any more."""
        return self.unsubscribed

    async def until_goal(self, body: Awaitable[T]) -> T | None:
        """Run the steps until they end, or a goal is reached: then None, the steps stopped
        wherever they were and the signal handlers still running (a click being scored) done."""
        result = await until_goal(body, lambda: self.converted is not None)
        if result is None:
            await self.settle()
        return result

    @property
    def goal_reason(self) -> str:
        """Why a goal ended the journey: the goal and who reached it."""
        return f"goal reached: {self.converted.goal} ({self.converted.source})"

    @staticmethod
    async def settle() -> None:
        """Let the signal handlers still running (a click being scored) finish first."""
        await workflow.wait_condition(workflow.all_handlers_finished)

    # What the Temporal UI shows ---------------------------------------------------------------
    def enter(self, step: str, details: str, *, searched: bool | None = None) -> None:
        """Show ``step``. ``searched``: whether it goes in the ``Step`` search attribute (by
        default: unless it is one of the ``MOMENTS``); journeys started before
        ``FEWER_ACTIONS_PATCH`` show every step there."""
        self.step = step
        if not self.lean:
            show_step(step, details)
        else:
            if searched is None:
                searched = not step.startswith(MOMENTS)
            show_step(step, details, searched=searched, also=self._score_to_show())
        if self.LOG_NAME:
            workflow.logger.info("%s for lead %s: %s", self.LOG_NAME, self.lead_id, details)

    def close(self, outcome: str, reason: str | None = None) -> None:
        """The journey is over: its last step, as the Temporal UI shows it."""
        self.enter(
            "completed",
            f"Journey over: {outcome}" + ("" if reason is None else f" ({reason})"),
            searched=True,
        )

    def set_score(self, score: int) -> None:
        """The score as the journey knows it; also its ``Score`` search attribute: at once for
        journeys started before ``FEWER_ACTIONS_PATCH``, else with the next searchable step (one
        upsert for both; the journey's end is one)."""
        self.score = score
        if not self.lean:
            workflow.upsert_search_attributes([sa.SCORE.value_set(score)])

    def _score_to_show(self) -> list:
        """The ``Score`` update to add to the next upsert: none when it shows the score already
        (set at the start, or since)."""
        shown = workflow.info().typed_search_attributes.get(sa.SCORE)
        if self.score is None or self.score == shown:
            return []
        return [sa.SCORE.value_set(self.score)]

    def finish(self, outcome: str, reason: str, **fields: Any) -> JourneyResult:
        """The journey is over (``close``): its result, a ``RESULT`` with the journey's own
        ``result_fields()`` (``fields`` add to them or replace them) and the messages sent."""
        self.close(outcome, reason)
        fields = {**self.result_fields(), **fields}
        return self.RESULT(outcome, reason, messages=list(self.messages), **fields)

    def result_fields(self) -> dict[str, Any]:
        """What the journey's result carries besides its outcome, reason and messages."""
        return {}

    # What the journey asks about its lead -----------------------------------------------------
    async def activity(self, activity: Callable, arg: Any, **options: Any) -> Any:
        """One step's activity, retried with backoff like every step (``ACTIVITY_OPTIONS``)."""
        return await workflow.execute_activity(activity, arg, **options, **ACTIVITY_OPTIONS)

    async def read_lead(self, channel: str = "email") -> LeadReading:
        """All the journey reads of its lead, in one activity: the consent for ``channel``, the
        facts, the send profile. Kept for the rest of this moment (``_fresh``)."""
        self._reading = await self.activity(leads.read_lead, LeadQuestion(self.lead_id, channel))
        self._read_at = workflow.now()
        return self._reading

    def _fresh(self) -> LeadReading | None:
        """What ``read_lead`` read at this very moment (nothing happened since), if it did."""
        if self._reading is not None and self._read_at == workflow.now():
            return self._reading
        return None

    async def check_consent(self, channel: str = "email") -> ConsentAnswer:
        """The lead's marketing consent for ``channel``, as the consent ledger says now."""
        if self.lean:
            return (await self.read_lead(channel)).consent
        return await self.activity(leads.check_consent, ConsentQuestion(self.lead_id, channel))

    async def consent_step(self, channel: str = "email") -> ConsentAnswer:
        """The first step of a marketing journey: no marketing message without consent."""
        self.enter("checking_consent", f"Checking the lead's marketing consent for {channel}")
        return await self.check_consent(channel)

    async def lead_facts(self) -> LeadFacts:
        """What the journey may know of its lead: a contact already? a phone? the score."""
        if self.lean:
            return (self._fresh() or await self.read_lead()).facts
        return await self.activity(leads.get_lead_facts, LeadRef(self.lead_id))

    async def refresh_score(self) -> LeadFacts:
        """The lead's facts, and the score as they give it (other journeys may have moved it)."""
        facts = await self.lead_facts()
        self.set_score(facts.score)
        return facts

    async def add_score(self, event: str, key: str, reason: str) -> ScoreResult:
        """Score ``event`` for the lead (the points come from the scoring rules); ``key`` makes
        it count once however many times it is told."""
        change = ScoreChange(lead_id=self.lead_id, event=event, key=key, reason=reason)
        return await self.activity(scoring.add_score, change)

    async def promo_code(self, issued_for: str, percent_off: int) -> str:
        """A single-use promo code for the lead, the same one however many times it is asked
        for the same ``issued_for`` (a step of this journey)."""
        request = PromoRequest(
            self.lead_id, f"{workflow.info().workflow_id}:{issued_for}", percent_off
        )
        return await self.activity(commerce.issue_promo_code, request)

    # Waiting and sending -----------------------------------------------------------------------
    async def wait(
        self, step: str, details: str, condition: Callable[[], bool], timeout: timedelta
    ) -> bool:
        """Show the waiting step, then wait until ``condition`` holds (True) or ``timeout``
        passes (False)."""
        self.enter(step, details, searched=True)
        return await wait_for(condition, timeout)

    async def wait_quiet(
        self,
        step: str,
        details: Callable[[datetime], str],
        *,
        last_change: Callable[[], datetime],
        changes: Callable[[], int],
        quiet: timedelta,
        stop: Callable[[], bool],
    ) -> bool:
        """Wait until ``quiet`` has passed since the last change (a cart updated, a category
        visited): each change restarts the clock. True when it has; False when ``stop`` came
        true first. ``changes`` counts the changes; ``details`` says when the wait ends."""
        while True:
            due = last_change() + quiet
            seen = changes()
            if not await self.wait(
                step, details(due), lambda: stop() or changes() != seen, due - workflow.now()
            ):
                return True
            if stop():
                return False

    def request(self, step: str, template: str, **options) -> SendRequest:
        """The send of ``template`` at ``step``, keyed in the ledger by this run's id + step."""
        return SendRequest(
            lead_id=self.lead_id,
            workflow_id=workflow.info().workflow_id,
            journey=self.NAME,
            step=step,
            template=template,
            **options,
        )

    async def send(
        self,
        step: str,
        template: str,
        channel: str = "email",
        *,
        about: str = "",
        over_cap: str = "defer",
        summary: str = "",
        shown_as: str = "",
        stop: Callable[[], bool] | None = None,
        record: bool = True,
    ) -> SendResult:
        """A marketing message: in the send window, within the frequency cap, and not at all once
        ``stop`` (by default ``stopped()``) holds. Recorded in ``messages`` as ``shown_as`` (by
        default ``step``: the ledger's step may carry a run tag the status need not show), unless
        the journey keeps its own record of it (``record=False``)."""
        request = self.request(step, template, about=about)
        result = await send_on(
            channel,
            request,
            summary=summary,
            window=self.send_window,
            over_cap=over_cap,
            stop=stop or self.stopped,
            profile=self._fresh_profile(),
            lean=self.lean,
        )
        if record:
            self.record(shown_as or step, channel, template, result)
        return result

    def _fresh_profile(self) -> SendProfile | None:
        reading = self._fresh() if self.lean else None
        return None if reading is None else reading.profile

    async def send_now(
        self,
        step: str,
        template: str,
        channel: str = "email",
        *,
        record: bool = True,
        **options,
    ) -> SendResult:
        """A message sent at once, outside the send window: one the lead asked for (an event's
        reminders, ``over_cap="exempt"``) or a transactional one (``kind="transactional"``)."""
        result = await send_on(channel, self.request(step, template, **options), paced=False)
        if record:
            self.record(step, channel, template, result)
        return result

    async def send_best(
        self,
        channels: Sequence[str],
        send: Callable[[str], Awaitable[SendResult]],
        *,
        facts: LeadFacts | None = None,
    ) -> tuple[str | None, SendResult | None]:
        """Send on the best channel the lead accepts. ``channels``: the journey's preference,
        best first; ``send(channel)`` sends the journey's message on one (its step, template,
        details).

        Each channel but the last is tried when the lead has its address (``facts``, read once,
        when a channel first needs it) and grants its consent channel (asked at that moment, one
        consent check per channel, in order). A send that does not go out falls to the next
        channel. The last is the fallback, sent without asking first: the send ledger checks its
        consent and records why it did not go. Returns the channel that sent (None: none did) and
        the last send's result (None: nothing was tried)."""
        result = None
        for position, name in enumerate(channels):
            c = channel_named(name)
            if position < len(channels) - 1 and self.lean:
                # One read for the channel's consent, the lead's address and the send profile.
                has = f"has_{c.address}"
                if facts is not None and not getattr(facts, has, True):
                    continue
                reading = await self.read_lead(c.consent)
                if not (getattr(reading.facts, has, True) and reading.consent.granted):
                    continue
            elif position < len(channels) - 1:
                if f"has_{c.address}" in LeadFacts.__dataclass_fields__:
                    if facts is None:
                        facts = await self.lead_facts()
                    if not getattr(facts, f"has_{c.address}"):
                        continue
                if not (await self.check_consent(c.consent)).granted:
                    continue
            result = await send(name)
            if result.status == "sent":
                return name, result
        return None, result

    def record(self, step: str, channel: str, template: str, result: SendResult) -> None:
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

    def step_of(self, message_id: str | None) -> str:
        """The step that sent ``message_id`` ("a" when it is none of this journey's)."""
        return next((m.step for m in self.messages if m.message_id == message_id), "a")

    async def score_click(self, signal: TrackingSignal, reason: str) -> ScoreResult | None:
        """Score a click on one of the journey's messages, once per message however many clicks
        or link scanners (None: that message was scored already). ``reason`` may name the
        message's step as ``{step}``."""
        if signal.message_id in self._scored_messages:
            return None
        self._scored_messages.add(signal.message_id)
        return await self.add_score(
            "email_clicked",
            f"{workflow.info().workflow_id}:click:{signal.message_id}",
            reason.format(step=self.step_of(signal.message_id)),
        )

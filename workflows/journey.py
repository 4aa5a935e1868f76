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
- ``wait`` (show the waiting step, then a durable timer that a condition ends early).

Temporal's ``@workflow.defn`` registers the signal handlers a class inherits (the handlers are
looked up on the class with its bases); a journey that overrides one decorates it again with the
same signal name. Every helper issues exactly the commands the journeys issued when each carried
its own copy, so the saved histories (tests/histories) still replay.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import ClassVar, TypeVar

from temporalio import workflow

from relance.contracts import search_attributes as sa
from relance.contracts.signals import GOAL_REACHED, UNSUBSCRIBED, GoalSignal, TrackingSignal
from workflows.steps import (
    ACTIVITY_OPTIONS,
    SentMessage,
    send_on,
    show_step,
    until_goal,
    wait_for,
)

with workflow.unsafe.imports_passed_through():
    from relance.contracts.scoring import ScoreChange, ScoreResult, add_score
    from relance.contracts.sending import SendRequest, SendResult
    from relance.domain.send_window import SendWindow

T = TypeVar("T")


class Journey:
    """The common frame of a journey (see the module's docstring)."""

    NAME: ClassVar[str] = ""  # the journey's name in the send ledger (``SendRequest.journey``)
    GOALS: ClassVar[tuple[str, ...]] = ()  # the goals that end it as converted (workflows/goals.py)
    LOG_NAME: ClassVar[str] = ""  # how the worker's log names it ("" = no log line per step)

    def __init__(self, lead_id: str, send_window: SendWindow | None = None) -> None:
        self.lead_id = lead_id
        self.send_window = send_window  # None: the global send window (RELANCE_SEND_WINDOW_*)
        self.step = "starting"
        self.messages: list[SentMessage] = []
        self.unsubscribed = False
        self.converted: GoalSignal | None = None  # the goal that ended the journey, if any
        self.score: int | None = None
        self._scored_messages: set[str] = set()

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
        """Run the steps until they end, or a goal is reached (then None: stopped wherever)."""
        return await until_goal(body, lambda: self.converted is not None)

    @staticmethod
    async def settle() -> None:
        """Let the signal handlers still running (a click being scored) finish first."""
        await workflow.wait_condition(workflow.all_handlers_finished)

    # What the Temporal UI shows ---------------------------------------------------------------
    def enter(self, step: str, details: str) -> None:
        self.step = step
        show_step(step, details)
        if self.LOG_NAME:
            workflow.logger.info("%s for lead %s: %s", self.LOG_NAME, self.lead_id, details)

    def close(self, outcome: str, reason: str | None = None) -> None:
        """The journey is over: its last step, as the Temporal UI shows it."""
        self.enter(
            "completed", f"Journey over: {outcome}" + ("" if reason is None else f" ({reason})")
        )

    def set_score(self, score: int) -> None:
        self.score = score
        workflow.upsert_search_attributes([sa.SCORE.value_set(score)])

    # Waiting and sending -----------------------------------------------------------------------
    async def wait(
        self, step: str, details: str, condition: Callable[[], bool], timeout: timedelta
    ) -> bool:
        """Show the waiting step, then wait until ``condition`` holds (True) or ``timeout`` passes."""
        self.enter(step, details)
        return await wait_for(condition, timeout)

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
        )
        if record:
            self.record(shown_as or step, channel, template, result)
        return result

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
        return await workflow.execute_activity(
            add_score,
            ScoreChange(
                lead_id=self.lead_id,
                event="email_clicked",
                key=f"{workflow.info().workflow_id}:click:{signal.message_id}",
                reason=reason.format(step=self.step_of(signal.message_id)),
            ),
            **ACTIVITY_OPTIONS,
        )

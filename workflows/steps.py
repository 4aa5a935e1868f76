"""Building blocks every journey uses: activity options, a bounded wait, showing the step.

Deterministic helpers only (``workflow.*`` APIs); they issue exactly the commands the journeys
issued when they carried their own copies, so saved histories still replay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

from relance.contracts import search_attributes as sa
from relance.contracts.channels import channel
from relance.contracts.signals import GOAL_REACHED, GoalSignal
from relance.contracts.skips import SkipReason
from workflows.goals import journeys_with_goal

with workflow.unsafe.imports_passed_through():
    # Passed through: the real zoneinfo (the sandbox hands a proxy datetime refuses as a tzinfo).
    from relance.contracts.leads import LeadRef, SendProfile, get_send_profile
    from relance.contracts.sending import SendRequest, SendResult
    from relance.domain.send_window import SendWindow, next_open

T = TypeVar("T")

# Journeys started before send windows and caps replay without them.
SEND_WINDOW_PATCH = "send-window"
# Journeys started before it replay as they ran: they read their lead in three activities
# (consent, facts, send profile) and show every step, even a send's, in the ``Step`` search
# attribute. Since: one read of the lead, and only the steps a journey waits in are searchable
# (workflows/journey.py). It implies the send window and double opt-in: a journey that has it
# asks for neither of those patches.
FEWER_ACTIONS_PATCH = "fewer-actions"

# Activities retry with backoff up to every 5 minutes, without limit: a journey outlives an SMTP
# outage.
ACTIVITY_OPTIONS = dict(
    start_to_close_timeout=timedelta(seconds=60),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5)
    ),
)
# A sweep's page (workflows/sweep.py, workflows/decay.py): one activity over up to a few thousand
# leads, so a longer timeout; retried like any step.
PAGE_OPTIONS = dict(ACTIVITY_OPTIONS, start_to_close_timeout=timedelta(minutes=10))


def time_to_continue_as_new(pages_this_run: int, pages_per_run: int) -> bool:
    """A paged sweep continues as new after ``pages_per_run`` pages, or sooner when the server
    says its history is long: no sweep over 100,000 leads makes one giant history."""
    return pages_this_run >= pages_per_run or workflow.info().is_continue_as_new_suggested()


@dataclass
class SentMessage:
    """One message step of a journey, as its status query and result report it."""

    step: str
    channel: str
    template: str
    status: str  # sent | skipped | failed
    message_id: str | None
    at: datetime  # workflow time when the send finished (or was skipped)
    reason: str = ""


@dataclass
class JourneyStatus:
    """What every journey's status query answers (the ``status`` query: api/journeys.py reads
    it); each journey's own status adds its fields to these."""

    step: str  # the current step, as the ``Step`` search attribute shows it
    _: KW_ONLY
    messages: list[SentMessage] = field(default_factory=list)


@dataclass
class JourneyResult:
    """What every journey returns when it ends (``GET /leads/{id}/journeys/{journey}`` shows it
    as ``result``, as the journey wrote it); each journey's own result adds its fields to these.
    ``outcome`` is a str enum of the journey's: the JSON holds its value."""

    outcome: str
    reason: str  # why the journey ended, in words
    _: KW_ONLY
    messages: list[SentMessage] = field(default_factory=list)


async def wait_for(condition: Callable[[], bool], timeout: timedelta) -> bool:
    """Wait (a durable timer) until ``condition`` holds or ``timeout`` passes; True if it held."""
    if condition():
        return True
    if timeout <= timedelta(0):
        return False
    try:
        await workflow.wait_condition(condition, timeout=timeout)
        return True
    except TimeoutError:
        return False


def show_step(step: str, details: str, *, searched: bool = True, also: Sequence = ()) -> None:
    """What the Temporal UI shows: the current details, and (``searched``) the ``Step`` search
    attribute, with any other search attribute updates (``also``) in the same upsert: each upsert
    is one billed Temporal action, however many attributes it sets; the details are free."""
    if searched:
        workflow.upsert_search_attributes([sa.STEP.value_set(step), *also])
    workflow.set_current_details(f"**{step}**: {details}")


async def send_marketing(
    method: Callable | str,
    request: SendRequest,
    *,
    summary: str,
    window: SendWindow | None = None,
    over_cap: str = "defer",
    stop: Callable[[], bool] = lambda: False,
    profile: SendProfile | None = None,
    lean: bool = False,
) -> SendResult:
    """Send a marketing message the way every journey should: wait (a durable timer) until the
    send window opens in the lead's time zone, then send; over the frequency cap, wait until the
    cap allows it and try again (``over_cap="defer"``) or take the skip (``"skip"``).

    ``window``: the journey's own window; None uses the global one (``RELANCE_SEND_WINDOW_*``).
    ``stop``: when it becomes true during a wait (unsubscribe, goal, purchase...), nothing is
    sent and the result is ``skipped``. Journeys started before this helper existed keep their
    old command sequence (``workflow.patched``): they send at once, as they did.
    ``profile``: the lead's send profile, read at this very moment (no second read of the lead);
    ``lean``: the journey has ``FEWER_ACTIONS_PATCH``, which implies the send window.
    """
    if not (lean or workflow.patched(SEND_WINDOW_PATCH)):
        return await _execute_send(method, request, summary)
    request.over_cap = over_cap
    while True:
        opened = await wait_for_send_window(request.lead_id, window, stop, profile=profile)
        profile = None  # after a wait for the cap, the lead is read again
        if not opened:
            return SendResult(
                "skipped",
                None,
                "the journey stopped while the message waited for the send window",
                skip=SkipReason.JOURNEY_STOPPED,
            )
        result = await _execute_send(method, request, summary)
        if result.status != "deferred":
            return result
        show_step("deferred_by_frequency_cap", f"{request.step}: {result.reason}")
        if await wait_for(stop, result.retry_at - workflow.now()):
            return SendResult(
                "skipped",
                result.message_id,
                "the journey stopped while the message waited for the frequency cap",
                skip=SkipReason.JOURNEY_STOPPED,
            )


def skip_of(result: SendResult) -> SkipReason | None:
    """Why the send ledger skipped the message (None: it did not skip it, or cannot say).

    Sends recorded before the ledger named its skips carry none: for those (journeys running since
    then, their saved histories) the two kinds a journey branches on are told by the ledger's own
    wording, here and nowhere else. Compare kinds with ``==``: the workflow sandbox imports its
    own copy of the enum, so the result's member is equal to this module's, not the same object."""
    if result.skip is not None or result.status != "skipped":
        return result.skip
    if result.reason.startswith("excluded: "):
        return SkipReason.EXCLUDED
    if "bought in the category" in result.reason:
        return SkipReason.NOT_RELEVANT
    return None


async def _execute_send(method: Callable | str, request: SendRequest, summary: str) -> SendResult:
    """One send activity: its contract stub, or a channel's activity by its type name."""
    return await workflow.execute_activity(
        method, request, result_type=SendResult, summary=summary, **ACTIVITY_OPTIONS
    )


async def send_on(
    channel_name: str,
    request: SendRequest,
    *,
    paced: bool = True,
    summary: str = "",
    window: SendWindow | None = None,
    over_cap: str = "defer",
    stop: Callable[[], bool] = lambda: False,
    profile: SendProfile | None = None,
    lean: bool = False,
) -> SendResult:
    """Send ``request`` on a channel (relance/contracts/channels.py): its send activity, by the
    name saved histories know it by. ``paced``: the way of marketing (``send_marketing``: the
    send window, the frequency cap, ``stop``); not paced: at once, as a message the lead asked
    for (a confirmation, an event's reminders) goes. Either way the send ledger decides."""
    activity = channel(channel_name).activity
    summary = summary or f"{channel_name} {request.template}"
    if not paced:
        return await _execute_send(activity, request, summary)
    return await send_marketing(
        activity,
        request,
        summary=summary,
        window=window,
        over_cap=over_cap,
        stop=stop,
        profile=profile,
        lean=lean,
    )


def not_sent_outcome(result: SendResult) -> str:
    """A journey's outcome when a message of it did not go out: ``excluded`` when the journey's
    exclusions refused it (the send ledger checks them before each send), else ``not_sent``."""
    return "excluded" if skip_of(result) == SkipReason.EXCLUDED else "not_sent"


async def wait_for_send_window(
    lead_id: str,
    window: SendWindow | None = None,
    stop: Callable[[], bool] = lambda: False,
    *,
    profile: SendProfile | None = None,
) -> bool:
    """Wait until the send window is open for the lead; False if ``stop`` came true first.
    ``profile``: the lead's send profile if the journey has just read it; else it is read."""
    if profile is None:
        profile = await workflow.execute_activity(
            get_send_profile, LeadRef(lead_id), **ACTIVITY_OPTIONS
        )
    window = window or profile.window
    if window is None:
        return not stop()
    now = workflow.now()
    opens = next_open(now, profile.time_zone, window)
    if opens <= now:
        return not stop()
    show_step(
        "waiting_for_send_window",
        f"Outside the send window ({window.describe()} {profile.time_zone}): "
        f"sending at {opens:%Y-%m-%d %H:%M} UTC",
    )
    return not await wait_for(stop, opens - now)


async def until_goal(body: Awaitable[T], reached: Callable[[], bool]) -> T | None:
    """Run the journey's steps until they end or a goal is reached; on a goal, stop them wherever
    they are (a wait, a send) and return None: the journey then ends as converted."""
    task = asyncio.ensure_future(body)
    await workflow.wait_condition(lambda: task.done() or reached())
    if task.done():
        return task.result()
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):  # noqa: BLE001 - whatever the steps were doing is moot now
        pass
    return None


async def reach_goal(lead_id: str, goal: str) -> list[str]:
    """This journey reached ``goal`` for the lead: end the lead's other journeys that declare it.
    Returns the journeys told (the ones not running answer "not found" and are skipped)."""
    me = workflow.info().workflow_id
    told = []
    for workflow_id in journeys_with_goal(lead_id, goal):
        if workflow_id == me:
            continue
        try:
            await workflow.get_external_workflow_handle(workflow_id).signal(
                GOAL_REACHED, GoalSignal(goal, f"journey:{me}")
            )
            told.append(workflow_id)
        except Exception:  # noqa: BLE001 - not running: nothing to end
            pass
    return told

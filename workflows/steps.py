"""Building blocks every journey uses: activity options, a bounded wait, showing the step.

Deterministic helpers only (``workflow.*`` APIs); they issue exactly the commands the journeys
issued when they carried their own copies, so saved histories still replay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows import search_attributes as sa

# Activities retry with backoff up to every 5 minutes, without limit: a journey outlives an SMTP outage.
ACTIVITY_OPTIONS = dict(
    start_to_close_timeout=timedelta(seconds=60),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5)),
)


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


async def wait_for(condition: Callable[[], bool], timeout: timedelta) -> bool:
    """Wait (a durable timer) until ``condition`` holds or ``timeout`` passes; True if it held."""
    if condition():
        return True
    if timeout <= timedelta(0):
        return False
    try:
        await workflow.wait_condition(condition, timeout=timeout)
        return True
    except asyncio.TimeoutError:
        return False


def show_step(step: str, details: str) -> None:
    """What the Temporal UI shows: the ``Step`` search attribute and the current details."""
    workflow.upsert_search_attributes([sa.STEP.value_set(step)])
    workflow.set_current_details(f"**{step}**: {details}")

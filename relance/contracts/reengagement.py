"""The re-engagement sweep's pages, the journey's outcome and sunset, the premium offer's record."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from temporalio import activity


@dataclass
class PageRequest:
    cutoff: datetime  # leads whose last activity (or creation, if none) is before this
    after: str  # keyset cursor: the last lead id of the previous page ("" for the first)
    limit: int


@dataclass
class PageResult:
    leads: int  # eligible leads read on this page
    started: int  # journeys started
    already_enrolled: int  # a journey was already running (started by an overlapping sweep)
    next_cursor: str | None  # None: this was the last page


@dataclass
class OutcomeRecord:
    lead_id: str
    # in_journey | not_sent | re_engaged | unsubscribed | consent_withdrawn | sunset_suppressed
    status: str


@dataclass
class SunsetRequest:
    lead_id: str
    policy: str  # suppress | delete
    workflow_id: str


@dataclass
class SunsetResult:
    policy: str
    rows_deleted: dict[str, int] = field(default_factory=dict)  # delete: what the erasure removed


@dataclass
class PremiumRecord:
    lead_id: str


# The daily sweep (workflows/sweep.py), started by its type name by the schedule
# (relance/services/schedules.py).
REENGAGEMENT_SWEEP = "ReEngagementSweep"


@dataclass
class SweepInput:
    inactive_days: float = 60.0
    batch_size: int = 500
    pages_per_run: int = 50  # continue-as-new after this many pages
    # Carried over continue-as-new:
    cutoff: datetime | None = None
    cursor: str = ""
    pages: int = 0
    leads: int = 0
    started: int = 0
    already_enrolled: int = 0
    runs: int = 1


# The activities, as journeys call them (``workflow.execute_activity(enroll_inactive_page, ...)``):
# only the name and the types count here; the worker runs the implementation registered under
# the same name (activities/reengagement.py ReEngagementActivities). tests/test_layers.py checks
# both agree.


@activity.defn(name="enroll_inactive_page")
def enroll_inactive_page(request: PageRequest) -> PageResult:
    raise NotImplementedError("run by the worker: ReEngagementActivities.enroll_inactive_page")


@activity.defn(name="record_reengagement")
def record_reengagement(record: OutcomeRecord) -> None:
    raise NotImplementedError("run by the worker: ReEngagementActivities.record_reengagement")


@activity.defn(name="sunset_lead")
def sunset_lead(request: SunsetRequest) -> SunsetResult:
    raise NotImplementedError("run by the worker: ReEngagementActivities.sunset_lead")


@activity.defn(name="record_premium_offer")
def record_premium_offer(record: PremiumRecord) -> None:
    raise NotImplementedError("run by the worker: ReEngagementActivities.record_premium_offer")

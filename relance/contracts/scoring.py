"""Score changes a journey asks for (with the reason, once per key), and the decay sweep's pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from temporalio import activity


@dataclass
class ScoreChange:
    lead_id: str
    event: str  # e.g. email_clicked; the points come from the scoring rules (config/scoring.yaml)
    key: str  # idempotency key: the same key counts once
    reason: str


@dataclass
class ScoreResult:
    score: int
    points: int
    counted: bool  # False when this key had already been counted


@dataclass
class DecayPage:
    now: datetime  # the sweep's clock (workflow.now()): fixed for the whole sweep
    after: str = ""  # cursor: the last lead id of the previous page
    limit: int = 500


@dataclass
class DecayPageResult:
    leads: int  # leads looked at
    decayed: int  # score events written
    points: int  # total points removed (negative or 0)
    next_cursor: str | None


# The daily decay (workflows/decay.py), started by its type name by the schedule
# (relance/services/schedules.py).
SCORE_DECAY_SWEEP = "ScoreDecaySweep"


@dataclass
class DecayInput:
    batch_size: int = 500
    pages_per_run: int = 50  # continue-as-new after this many pages
    # Carried over continue-as-new:
    now: datetime | None = None
    cursor: str = ""
    pages: int = 0
    leads: int = 0
    decayed: int = 0
    points: int = 0


# The activities, as journeys call them (``workflow.execute_activity(add_score, ...)``):
# only the name and the types count here; the worker runs the implementation registered under
# the same name (activities/scoring.py ScoringActivities). tests/test_layers.py checks both agree.


@activity.defn(name="add_score")
def add_score(change: ScoreChange) -> ScoreResult:
    raise NotImplementedError("run by the worker: ScoringActivities.add_score")


@activity.defn(name="decay_scores_page")
def decay_scores_page(page: DecayPage) -> DecayPageResult:
    raise NotImplementedError("run by the worker: ScoringActivities.decay_scores_page")

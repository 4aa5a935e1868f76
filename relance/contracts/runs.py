"""A journey's run as the reports count it: entered, and ended (outcome, reason, goal,
checkpoints). Recorded by the journeys themselves (workflows/recording.py): the entry in a header
of the journey's activities (``RUN_HEADER``), the end through one activity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from temporalio import activity


@dataclass
class JourneyRunRecord:
    workflow_id: str
    run_id: str
    lead_id: str
    journey: str  # its name in the send ledger (``Journey.NAME``)
    entered_at: datetime
    closed_at: datetime | None = None  # None: the run has just entered
    outcome: str = ""
    reason: str = ""
    goal: str = ""
    checkpoints: list[str] = field(default_factory=list)
    arms: dict[str, str] = field(default_factory=dict)  # experiment node -> the lead's arm


# The header of a journey's activities that carries its run's entry (a ``JourneyRunRecord`` with
# no end): the worker writes the row the first time an activity of the run executes.
RUN_HEADER = "relance-journey-run"


# The activity, as journeys call it; the worker runs activities/runs.py JourneyRunActivities.
@activity.defn(name="record_journey_run")
def record_journey_run(record: JourneyRunRecord) -> None:
    raise NotImplementedError("run by the worker: JourneyRunActivities.record_journey_run")

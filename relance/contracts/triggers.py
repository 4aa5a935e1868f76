"""The hourly sweep of the defined journeys' entry triggers that need a clock: the date
attributes (a birthday at 09:00 in the lead's zone, N days before a renewal) and the segments
entered (relance/services/triggers.py). Run by a Temporal Schedule
(relance/services/schedules.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from temporalio import activity

# The sweep's workflow (workflows/triggers.py), started by its type name by the schedule.
TRIGGER_SWEEP = "TriggerSweep"


@dataclass
class TriggerSweepInput:
    now: datetime | None = None  # the sweep's clock; None: the workflow's start


@dataclass
class TriggerSweepResult:
    date_enrolled: int = 0  # leads a date trigger entered into a journey
    segment_enrolled: int = 0  # leads who entered a segment, entered into a journey
    refused: int = 0  # enrollments the journeys' rules refused (recorded)
    segments_evaluated: int = 0


# The activity, as the sweep calls it; the worker runs activities/triggers.py TriggerActivities.
@activity.defn(name="sweep_triggers")
def sweep_triggers(input: TriggerSweepInput) -> TriggerSweepResult:
    raise NotImplementedError("run by the worker: TriggerActivities.sweep_triggers")

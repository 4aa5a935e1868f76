"""What the event journey reads about its event. Ids, times and statuses only: nothing about
the lead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from temporalio import activity


@dataclass
class EventRef:
    event_id: str


@dataclass
class EventSchedule:
    event_id: str
    starts_at: datetime  # UTC
    ends_at: datetime  # UTC
    status: str  # scheduled | cancelled
    series: str | None
    sequence: int  # how many times it was rescheduled


@dataclass
class NextEventQuestion:
    event_id: str
    after: datetime  # the next event must start after this moment (the journey's now)


@dataclass
class NextEvent:
    event_id: str | None  # None: the series has no next event (yet)


# The activities, as journeys call them (``workflow.execute_activity(get_event_schedule, ...)``):
# only the name and the types count here; the worker runs the implementation registered under
# the same name (activities/events.py EventActivities). tests/test_layers.py checks both agree.


@activity.defn(name="get_event_schedule")
def get_event_schedule(ref: EventRef) -> EventSchedule:
    raise NotImplementedError("run by the worker: EventActivities.get_event_schedule")


@activity.defn(name="find_next_event")
def find_next_event(question: NextEventQuestion) -> NextEvent:
    raise NotImplementedError("run by the worker: EventActivities.find_next_event")

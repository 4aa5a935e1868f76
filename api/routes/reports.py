"""Reports, behind the API key: journeys' funnels, messages' rates, experiments, per day.

Every report covers a date range (``start`` included, ``end`` excluded; by default the last 30
days) and is read from the database only (relance/services/reports.py says where each figure
comes from). ``by=day`` adds the figures per UTC day, for trends.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as InPath
from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import Engine

from api.deps import require_api_key
from api.errors import unprocessable, validation_response
from relance.domain.models import utcnow
from relance.services import reports
from relance.services.reports import Period

router = APIRouter(prefix="/reports", tags=["reports"], dependencies=[Depends(require_api_key)])

DEFAULT_DAYS = 30
MAX_DAYS = 3660  # ten years: a report is a few grouped queries, not a page per day
KEY = r"^[A-Za-z0-9_.:-]{1,64}$"
BAD_RANGE = {422: validation_response("A date is malformed, or the range is empty or too long")}


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


EngineDep = Annotated[Engine, Depends(get_engine)]
Start = Annotated[
    datetime | date | None,
    Query(description="The range's start (a date or an ISO 8601 time, UTC when it has no zone)"),
]
End = Annotated[
    datetime | date | None,
    Query(description="The range's end, excluded (a date: the range ends before that day)"),
]
By = Annotated[Literal["day"] | None, Query(description="`day`: add the figures per UTC day")]
KeyPath = Annotated[str, InPath(pattern=KEY)]


def _moment(value: datetime | date) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.combine(value, time(), tzinfo=UTC)


def period(start: Start = None, end: End = None) -> Period:
    """The report's range: by default the last 30 days, up to now."""
    until = _moment(end) if end is not None else utcnow()
    since = _moment(start) if start is not None else until - timedelta(days=DEFAULT_DAYS)
    if since >= until:
        raise unprocessable("start must be before end", "query", "start")
    if until - since > timedelta(days=MAX_DAYS):
        raise unprocessable(f"the range is longer than {MAX_DAYS} days", "query", "start")
    return Period(since, until)


PeriodDep = Annotated[Period, Depends(period)]


class Report(BaseModel):
    """A report's figures (see relance/services/reports.py for each one)."""

    model_config = ConfigDict(extra="allow")


class JourneySummary(BaseModel):
    journey: str
    entered: int
    active: int
    ended: int
    converted: int
    conversion_rate: float | None


class JourneyReport(Report):
    journey: str
    start: datetime
    end: datetime
    entered: int
    active: int
    active_by_step: dict[str, int]
    completed: dict[str, int]
    converted: int
    conversion_rate: float | None
    median_seconds_to_convert: float | None
    checkpoints: dict[str, int]
    steps: dict[str, dict[str, Any]]
    days: list[dict[str, Any]] | None = None


class MessageReport(Report):
    template: str
    journey: str | None
    sent: int
    skipped: int
    failed: int
    deferred: int
    delivered: int
    opened: int
    opened_any: int
    clicked: int
    clicked_any: int
    unsubscribed: int
    open_rate: float | None
    click_rate: float | None
    click_to_open: float | None
    unsubscribe_rate: float | None
    skipped_by_reason: dict[str, int]


class ExperimentReport(Report):
    journey: str
    node: str
    start: datetime
    end: datetime
    arms: dict[str, dict[str, Any]]
    leading_arm: str | None
    significant: bool


@router.get("/journeys", response_model=list[JourneySummary], responses=BAD_RANGE)
def journeys(engine: EngineDep, range_: PeriodDep) -> list[dict]:
    """Every journey with runs entered in the range: entered, active now, ended, converted."""
    return reports.journeys_summary(engine, range_)


@router.get("/journeys/{key}", response_model=JourneyReport, responses=BAD_RANGE)
def journey(key: KeyPath, engine: EngineDep, range_: PeriodDep, by: By = None) -> dict:
    """One journey's funnel for the runs that entered in the range: entered, active now per step
    (the step of each active run's last message), completed per outcome, goal conversion rate and
    median time to convert, checkpoints passed, each step's messages. A journey without runs in
    the range answers zeros."""
    return reports.journey_report(engine, key, range_, by_day=by == "day")


@router.get("/messages", response_model=list[MessageReport], responses=BAD_RANGE)
def messages(
    engine: EngineDep,
    range_: PeriodDep,
    journey: Annotated[str | None, Query(pattern=KEY)] = None,
    by: By = None,
) -> list[dict]:
    """Per template (of one journey with `journey`): the messages created in the range — sent,
    skipped by reason, deferred, failed, delivered — and what their readers did: unique human
    opens and clicks (machines' in `opened_any`, `clicked_any`), unsubscribes, and the rates."""
    return reports.messages_report(engine, range_, journey=journey, by_day=by == "day")


@router.get("/experiments/{key}/{node}", response_model=ExperimentReport, responses=BAD_RANGE)
def experiment(
    key: KeyPath,
    node: KeyPath,
    engine: EngineDep,
    range_: PeriodDep,
) -> dict:
    """One experiment's arms: the runs placed on each (ended, entered in the range), their
    conversions and rate with its 95 % interval, the messages sent on it, each arm against the
    leading one (two-proportion z-test at 5 %)."""
    return reports.experiment_report(engine, key, node, range_)

"""The journeys' runs in the database (``journey_runs``): what the reports' funnels count.

A run's entry comes with the journey's activities (workflows/recording.py puts it in a header of
each): ``RunEntries``, the worker's activity interceptor, writes the row the first time an
activity of the run executes, before the activity itself. No Temporal action is spent on it. Its
end is the ``record_journey_run`` activity.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from relance.contracts.runs import RUN_HEADER, JourneyRunRecord
from relance.domain.models import JourneyRun

# The runs whose entry this worker has written lately: their next activities write nothing. A
# run it has forgotten (a restart, or more runs since) is looked up once more, and found.
REMEMBERED_RUNS = 20_000


def write_run(engine: Engine, record: JourneyRunRecord) -> None:
    """Write the run's row: its entry, then its end. The same record told twice (a retried
    activity) writes the same row; an entry told after its end changes nothing; an end told
    before its entry (a journey started before runs were recorded records no entry) makes the
    row."""
    for _ in range(2):  # a concurrent insert of the same run: read it back and update it
        with Session(engine) as session:
            run = session.exec(
                select(JourneyRun).where(
                    JourneyRun.workflow_id == record.workflow_id,
                    JourneyRun.run_id == record.run_id,
                )
            ).first()
            if run is not None and record.closed_at is None:
                return  # entered already
            if run is None:
                run = JourneyRun(
                    workflow_id=record.workflow_id,
                    run_id=record.run_id,
                    lead_id=record.lead_id,
                    journey=record.journey,
                    entered_at=record.entered_at,
                )
            if record.closed_at is not None:
                run.closed_at = record.closed_at
                run.outcome = record.outcome[:32]
                run.reason = record.reason[:500]
                run.goal = record.goal[:64] or None
                run.checkpoints = list(record.checkpoints)
                run.arms = dict(record.arms)
            session.add(run)
            try:
                session.commit()
                return
            except IntegrityError:
                session.rollback()
    raise RuntimeError(f"journey run {record.workflow_id}/{record.run_id} not recorded")


class JourneyRunActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn(name="record_journey_run", no_thread_cancel_exception=True)
    def record_journey_run(self, record: JourneyRunRecord) -> None:
        """Write the run's row (its end; the entry of a journey started before entries came
        with its activities). Retried, it writes the same row."""
        write_run(self.engine, record)


class RunEntries(Interceptor):
    """The worker's activity interceptor: the first activity of a journey's run to execute
    writes the run's entry (the header workflows/recording.py gives it), then runs. Every
    activity of the run carries it, so the entry is there whichever step comes first, retried
    or not; once written, it is never written again."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.entered: OrderedDict[tuple[str, str], None] = OrderedDict()

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _WriteEntry(next, self)

    async def enter(self, header: Any) -> None:
        info = activity.info()
        run = (info.workflow_id or "", info.workflow_run_id or "")
        if run in self.entered:
            self.entered.move_to_end(run)
            return
        record = activity.payload_converter().from_payload(header, JourneyRunRecord)
        # The row is the run the activity belongs to, whatever the header says.
        record.workflow_id, record.run_id, record.closed_at = run[0], run[1], None
        await asyncio.to_thread(write_run, self.engine, record)
        self.entered[run] = None
        while len(self.entered) > REMEMBERED_RUNS:
            self.entered.popitem(last=False)


class _WriteEntry(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, entries: RunEntries) -> None:
        super().__init__(next)
        self.entries = entries

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        header = input.headers.get(RUN_HEADER)
        if header is not None:
            await self.entries.enter(header)
        return await super().execute_activity(input)

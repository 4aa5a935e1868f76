"""The journeys' runs in the database (``journey_runs``): what the reports' funnels count."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from temporalio import activity

from relance.contracts.runs import JourneyRunRecord
from relance.domain.models import JourneyRun


class JourneyRunActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn(name="record_journey_run")
    def record_journey_run(self, record: JourneyRunRecord) -> None:
        """Write the run's row: its entry, then its end. The same record told twice (a retried
        activity) writes the same row; an end told before its entry (an entry that never came:
        a journey started before runs were recorded does not record either) makes the row."""
        for _ in range(2):  # a concurrent insert of the same run: read it back and update it
            with Session(self.engine) as session:
                run = session.exec(
                    select(JourneyRun).where(
                        JourneyRun.workflow_id == record.workflow_id,
                        JourneyRun.run_id == record.run_id,
                    )
                ).first()
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

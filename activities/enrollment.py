"""Journey-to-journey enrollments refused at run time (issue 7, the loop guard), recorded with
the lead's data (``enrollment_refusals``: in the export, removed by the erasure) rather than only
in the refusing journey's result."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from temporalio import activity

from relance.models import EnrollmentRefusal


@dataclass
class RefusalRecord:
    lead_id: str
    workflow_id: str  # the journey that meant to enroll the lead
    run_id: str
    source: str
    target: str
    reason: str
    chain: list[str] = field(default_factory=list)


class EnrollmentActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn(name="record_enrollment_refusal")
    def record_enrollment_refusal(self, record: RefusalRecord) -> str:
        """Record the refusal once (a retried attempt finds it); returns the row's id."""
        key = f"{record.workflow_id}:{record.run_id}:{record.target}"[:300]
        with Session(self.engine) as session:
            found = session.exec(select(EnrollmentRefusal.id).where(EnrollmentRefusal.refusal_key == key)).first()
            if found:
                return found
            row = EnrollmentRefusal(refusal_key=key, lead_id=record.lead_id, workflow_id=record.workflow_id[:200],
                                    source=record.source[:64], target=record.target[:64], chain=list(record.chain),
                                    reason=record.reason[:500])
            session.add(row)
            try:
                session.commit()
            except IntegrityError:  # a concurrent attempt recorded it first
                session.rollback()
                return session.exec(select(EnrollmentRefusal.id).where(EnrollmentRefusal.refusal_key == key)).one()
            return row.id

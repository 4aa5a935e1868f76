"""Change a lead's score, with the reason, exactly once per key."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from relance.models import Lead, ScoreEvent, utcnow
from relance.settings import Settings


@dataclass
class ScoreChange:
    lead_id: str
    event: str  # e.g. email_clicked; the points come from the scoring settings
    key: str  # idempotency key: the same key counts once
    reason: str


@dataclass
class ScoreResult:
    score: int
    points: int
    counted: bool  # False when this key had already been counted


class ScoringActivities:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine

    def points_for(self, event: str) -> int:
        points = getattr(self.settings, f"score_{event}", None)
        if not isinstance(points, int):
            raise ApplicationError(f"no scoring rule for event {event!r}", type="UnknownScoreEvent", non_retryable=True)
        return points

    @activity.defn(name="add_score")
    def add_score(self, change: ScoreChange) -> ScoreResult:
        points = self.points_for(change.event)
        with Session(self.engine) as session:
            if session.get(Lead, change.lead_id) is None:
                raise ApplicationError(f"lead {change.lead_id} does not exist", type="LeadNotFound", non_retryable=True)
            session.add(ScoreEvent(lead_id=change.lead_id, key=change.key, event=change.event, points=points,
                                   reason=change.reason))
            try:
                session.flush()
            except IntegrityError:
                session.rollback()
                score = session.exec(select(Lead.score).where(Lead.id == change.lead_id)).one()
                return ScoreResult(score=score, points=0, counted=False)
            session.execute(
                update(Lead).where(Lead.id == change.lead_id)
                .values(score=Lead.score + points, last_activity_at=utcnow(), updated_at=utcnow())
            )
            session.commit()
            score = session.exec(select(Lead.score).where(Lead.id == change.lead_id)).one()
        activity.logger.info("lead %s score +%d (%s) -> %d", change.lead_id, points, change.reason, score)
        return ScoreResult(score=score, points=points, counted=True)

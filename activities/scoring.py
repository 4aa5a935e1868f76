"""Change a lead's score, with the reason, exactly once per key."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from relance.models import Lead
from relance.scoring import apply_score
from relance.settings import Settings


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


class ScoringActivities:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine

    def points_for(self, event: str) -> int:
        """The event's points in the scoring rules file (RELANCE_SCORING_RULES_FILE)."""
        points = self.settings.scoring_rules().points(event)
        if points is None:
            raise ApplicationError(f"no scoring rule for event {event!r} in {self.settings.scoring_rules_file}",
                                   type="UnknownScoreEvent", non_retryable=True)
        return points

    @activity.defn(name="add_score")
    def add_score(self, change: ScoreChange) -> ScoreResult:
        points = self.points_for(change.event)
        with Session(self.engine) as session:
            if session.get(Lead, change.lead_id) is None:
                raise ApplicationError(f"lead {change.lead_id} does not exist", type="LeadNotFound", non_retryable=True)
            applied = apply_score(session, lead_id=change.lead_id, event=change.event, key=change.key,
                                  reason=change.reason, points=points, mql_threshold=self.settings.score_mql_threshold)
            session.commit()
        if applied.counted:
            activity.logger.info("lead %s score %+d (%s) -> %d", change.lead_id, points, change.reason, applied.score)
        return ScoreResult(score=applied.score, points=applied.points, counted=applied.counted)

"""Change a lead's score, with the reason, exactly once per key. A change counted re-evaluates, for
the lead, the segment-entered triggers whose rules read the score (relance/services/triggers.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from relance.contracts.scoring import DecayPage, DecayPageResult, ScoreChange, ScoreResult
from relance.domain.models import Lead, as_utc
from relance.domain.scoring import apply_score, decay_points
from relance.domain.settings import Settings
from relance.services.triggers import SCORE, reevaluate_segments


class ScoringActivities:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine

    def points_for(self, event: str) -> int:
        """The event's points in the scoring rules file (RELANCE_SCORING_RULES_FILE)."""
        points = self.settings.scoring_rules().points(event)
        if points is None:
            raise ApplicationError(
                f"no scoring rule for event {event!r} in {self.settings.scoring_rules_file}",
                type="UnknownScoreEvent",
                non_retryable=True,
            )
        return points

    @activity.defn(name="add_score", no_thread_cancel_exception=True)
    async def add_score(self, change: ScoreChange) -> ScoreResult:
        result = await asyncio.to_thread(self._add_score, change)
        if result.counted and result.points:
            await reevaluate_segments(
                activity.client(),
                self.settings,
                self.engine,
                lead_ids=[change.lead_id],
                facts=(SCORE,),
            )
        return result

    def _add_score(self, change: ScoreChange) -> ScoreResult:
        points = self.points_for(change.event)
        with Session(self.engine) as session:
            if session.get(Lead, change.lead_id) is None:
                raise ApplicationError(
                    f"lead {change.lead_id} does not exist", type="LeadNotFound", non_retryable=True
                )
            applied = apply_score(
                session,
                lead_id=change.lead_id,
                event=change.event,
                key=change.key,
                reason=change.reason,
                points=points,
                mql_threshold=self.settings.score_mql_threshold,
            )
            session.commit()
        if applied.counted:
            activity.logger.info(
                "lead %s score %+d (%s) -> %d", change.lead_id, points, change.reason, applied.score
            )
        return ScoreResult(score=applied.score, points=applied.points, counted=applied.counted)

    @activity.defn(name="decay_scores_page", no_thread_cancel_exception=True)
    def decay_scores_page(self, page: DecayPage) -> DecayPageResult:
        result = decay_page(self.engine, self.settings, page)
        activity.logger.info(
            "score decay page after %r: %d leads, %d decays (%d points)",
            page.after,
            result.leads,
            result.decayed,
            result.points,
        )
        return result


def decay_page(engine: Engine, settings: Settings, page: DecayPage) -> DecayPageResult:
    """Decay the scores of one page of leads inactive for at least one decay period.

    A lead inactive for ``k`` whole periods (``decay.every_days``, counted from its last activity,
    or its creation) loses ``decay.percent`` % once per period: the key
    ``decay:<lead>:<last activity>:<period>`` makes a rerun (or a retried page) change nothing,
    and a missed day catches up. New activity restarts the count."""
    rules = settings.scoring_rules().decay
    cutoff = page.now - timedelta(days=rules.every_days)
    reference = func.coalesce(Lead.last_activity_at, Lead.created_at)
    with Session(engine) as session:
        rows = session.exec(
            select(Lead.id, Lead.last_activity_at, Lead.created_at)
            .where(col(Lead.score) > 0, reference <= cutoff, col(Lead.id) > page.after)
            .order_by(col(Lead.id))
            .limit(page.limit + 1)
        ).all()
        found = rows[: page.limit]
        decayed = total = 0
        for lead_id, last_activity, created in found:
            since = as_utc(last_activity or created)
            periods = min(int((page.now - since) / timedelta(days=rules.every_days)), 120)
            for period in range(1, periods + 1):
                score = session.exec(select(Lead.score).where(col(Lead.id) == lead_id)).one()
                points = decay_points(score, rules.percent)
                if points == 0:
                    break
                applied = apply_score(
                    session,
                    lead_id=lead_id,
                    event="decay",
                    key=f"decay:{lead_id}:{since.isoformat()}:{period}",
                    reason=f"decay: {rules.percent:g} % after {period * rules.every_days} days "
                    "without activity "
                    f"(since {since:%Y-%m-%d})",
                    points=points,
                    mql_threshold=settings.score_mql_threshold,
                    activity=False,
                    now=page.now,
                )
                if applied.counted:
                    decayed += 1
                    total += points
        session.commit()
    return DecayPageResult(
        leads=len(found),
        decayed=decayed,
        points=total,
        next_cursor=found[-1][0] if len(rows) > page.limit else None,
    )

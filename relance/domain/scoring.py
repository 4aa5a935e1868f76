"""Lead scoring: the one function that changes a score, and the rules applied with it (read from
their file by relance/domain/scoring_rules.py).

Every change goes through ``apply_score``: one ``score_events`` row with its reason and an
idempotency key (the same key counts once), the lead's score updated in the same transaction,
and a crossing of the MQL threshold queued for the sales notification (``queue_notification``;
relance/services/mql.py delivers it). A lead created by a sign-up is written in one go instead
(``new_lead_scores``: the same rows, computed before the lead's insert; api/crud.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from relance.domain.models import Lead, MqlNotification, ScoreEvent, utcnow
from relance.domain.scoring_rules import ScoringRules
from relance.domain.segments import QUALIFIED


@dataclass
class Change:
    """One score change a rule makes, before it is applied."""

    event: str
    key: str
    reason: str
    points: int
    activity: bool = True  # from something the lead did (stamps ``last_activity_at``)


@dataclass
class Applied:
    counted: bool  # False: this key had counted already (nothing changed)
    points: int
    before: int
    score: int


def apply_score(
    session: Session,
    *,
    lead_id: str,
    event: str,
    key: str,
    reason: str,
    points: int,
    mql_threshold: int,
    activity: bool = True,
    now: datetime | None = None,
) -> Applied:
    """Record one score change and apply it, in the session's transaction (the caller commits).

    ``activity``: the change comes from something the lead did (stamps ``last_activity_at``);
    decay and demographic fit do not. A change that takes the score across the MQL threshold
    upwards queues one sales notification (relance/services/mql.py), unless a journey raised
    the lead's stage to mql or beyond before (its notification went then)."""
    now = now or utcnow()
    if session.exec(select(ScoreEvent.id).where(col(ScoreEvent.key) == key)).first() is not None:
        score = session.exec(select(Lead.score).where(col(Lead.id) == lead_id)).one()
        return Applied(counted=False, points=0, before=score, score=score)
    # Two writers racing on one key: the unique key makes the second flush fail (IntegrityError);
    # an activity retries and then finds the key counted.
    session.add(
        ScoreEvent(
            lead_id=lead_id,
            key=key,
            event=event,
            points=points,
            reason=reason[:500],
            created_at=now,
        )
    )
    session.flush()
    values: dict = {"score": Lead.score + points, "updated_at": now}
    if activity:
        values["last_activity_at"] = now
    # The update first, then the read: the row is this transaction's from the update on, so
    # ``before`` and ``after`` are exact even when other changes to the lead run concurrently.
    # (The lead objects in the session are not synchronised: callers that show the lead re-read it.)
    after, floor = session.execute(
        update(Lead)
        .where(col(Lead.id) == lead_id)
        .values(**values)
        .returning(Lead.score, Lead.stage_floor)
        .execution_options(synchronize_session=False)
    ).one()
    before = after - points
    # A lead a journey raised to mql or beyond was made known to sales then (the stage raise
    # queued its notification): its score reaching the threshold later is no news.
    if before < mql_threshold <= after and floor not in QUALIFIED:
        queue_notification(
            session, lead_id=lead_id, score=after, threshold=mql_threshold, reason=reason, now=now
        )
    return Applied(counted=True, points=points, before=before, score=after)


# ``apply_scores``'s statements, built once: SQLAlchemy compiles each of them once and reuses
# it (a statement built per call, or a multi-row VALUES of varying length, is compiled each time:
# that was most of its CPU).
_SCORE_ROWS = ScoreEvent.__table__
_LEADS = Lead.__table__
_INSERT_NEW_KEYS = {
    name: insert(_SCORE_ROWS)
    .on_conflict_do_nothing(index_elements=["key"])
    .returning(_SCORE_ROWS.c.key)
    for name, insert in (("postgresql", postgresql_insert), ("sqlite", sqlite_insert))
}
_ADD_POINTS = (
    update(_LEADS)
    .where(_LEADS.c.id == bindparam("b_lead"))
    .values(
        score=_LEADS.c.score + bindparam("b_points"),
        updated_at=bindparam("b_now", type_=_LEADS.c.updated_at.type),
    )
    .returning(_LEADS.c.score, _LEADS.c.stage_floor)
)
_ADD_POINTS_ACTIVE = _ADD_POINTS.values(
    last_activity_at=bindparam("b_now", type_=_LEADS.c.last_activity_at.type)
)


def apply_scores(
    session: Session,
    changes: Sequence[tuple[str, Change]],
    *,
    mql_threshold: int,
    now: datetime | None = None,
) -> int:
    """``apply_score`` for many changes at once (a campaign's opens and clicks, hundreds a
    stamp), by the same rules, in the session's transaction (the caller commits); returns how
    many counted. Changes are ``(lead id, change)`` in the order they happened.

    The rows go in by INSERT ... ON CONFLICT DO NOTHING on the unique key: a key counted
    already, by this batch or by another writer racing it, is skipped by the database itself, so
    a race ends as one writer would and never fails the batch. Then one UPDATE per lead, in lead
    order (the order every writer locks leads in), adds up its new points; each upward crossing
    of the MQL threshold queues its notification with the reason of the change that crossed,
    unless a journey raised the lead to mql or beyond before."""
    now = now or utcnow()
    first: dict[str, tuple[str, Change]] = {}  # one row per key: the first change holding it
    for lead_id, change in changes:
        first.setdefault(change.key, (lead_id, change))
    if not first:
        return 0
    connection = session.connection()
    rows = [
        {
            "lead_id": lead_id,
            "key": key,
            "event": change.event,
            "points": change.points,
            "reason": change.reason[:500],
            "created_at": now,
        }
        for key, (lead_id, change) in first.items()
    ]
    # One statement for all the rows (SQLAlchemy sends them as multi-row inserts).
    insert_new = _INSERT_NEW_KEYS[connection.dialect.name]
    counted = set(connection.execute(insert_new, rows).scalars())
    by_lead: dict[str, list[Change]] = {}
    for key, (lead_id, change) in first.items():
        if key in counted:
            by_lead.setdefault(lead_id, []).append(change)
    for lead_id in sorted(by_lead):
        applied = by_lead[lead_id]
        points = sum(change.points for change in applied)
        add = _ADD_POINTS_ACTIVE if any(change.activity for change in applied) else _ADD_POINTS
        after, floor = connection.execute(
            add, {"b_lead": lead_id, "b_points": points, "b_now": now}
        ).one()
        if floor in QUALIFIED:  # made known to sales when a journey raised its stage
            continue
        score = after - points
        for change in applied:  # as if applied one by one, in order
            if score < mql_threshold <= score + change.points:
                queue_notification(
                    session,
                    lead_id=lead_id,
                    score=score + change.points,
                    threshold=mql_threshold,
                    reason=change.reason,
                    now=now,
                )
            score += change.points
    return len(counted)


def queue_notification(
    session: Session, *, lead_id: str, score: int, threshold: int, reason: str, now: datetime
) -> MqlNotification:
    """Note a crossing of the MQL threshold for the sales notification, in the caller's
    transaction: a crossing is never lost, and never queued twice. relance/services/mql.py
    delivers it."""
    row = MqlNotification(
        lead_id=lead_id,
        score=score,
        threshold=threshold,
        reason=reason[:500],
        created_at=now,
        next_attempt_at=now,
    )
    session.add(row)
    return row


def decay_points(score: int, percent: float) -> int:
    """The (negative) change a decay makes: ``percent`` % of the score, rounded up, never below
    0."""
    if score <= 0 or percent <= 0:
        return 0
    return -min(score, math.ceil(score * percent / 100))


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:16]


def score_page_view(
    session: Session,
    rules: ScoringRules,
    *,
    lead_id: str,
    url: str,
    mql_threshold: int,
    now: datetime | None = None,
) -> Applied | None:
    """A page view scores per the page rules: once per lead, rule and UTC day (a retried event
    or a reload counts once); a page no rule names scores ``events.page_view`` once per URL and
    day."""
    now = now or utcnow()
    rule, points = rules.page_points(url)
    if points == 0:
        return None
    day = now.date().isoformat()
    key = (
        f"page:{lead_id}:{rule}:{day}"
        if rule != "page_view"
        else f"page:{lead_id}:url-{_digest(url)}:{day}"
    )
    reason = (
        f"visited the {rule} page ({url[:300]})" if rule != "page_view" else f"visited {url[:300]}"
    )
    return apply_score(
        session,
        lead_id=lead_id,
        event="page_view",
        key=key,
        reason=reason,
        points=points,
        mql_threshold=mql_threshold,
        now=now,
    )


def score_form(
    session: Session,
    rules: ScoringRules,
    *,
    lead_id: str,
    source_url: str | None,
    mql_threshold: int,
    now: datetime | None = None,
) -> Applied | None:
    """A form submitted: once per lead, form page and UTC day (a double submit counts once)."""
    now = now or utcnow()
    change = form_change(rules, lead_id=lead_id, source_url=source_url, now=now)
    if change is None:
        return None
    return _apply(session, lead_id, change, mql_threshold, now)


def form_change(
    rules: ScoringRules, *, lead_id: str, source_url: str | None, now: datetime
) -> Change | None:
    """What submitting a form scores (None: nothing)."""
    points = rules.events["form_submitted"]
    if points == 0:
        return None
    key = f"form:{lead_id}:{_digest(source_url or '-')}:{now.date().isoformat()}"
    reason = f"submitted a form ({source_url[:300]})" if source_url else "submitted a form"
    return Change("form_submitted", key, reason, points)


def fit_changes(rules: ScoringRules, lead: Lead) -> list[Change]:
    """What the demographic fit rules the lead matches score (each once per lead, ever)."""
    return [
        Change(
            "fit",
            f"fit:{lead.id}:{rule.name}",
            f"fit rule {rule.name}: {rule.field} is {getattr(lead, rule.field)}",
            rule.points,
            activity=False,
        )
        for rule in rules.fit
        if rule.points and rule.matches(lead)
    ]


def _apply(
    session: Session, lead_id: str, change: Change, mql_threshold: int, now: datetime
) -> Applied:
    return apply_score(
        session,
        lead_id=lead_id,
        event=change.event,
        key=change.key,
        reason=change.reason,
        points=change.points,
        mql_threshold=mql_threshold,
        activity=change.activity,
        now=now,
    )


def new_lead_scores(
    changes: list[Change], *, lead_id: str, mql_threshold: int, now: datetime
) -> tuple[int, list[ScoreEvent], list[MqlNotification]]:
    """A new lead's score from 0 through ``changes`` in order, as ``apply_score`` would leave it
    (none of a new lead's keys can have counted before): the score, its ``score_events`` rows and
    one MQL notification per upward crossing of the threshold."""
    score, events, notifications = 0, [], []
    for change in changes:
        before, score = score, score + change.points
        events.append(
            ScoreEvent(
                lead_id=lead_id,
                key=change.key,
                event=change.event,
                points=change.points,
                reason=change.reason[:500],
                created_at=now,
            )
        )
        if before < mql_threshold <= score:
            notifications.append(
                MqlNotification(
                    lead_id=lead_id,
                    score=score,
                    threshold=mql_threshold,
                    reason=change.reason[:500],
                    created_at=now,
                    next_attempt_at=now,
                )
            )
    return score, events, notifications


def score_fit(
    session: Session,
    rules: ScoringRules,
    *,
    lead: Lead,
    mql_threshold: int,
    now: datetime | None = None,
) -> list[Applied]:
    """Demographic fit: each rule the lead matches scores once per lead, ever (not an activity)."""
    now = now or utcnow()
    return [_apply(session, lead.id, c, mql_threshold, now) for c in fit_changes(rules, lead)]

"""Lead scoring: the rules (a YAML file, ``RELANCE_SCORING_RULES_FILE``) and the one function
that changes a score.

The rules file is validated with pydantic when the worker and the API start (a mistake stops
them with the file and the place: ``config/scoring.yaml: pages.0.url_pattern: ...``). Every
change goes through ``apply_score``: one ``score_events`` row with its reason and an idempotency
key (the same key counts once), the lead's score updated in the same transaction, and a crossing
of the MQL threshold noted for the sales notification (relance/services/mql.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy import update
from sqlmodel import Session, col, select

from relance.domain.models import Lead, ScoreEvent, utcnow

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,40}$")]
Points = Annotated[int, Field(ge=-1000, le=1000)]

# The events the code scores (journeys and API); a rules file must give each one points (0 is fine).
KNOWN_EVENTS = (
    "email_opened",
    "email_clicked",
    "form_submitted",
    "purchase",
    "reengaged",
    "page_view",
)


class RulesError(ValueError):
    """The scoring rules file is missing or wrong; the message says where."""


class PageRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    url_pattern: str = Field(
        min_length=1, max_length=500, description="a regular expression searched in the URL"
    )
    points: Points

    @field_validator("url_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"not a regular expression: {err}") from None
        return value

    def matches(self, url: str) -> bool:
        return re.search(self.url_pattern, url) is not None


class FitRule(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: Name
    field: Literal["country", "locale", "time_zone"]
    values: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        alias="in", min_length=1
    )
    points: Points

    def matches(self, lead: Lead) -> bool:
        value = getattr(lead, self.field)
        return value is not None and value.casefold() in {v.casefold() for v in self.values}


class DecayRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    percent: float = Field(default=10, ge=0, le=100, description="0: no decay")
    every_days: int = Field(default=30, ge=1, le=3650)


class ScoringRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: dict[Name, Points]
    pages: list[PageRule] = Field(default_factory=list)
    fit: list[FitRule] = Field(default_factory=list)
    decay: DecayRule = Field(default_factory=DecayRule)

    @model_validator(mode="after")
    def _complete(self) -> ScoringRules:
        missing = [e for e in KNOWN_EVENTS if e not in self.events]
        if missing:
            raise ValueError(f"events: give points (0 is fine) for {', '.join(missing)}")
        for kind, rules in (("pages", self.pages), ("fit", self.fit)):
            names = [r.name for r in rules]
            if len(set(names)) != len(names):
                raise ValueError(f"{kind}: rule names must be unique")
        return self

    def points(self, event: str) -> int | None:
        return self.events.get(event)

    def page_points(self, url: str) -> tuple[str, int]:
        """(rule name, points) for a page view: the first matching page rule, else ``page_view``."""
        for rule in self.pages:
            if rule.matches(url):
                return rule.name, rule.points
        return "page_view", self.events["page_view"]


def load_rules(path: Path | str) -> ScoringRules:
    """Read and check the rules file. Raises RulesError with the file and the place of a mistake."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise RulesError(f"{path}: cannot read the scoring rules: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise RulesError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise RulesError(f"{path}: expected a mapping with `events`, `pages`, `fit`, `decay`")
    try:
        return ScoringRules.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in err.errors()
        )
        raise RulesError(f"{path}: {problems}") from None


@lru_cache(maxsize=8)
def _cached(path: str, mtime: float) -> ScoringRules:
    return load_rules(path)


def rules_from(path: Path | str) -> ScoringRules:
    """The rules in ``path``, re-read when the file changes."""
    path = Path(path)
    try:
        mtime = path.stat().st_mtime
    except OSError:
        mtime = -1.0
    return _cached(str(path), mtime)


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
    upwards queues one sales notification (relance/services/mql.py)."""
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
    after = session.execute(
        update(Lead)
        .where(col(Lead.id) == lead_id)
        .values(**values)
        .returning(Lead.score)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    before = after - points
    if before < mql_threshold <= after:
        from relance.services.mql import queue_notification

        queue_notification(
            session, lead_id=lead_id, score=after, threshold=mql_threshold, reason=reason, now=now
        )
    return Applied(counted=True, points=points, before=before, score=after)


def decay_points(score: int, percent: float) -> int:
    """The (negative) change a decay makes: ``percent`` % of the score, rounded up, never below 0."""
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
    or a reload counts once); a page no rule names scores ``events.page_view`` once per URL and day."""
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
    points = rules.events["form_submitted"]
    if points == 0:
        return None
    key = f"form:{lead_id}:{_digest(source_url or '-')}:{now.date().isoformat()}"
    reason = f"submitted a form ({source_url[:300]})" if source_url else "submitted a form"
    return apply_score(
        session,
        lead_id=lead_id,
        event="form_submitted",
        key=key,
        reason=reason,
        points=points,
        mql_threshold=mql_threshold,
        now=now,
    )


def score_fit(
    session: Session,
    rules: ScoringRules,
    *,
    lead: Lead,
    mql_threshold: int,
    now: datetime | None = None,
) -> list[Applied]:
    """Demographic fit: each rule the lead matches scores once per lead, ever (not an activity)."""
    out = []
    for rule in rules.fit:
        if rule.points and rule.matches(lead):
            applied = apply_score(
                session,
                lead_id=lead.id,
                event="fit",
                key=f"fit:{lead.id}:{rule.name}",
                reason=f"fit rule {rule.name}: {rule.field} is {getattr(lead, rule.field)}",
                points=rule.points,
                mql_threshold=mql_threshold,
                activity=False,
                now=now,
            )
            out.append(applied)
    return out

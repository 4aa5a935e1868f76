"""A rule tree (relance/domain/conditions.py) compiled to one SQL query over the leads
(SQLAlchemy Core, the same on SQLite and PostgreSQL): what a segment counts, lists and exports,
and what a journey's condition asks of one lead. One compiler for both, so a journey condition
and a segment can never disagree about a lead.

Two ways to read the leads' history (custom events, messages, page views, lists), with the same
answers (the tests run both):

    ALL_LEADS   each history test is ``leads.id IN (SELECT lead_id ... GROUP BY lead_id HAVING
                count(*) >= N)``: one pass over the history for every lead at once (counting a
                segment, listing it)
    ONE_LEAD    each history test is a correlated ``EXISTS`` / ``(SELECT count(*) ...) >= N``:
                a few index lookups for the one lead a journey condition asks about

``promo_used`` (the code a journey run issued at one of its message nodes was redeemed) is a
journey's test, asked of one lead with the codes of its run (``promos``); a segment has no run,
and refuses it.

A missing value (an attribute the lead does not have, no consent row) makes a test false, also
under ``not``: ``not: {attribute: {name: plan, op: eq, value: pro}}`` holds for a lead with no
plan.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, false, func, not_, or_, select, union
from sqlmodel import Session, col

from relance.domain.conditions import (
    BUILT_IN_TYPES,
    RuleProblem,
    Test,
    attribute_type,
    problems,
    typed_value,
)
from relance.domain.lead_schema import LeadSchema
from relance.domain.models import (
    Consent,
    CustomEvent,
    Lead,
    LeadActivity,
    ListMember,
    Message,
    PromoCode,
    Segment,
    utcnow,
)
from relance.domain.segments import segment_expr, stage_expr
from relance.domain.settings import Settings, get_settings

Strategy = Literal["all_leads", "one_lead"]
ALL_LEADS: Strategy = "all_leads"
ONE_LEAD: Strategy = "one_lead"
MAX_DEPTH = 10  # segments inside segments
PROMO_IN_SEGMENT = (
    "promo_used asks about the code a journey run issued at one of its message nodes: "
    "a journey's condition may use it, a segment may not"
)


class RuleError(ValueError):
    """A rule tree that cannot be compiled: each problem names its test's path."""

    def __init__(self, found: list[RuleProblem]) -> None:
        self.problems = found
        super().__init__("; ".join(str(p) for p in found))


History = tuple[Any, Any, int]  # (a SELECT of lead ids, its lead id column, how many needed)
Resolver = Callable[[str], Test | None]  # a segment's id -> its rules (None: no such segment)


def stored_segments(session: Session) -> Resolver:
    """The saved segments' rules, read once each."""
    cache: dict[str, Test | None] = {}

    def resolve(segment_id: str) -> Test | None:
        if segment_id not in cache:
            row = session.get(Segment, segment_id)
            cache[segment_id] = None if row is None else Test.model_validate(row.rules)
        return cache[segment_id]

    return resolve


def _no_segments(segment_id: str) -> Test | None:
    return None


class Compiler:
    """Compiles rule trees to boolean SQL expressions over ``leads`` (correlated on Lead.id)."""

    def __init__(
        self,
        settings: Settings,
        *,
        schema: LeadSchema | None = None,
        resolve: Resolver = _no_segments,
        strategy: Strategy = ALL_LEADS,
        now: datetime | None = None,
        promos: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        # A journey run's promo codes by message node (None: no run, a segment's rules).
        self.promos = promos
        self.schema = schema if schema is not None else settings.lead_schema()
        self.resolve = resolve
        self.strategy = strategy
        self.now = now or utcnow()
        self._inside: list[str] = []  # the segments being compiled (a cycle check)

    def check(self, test: Test, *, own_id: str | None = None) -> None:
        """RuleError naming each test the lead schema or the saved segments refuse (a segment
        that does not exist, a cycle back to ``own_id``: the segment these rules are for)."""
        found = problems(test, self.schema)
        found += self._segment_problems(test, [own_id] if own_id else [])
        if self.promos is None:
            found += [
                RuleProblem(f"{path}.promo_used" if path else "promo_used", PROMO_IN_SEGMENT)
                for path, leaf in test.walk()
                if leaf.promo_used is not None
            ]
        if found:
            raise RuleError(found)

    def _segment_problems(self, test: Test, trail: list[str]) -> list[RuleProblem]:
        out: list[RuleProblem] = []
        for path, leaf in test.walk():
            if leaf.in_segment is None:
                continue
            where = f"{path}.in_segment" if path else "in_segment"
            target = leaf.in_segment
            if target in trail:
                chain = " → ".join([*trail, target])
                out.append(RuleProblem(where, f"segments refer to each other in a cycle: {chain}"))
                continue
            rules = self.resolve(target)
            if rules is None:
                out.append(RuleProblem(where, f"no segment {target!r}"))
            elif len(trail) >= MAX_DEPTH:
                out.append(RuleProblem(where, f"segments nested deeper than {MAX_DEPTH}"))
            elif inner := self._segment_problems(rules, [*trail, target]):
                why = "; ".join(str(p) for p in inner)
                out.append(RuleProblem(where, f"segment {target!r} cannot be read: {why}"))
        return out

    # The tree --------------------------------------------------------------------------------
    def where(self, test: Test) -> ColumnElement[bool]:
        if test.all is not None:
            return and_(*(self.where(t) for t in test.all))
        if test.any is not None:
            return or_(*(self.where(t) for t in test.any))
        if test.not_ is not None:
            return not_(func.coalesce(self.where(test.not_), false()))
        return self.leaf(test)

    def leaf(self, test: Test) -> ColumnElement[bool]:
        kind = test.kind
        return getattr(self, f"_{kind}")(getattr(test, kind))

    # Facts about the lead --------------------------------------------------------------------
    def _score(self, t) -> ColumnElement[bool]:
        bounds = []
        if t.gte is not None:
            bounds.append(col(Lead.score) >= t.gte)
        if t.lte is not None:
            bounds.append(col(Lead.score) <= t.lte)
        return and_(*bounds)

    def _stage(self, stages: list[str]) -> ColumnElement[bool]:
        return stage_expr(self.settings).in_(stages)

    def _segment(self, segments: list[str]) -> ColumnElement[bool]:
        # segment_expr's CASE as score ranges (the same answers; a range can use an index)
        score, hot, warm = (
            col(Lead.score),
            self.settings.segment_hot_score,
            self.settings.segment_warm_score,
        )
        ranges = {
            "hot": score >= hot,
            "warm": and_(score >= warm, score < hot),
            "cold": and_(score < warm, score < hot),
        }
        return or_(false(), *(ranges[s] for s in segments))

    def _consent(self, channel: str) -> ColumnElement[bool]:
        latest = (
            select(Consent.status)
            .where(
                col(Consent.lead_id) == col(Lead.id),
                Consent.channel == channel,
                Consent.purpose == "marketing",
            )
            .order_by(col(Consent.id).desc())
            .limit(1)
            .scalar_subquery()
        )
        return func.coalesce(latest, "none") == "granted"

    def _in_list(self, name: str) -> ColumnElement[bool]:
        return self._history(*self._rows_in_list(name))

    @staticmethod
    def _rows_in_list(name: str) -> History:
        return (
            select(ListMember.lead_id).where(ListMember.list_name == name),
            col(ListMember.lead_id),
            1,
        )

    def _in_segment(self, segment_id: str) -> ColumnElement[bool]:
        if segment_id in self._inside or len(self._inside) >= MAX_DEPTH:
            raise RuleError([RuleProblem("in_segment", f"segment {segment_id!r} is in a cycle")])
        rules = self.resolve(segment_id)
        if rules is None:
            raise RuleError([RuleProblem("in_segment", f"no segment {segment_id!r}")])
        self._inside.append(segment_id)
        try:
            return self.where(rules)
        finally:
            self._inside.pop()

    def _promo_used(self, node_id: str) -> ColumnElement[bool]:
        if self.promos is None:
            raise RuleError([RuleProblem("promo_used", PROMO_IN_SEGMENT)])
        code = self.promos.get(node_id)
        if code is None:  # the run has not issued a code there (yet): none was redeemed
            return false()
        rows = select(PromoCode.lead_id).where(
            PromoCode.code == code, col(PromoCode.redeemed_at).is_not(None)
        )
        return self._history(rows, col(PromoCode.lead_id), 1)

    def _attribute(self, a) -> ColumnElement[bool]:
        typed = attribute_type(self.schema, a.name)
        if typed is None:
            raise RuleError([RuleProblem("attribute", f"no attribute {a.name!r}")])
        kind, spec = typed
        if a.name in BUILT_IN_TYPES:
            column: Any = getattr(Lead, a.name)
        else:
            value = col(Lead.attributes)[a.name]
            column = {
                "number": value.as_float,
                "bool": value.as_boolean,
            }.get(kind, value.as_string)()
        if a.op == "exists":
            return column.is_not(None)
        if a.op == "not_exists":
            return column.is_(None)
        if a.op in ("in_last_days", "in_next_days"):
            return self._days(column, kind, a.op, a.days)
        if a.op in ("ne", "not_in"):
            positive = a.model_copy(update={"op": "eq" if a.op == "ne" else "in"})
            return not_(func.coalesce(self._attribute(positive), false()))
        operand = (
            [typed_value(kind, spec, a.op, v) for v in a.value]
            if isinstance(a.value, list)
            else typed_value(kind, spec, a.op, a.value)
        )
        if a.op == "contains":
            return func.lower(column).contains(str(operand).lower(), autoescape=True)
        compare = {
            "eq": column.__eq__,
            "in": column.in_,
            "gt": column.__gt__,
            "gte": column.__ge__,
            "lt": column.__lt__,
            "lte": column.__le__,
            "before": column.__lt__,
            "after": column.__gt__,
        }[a.op]
        return compare(operand)

    def _days(self, column, kind: str, op: str, days: int) -> ColumnElement[bool]:
        if kind == "date":  # stored as YYYY-MM-DD: compared as text, in the calendar (UTC)
            today: date = self.now.astimezone(UTC).date()
            low, high = (
                (today - timedelta(days=days), today)
                if op == "in_last_days"
                else (today, today + timedelta(days=days))
            )
            return column.between(low.isoformat(), high.isoformat())
        span = timedelta(days=days)
        low_at, high_at = (
            (self.now - span, self.now) if op == "in_last_days" else (self.now, self.now + span)
        )
        return column.between(low_at, high_at)

    # The lead's history ----------------------------------------------------------------------
    def _history(self, rows, lead_column, at_least: int) -> ColumnElement[bool]:
        """``rows`` (a SELECT of lead ids, filtered): the lead has at least ``at_least`` of them."""
        if self.strategy == ALL_LEADS:
            if at_least > 1:
                rows = rows.group_by(lead_column).having(func.count() >= at_least)
            return col(Lead.id).in_(rows)
        correlated = rows.where(lead_column == col(Lead.id))
        if at_least == 1:
            return correlated.exists()
        counted = correlated.with_only_columns(func.count()).scalar_subquery()
        return counted >= at_least

    def _since(self, within: timedelta | None) -> datetime | None:
        return None if within is None else self.now - within

    def _event(self, e) -> ColumnElement[bool]:
        return self._history(*self._rows_event(e))

    def _rows_event(self, e) -> History:
        spec = self.schema.events.get(e.name)
        if spec is None:
            raise RuleError([RuleProblem("event", f"no event {e.name!r} in the lead schema")])
        rows = select(CustomEvent.lead_id).where(CustomEvent.name == e.name)
        if (since := self._since(e.within)) is not None:
            rows = rows.where(col(CustomEvent.occurred_at) >= since)
        for key, value in e.where.items():
            prop = col(CustomEvent.properties)[key]
            if isinstance(value, bool):
                rows = rows.where(prop.as_boolean() == value)
            elif isinstance(value, int | float):
                rows = rows.where(prop.as_float() == float(value))
            else:
                rows = rows.where(prop.as_string() == value)
        return rows, col(CustomEvent.lead_id), e.at_least

    def _message(self, m) -> ColumnElement[bool]:
        return self._history(*self._rows_message(m))

    def _rows_message(self, m) -> History:
        stamp = {
            "sent": col(Message.sent_at),
            "opened": col(Message.opened_at),
            "clicked": col(Message.clicked_at),
        }[m.action]
        rows = select(Message.lead_id).where(stamp.is_not(None))
        if m.action == "sent":
            rows = rows.where(Message.status == "sent")
        if (since := self._since(m.within)) is not None:
            rows = rows.where(stamp >= since)
        if m.template is not None:
            rows = rows.where(Message.template == m.template)
        if m.channel is not None:
            rows = rows.where(Message.channel == m.channel)
        return rows, col(Message.lead_id), m.at_least

    def _page(self, p) -> ColumnElement[bool]:
        return self._history(*self._rows_page(p))

    def _rows_page(self, p) -> History:
        url = func.lower(col(LeadActivity.url))
        if p.url_contains is not None:
            matches = url.contains(p.url_contains.lower(), autoescape=True)
        else:
            matches = url.like(_like_pattern(p.url_matches.lower()), escape="\\")
        rows = select(LeadActivity.lead_id).where(LeadActivity.kind == "page_view", matches)
        if (since := self._since(p.within)) is not None:
            rows = rows.where(col(LeadActivity.at) >= since)
        return rows, col(LeadActivity.lead_id), p.at_least

    # A tree of history tests alone, as a set of lead ids -----------------------------------------
    def history_ids(self, test: Test) -> Select | None:
        """The lead ids the tree selects, read from the history alone (no row of ``leads``:
        every history row names an existing lead), each once; None when the tree tests anything
        about the lead itself (its score, attributes, consent) or has a ``not`` (whose set is
        the leads outside another). ``all`` is the intersection of its parts, ``any`` their
        union."""
        if test.all is not None or test.any is not None:
            parts = [self.history_ids(t) for t in test.all or test.any or []]
            if not parts or any(p is None for p in parts):
                return None
            if len(parts) == 1:
                return parts[0]
            if test.any is not None:
                either = union(*(select(p.subquery().c.lead_id) for p in parts)).subquery()
                return select(either.c.lead_id)
            first = parts[0].subquery()  # each id once: the others filter it
            return select(first.c.lead_id).where(
                *(first.c.lead_id.in_(select(p.subquery().c.lead_id)) for p in parts[1:])
            )
        if test.kind == "in_segment":
            segment_id = test.in_segment
            if segment_id in self._inside or len(self._inside) >= MAX_DEPTH:
                return None  # the ordinary compiler says why
            rules = self.resolve(segment_id)
            if rules is None:
                return None
            self._inside.append(segment_id)
            try:
                return self.history_ids(rules)
            finally:
                self._inside.pop()
        rows_of = getattr(self, f"_rows_{test.kind}", None) if test.kind else None
        if rows_of is None:
            return None
        rows, lead_column, at_least = rows_of(getattr(test, test.kind))
        if at_least > 1:
            return rows.group_by(lead_column).having(func.count() >= at_least)
        return rows.distinct()


def _like_pattern(pattern: str) -> str:
    """``*`` is any text; every other character means itself (``%`` and ``_`` too)."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


# Segments over all leads ------------------------------------------------------------------------
def _compiler(session: Session, settings: Settings, **kw: Any) -> Compiler:
    return Compiler(settings, resolve=stored_segments(session), **kw)


def count(session: Session, test: Test, settings: Settings, **kw: Any) -> int:
    """How many leads the tree selects. A tree of history tests alone (emails opened, pages
    seen, events, lists, combined by all / any) is counted from the history's own subqueries,
    as a person would write it: reading the leads table as well costs as much again."""
    compiler = _compiler(session, settings, **kw)
    # PostgreSQL only: SQLite plans a DISTINCT over the history by its lead_id index, slower
    # than the semi-join over the leads table it plans for the other form (measured).
    from_history = compiler.strategy == ALL_LEADS and session.get_bind().dialect.name != "sqlite"
    ids = compiler.history_ids(test) if from_history else None
    if ids is not None:
        return session.execute(select(func.count()).select_from(ids.subquery())).scalar_one()
    where = compiler.where(test)
    return session.execute(select(func.count()).select_from(Lead).where(where)).scalar_one()


def member_ids(
    session: Session,
    test: Test,
    settings: Settings,
    *,
    limit: int | None = None,
    after: str | None = None,
    lead_ids: Collection[str] | None = None,
    **kw: Any,
) -> list[str]:
    """The members' lead ids in id order, after the cursor ``after`` (a lead id); among
    ``lead_ids`` only when given (a few leads whose facts changed: compile with ``strategy=
    ONE_LEAD``, each history test a few index lookups per lead)."""
    where = _compiler(session, settings, **kw).where(test)
    query = select(Lead.id).where(where).order_by(col(Lead.id))
    if lead_ids is not None:
        query = query.where(col(Lead.id).in_(list(lead_ids)))
    if after:
        query = query.where(col(Lead.id) > after)
    if limit is not None:
        query = query.limit(limit)
    return list(session.execute(query).scalars())


def member_rows(
    session: Session,
    test: Test,
    settings: Settings,
    *,
    limit: int,
    after: str | None = None,
) -> list[tuple[Lead, str, str]]:
    """A page of members in id order after the cursor: each lead with its segment (hot / warm /
    cold) and stage."""
    where = _compiler(session, settings).where(test)
    query = (
        select(Lead, segment_expr(settings), stage_expr(settings))
        .where(where)
        .order_by(col(Lead.id))
        .limit(limit)
    )
    if after:
        query = query.where(col(Lead.id) > after)
    return [(lead, segment, stage) for lead, segment, stage in session.execute(query)]


def segment_members(
    session: Session, segment_id: str, settings: Settings | None = None, *, page: int = 1000
) -> Iterator[str]:
    """The ids of a saved segment's members, in id order, read a page at a time (the audience
    of a broadcast; ``settings``: the thresholds of hot / warm / cold and the lead schema, the
    process's by default). KeyError if there is no such segment."""
    settings = settings or get_settings()
    row = session.get(Segment, segment_id)
    if row is None:
        raise KeyError(f"no segment {segment_id!r}")
    test = Test.model_validate(row.rules)
    after: str | None = None
    while True:
        ids = member_ids(session, test, settings, limit=page, after=after)
        yield from ids
        if len(ids) < page:
            return
        after = ids[-1]


def referring_segments(session: Session, segment_id: str) -> list[str]:
    """The names of the segments whose rules name this one (it cannot be deleted under them)."""
    return [
        row.name
        for row in session.execute(select(Segment)).scalars()
        if segment_id in Test.model_validate(row.rules).segments_named()
    ]


# One lead ---------------------------------------------------------------------------------------
@dataclass
class Verdict:
    holds: bool
    why: str  # facts about the lead (score, stage, counts...), never its address nor its data


def evaluate(
    session: Session,
    lead_id: str,
    test: Test,
    settings: Settings,
    *,
    now: datetime | None = None,
    promos: dict[str, str] | None = None,
) -> Verdict | None:
    """Whether the tree holds for the lead (None: no such lead), and why: the whole tree and
    each of its facts in one query, by the compiler segments use. ``promos``: the codes the
    journey run asking issued, by message node (what ``promo_used`` reads)."""
    compiler = Compiler(
        settings,
        resolve=stored_segments(session),
        strategy=ONE_LEAD,
        now=now or utcnow(),
        promos=promos,
    )
    leaves = test.walk()
    columns = [compiler.where(test).label("holds")]
    columns += [
        func.coalesce(compiler.leaf(t), false()).label(f"l{i}") for i, (_, t) in enumerate(leaves)
    ]
    columns += [
        col(Lead.score).label("score"),
        segment_expr(settings).label("segment"),
        stage_expr(settings).label("stage"),
    ]
    row = session.execute(select(*columns).where(col(Lead.id) == lead_id)).one_or_none()
    if row is None:
        return None
    facts = {id(t): bool(row[i + 1]) for i, (_, t) in enumerate(leaves)}
    return Verdict(bool(row.holds), _why(test, facts, row))


def _why(test: Test, facts: dict[int, bool], row: Any) -> str:
    if test.all is not None or test.any is not None:
        word = " and " if test.all is not None else " or "
        return "(" + word.join(_why(t, facts, row) for t in test.all or test.any or []) + ")"
    if test.not_ is not None:
        return f"not ({_why(test.not_, facts, row)})"
    holds = facts[id(test)]
    seen = {
        "score": f"score {row.score}",
        "stage": f"stage {row.stage}",
        "segment": f"segment {row.segment}",
        "consent": "granted" if holds else "not granted",
        "in_list": "a member" if holds else "not a member",
        "in_segment": "a member" if holds else "not a member",
        "promo_used": "redeemed" if holds else "not redeemed",
    }.get(test.kind)
    answer = "yes" if holds else "no"
    return f"{test.describe()}: {answer}" + (f" ({seen})" if seen else "")


__all__ = [
    "ALL_LEADS",
    "ONE_LEAD",
    "PROMO_IN_SEGMENT",
    "Compiler",
    "RuleError",
    "Verdict",
    "count",
    "evaluate",
    "member_ids",
    "member_rows",
    "referring_segments",
    "segment_members",
    "stored_segments",
]

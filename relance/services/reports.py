"""The reports: journeys' funnels, messages' rates, experiments' arms, per day for trends.

Read from the database only (never from Temporal), with SQLAlchemy Core queries that run on
SQLite and PostgreSQL. Where each figure comes from:

- a journey's runs (``journey_runs``, written by the journeys themselves, workflows/recording.py):
  entered, ended per outcome, converted (a goal reached), the time to convert, the checkpoints
  passed, the experiments' arms. A report's range selects the runs that *entered* in it (a
  cohort): their conversion rate is the share of them that converted, whenever they did;
- "active now per step": the runs of the cohort that have not ended, each at the step of the
  last message it recorded in the send ledger (the ledger's step, reduced to the node for a
  journey written as data); a run that has recorded no message yet is at ``(entered)``. A journey
  waiting between two messages shows the step of the last one: the database knows what was sent,
  not which timer is running;
- the messages (``messages``, the send ledger) created in the range: sent, skipped by reason,
  deferred (ever held by the frequency cap), failed, delivered (what the provider accepted: no
  delivery receipts nor bounces come back yet, so it equals sent), and what their readers did:
  the first human open and click, the unsubscribe (relance/domain/engagement.py: machines' hits
  are counted apart, as ``opened_any`` and ``clicked_any``).

Rates are over the messages sent: open rate = human-opened / sent, click rate = human-clicked /
sent, click-to-open = human-clicked / human-opened, unsubscribe rate = unsubscribed / sent.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, and_, case, cast, func, literal, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Date

from relance.domain.models import JourneyRun, Message, as_utc

messages = Message.__table__
runs = JourneyRun.__table__

NOT_MESSAGED = "(entered)"
Z_95 = 1.959963984540054


# Portable pieces ------------------------------------------------------------------------------
class _ledger_node(FunctionElement):
    """A ledger step without its run tag: ``welcome:b.email#2@240101090000`` -> the part before
    ``@`` (the rest, arm, channel and visit, is taken off in Python: few distinct values)."""

    type = String()
    inherit_cache = True


@compiles(_ledger_node)
def _ledger_node_default(element, compiler, **kw):
    step = compiler.process(list(element.clauses)[0], **kw)
    return f"CASE WHEN instr({step}, '@') > 0 THEN substr({step}, 1, instr({step}, '@') - 1) ELSE {step} END"  # noqa: E501


@compiles(_ledger_node, "postgresql")
def _ledger_node_pg(element, compiler, **kw):
    return f"split_part({compiler.process(list(element.clauses)[0], **kw)}, '@', 1)"


class _utc_day(FunctionElement):
    """The UTC day of a timestamp, as a date."""

    type = Date()
    inherit_cache = True


@compiles(_utc_day)
def _utc_day_default(element, compiler, **kw):
    return f"date({compiler.process(list(element.clauses)[0], **kw)})"


@compiles(_utc_day, "postgresql")
def _utc_day_pg(element, compiler, **kw):
    return f"CAST(({compiler.process(list(element.clauses)[0], **kw)} AT TIME ZONE 'UTC') AS DATE)"


def node_of(step: str) -> str:
    """The step a report shows: a defined journey's node (its arm, channel and visit taken off);
    a coded journey's step as it is."""
    step = step.split("@", 1)[0]
    for mark in ("#", "."):
        step = step.split(mark, 1)[0]
    return step.split(":", 1)[0]


def arm_of(step: str) -> str | None:
    """The experiment arm a defined journey's message was sent on (``<node>:<arm>``), if any."""
    head = step.split("@", 1)[0].split("#", 1)[0].split(".", 1)[0]
    return head.split(":", 1)[1] if ":" in head else None


def _flag(condition) -> object:
    return func.sum(case((condition, 1), else_=0))


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _day(value) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime  # excluded


# Skips, by kind ------------------------------------------------------------------------------
# The send ledger keeps a skip's sentence (activities/sending.py, activities/frequency.py); its
# kind is read from how the sentence starts.
SKIP_KINDS = (
    ("consent", "no marketing consent%"),
    ("suppression", "the address is on the suppression list%"),
    ("cap", "skipped (frequency cap%"),
    ("excluded", "excluded: %"),
    ("no_address", "the lead has no %"),
    ("window", "the journey stopped while the message waited%"),
)


def _skip_kind():
    return case(
        *((messages.c.reason.like(pattern), literal(kind)) for kind, pattern in SKIP_KINDS),
        else_=literal("other"),
    )


# Journeys ------------------------------------------------------------------------------------
def _cohort(journey: str | None, period: Period):
    where = [runs.c.entered_at >= period.start, runs.c.entered_at < period.end]
    if journey is not None:
        where.append(runs.c.journey == journey)
    return and_(*where)


def journeys_summary(engine: Engine, period: Period) -> list[dict]:
    """Every journey with runs entered in the period: entered, active, ended, converted."""
    converted = runs.c.goal.is_not(None)
    query = (
        select(
            runs.c.journey,
            func.count().label("entered"),
            _flag(runs.c.closed_at.is_(None)).label("active"),
            _flag(converted).label("converted"),
        )
        .where(_cohort(None, period))
        .group_by(runs.c.journey)
        .order_by(runs.c.journey)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "journey": row.journey,
            "entered": row.entered,
            "active": row.active or 0,
            "ended": row.entered - (row.active or 0),
            "converted": row.converted or 0,
            "conversion_rate": _rate(row.converted or 0, row.entered),
        }
        for row in rows
    ]


def journey_report(engine: Engine, journey: str, period: Period, *, by_day: bool = False) -> dict:
    """One journey's funnel for the runs that entered in the period (see the module)."""
    with engine.connect() as conn:
        outcomes = _outcomes(conn, journey, period)
        entered = sum(outcomes.values())
        active = outcomes.pop(None, 0)
        converted_times = _times_to_convert(conn, journey, period)
        report = {
            "journey": journey,
            "start": period.start,
            "end": period.end,
            "entered": entered,
            "active": active,
            "active_by_step": _active_by_step(conn, journey, period),
            "completed": dict(sorted(outcomes.items())),
            "converted": len(converted_times),
            "conversion_rate": _rate(len(converted_times), entered),
            "median_seconds_to_convert": (
                statistics.median(converted_times) if converted_times else None
            ),
            "checkpoints": _checkpoints(conn, journey, period),
            "steps": _steps(conn, journey, period),
        }
        if by_day:
            report["days"] = _journey_days(conn, journey, period)
    return report


def _outcomes(conn: Connection, journey: str, period: Period) -> Counter:
    query = (
        select(runs.c.outcome, func.count())
        .where(_cohort(journey, period))
        .group_by(runs.c.outcome)
    )
    # An open run has no outcome yet (None): counted as active.
    return Counter(
        {(outcome if outcome is not None else None): n for outcome, n in conn.execute(query)}
    )


def _times_to_convert(conn: Connection, journey: str, period: Period) -> list[float]:
    query = select(runs.c.entered_at, runs.c.closed_at).where(
        _cohort(journey, period), runs.c.goal.is_not(None), runs.c.closed_at.is_not(None)
    )
    return [
        (as_utc(closed) - as_utc(entered)).total_seconds()
        for entered, closed in conn.execute(query)
    ]


def _checkpoints(conn: Connection, journey: str, period: Period) -> dict[str, int]:
    """How many runs passed each checkpoint (runs that ended: a run tells its checkpoints when
    it ends). Grouped on the list's JSON text: few distinct lists, however many runs."""
    as_text = cast(runs.c.checkpoints, String)
    query = (
        select(as_text, func.count())
        .where(_cohort(journey, period), as_text != "[]")
        .group_by(as_text)
    )
    counts: Counter[str] = Counter()
    for names, n in conn.execute(query):
        for name in set(json.loads(names) if isinstance(names, str) else names or ()):
            counts[name] += n
    return dict(sorted(counts.items()))


def _active_by_step(conn: Connection, journey: str, period: Period) -> dict[str, int]:
    active = (
        select(runs.c.workflow_id, runs.c.entered_at)
        .where(_cohort(journey, period), runs.c.closed_at.is_(None))
        .subquery()
    )
    ranked = (
        select(
            active.c.workflow_id,
            messages.c.step,
            func.row_number()
            .over(partition_by=active.c.workflow_id, order_by=messages.c.created_at.desc())
            .label("n"),
        )
        .select_from(
            active.outerjoin(
                messages,
                and_(
                    messages.c.workflow_id == active.c.workflow_id,
                    messages.c.journey == journey,
                    messages.c.created_at >= active.c.entered_at,
                ),
            )
        )
        .subquery()
    )
    query = (
        select(_ledger_node(ranked.c.step), func.count())
        .where(ranked.c.n == 1)
        .group_by(_ledger_node(ranked.c.step))
    )
    counts: Counter[str] = Counter()
    for step, n in conn.execute(query):
        counts[node_of(step) if step else NOT_MESSAGED] += n
    return dict(sorted(counts.items()))


def _message_counts():
    status = messages.c.status
    return (
        func.count().label("total"),
        _flag(status == "sent").label("sent"),
        _flag(status == "skipped").label("skipped"),
        _flag(status == "failed").label("failed"),
        _flag(messages.c.deferred_until.is_not(None)).label("deferred"),
        # Accepted by the provider (the SMTP relay, the SMS gateway, the webhook's receiver): no
        # delivery receipts nor bounces come back yet, so delivered is what the provider took.
        _flag(status == "sent").label("delivered"),
        _flag(messages.c.opened_at.is_not(None)).label("opened_any"),
        _flag(messages.c.human_opened_at.is_not(None)).label("opened"),
        _flag(messages.c.clicked_at.is_not(None)).label("clicked_any"),
        _flag(messages.c.human_clicked_at.is_not(None)).label("clicked"),
        _flag(messages.c.unsubscribed_at.is_not(None)).label("unsubscribed"),
    )


COUNTS = (
    "total",
    "sent",
    "skipped",
    "failed",
    "deferred",
    "delivered",
    "opened_any",
    "opened",
    "clicked_any",
    "clicked",
    "unsubscribed",
)


def _add(into: dict, row) -> None:
    for name in COUNTS:
        into[name] = into.get(name, 0) + (getattr(row, name) or 0)


def _with_rates(counts: dict) -> dict:
    sent, opened = counts.get("sent", 0), counts.get("opened", 0)
    return {
        **counts,
        "open_rate": _rate(opened, sent),
        "click_rate": _rate(counts.get("clicked", 0), sent),
        "click_to_open": _rate(counts.get("clicked", 0), opened),
        "unsubscribe_rate": _rate(counts.get("unsubscribed", 0), sent),
    }


def _in_period(period: Period):
    return and_(messages.c.created_at >= period.start, messages.c.created_at < period.end)


def _steps(conn: Connection, journey: str, period: Period) -> dict[str, dict]:
    """Each step's messages (created in the period): the funnel drawn step by step."""
    node = _ledger_node(messages.c.step)
    query = (
        select(node.label("step"), *_message_counts())
        .where(messages.c.journey == journey, _in_period(period))
        .group_by(node)
    )
    steps: dict[str, dict] = defaultdict(dict)
    for row in conn.execute(query):
        _add(steps[node_of(row.step)], row)
    return {step: _with_rates(counts) for step, counts in sorted(steps.items())}


def _journey_days(conn: Connection, journey: str, period: Period) -> list[dict]:
    entered_day = _utc_day(runs.c.entered_at)
    closed_day = _utc_day(runs.c.closed_at)
    days: dict[str, dict] = defaultdict(lambda: {"entered": 0, "converted": 0, "sent": 0})
    for day, n in conn.execute(
        select(entered_day, func.count()).where(_cohort(journey, period)).group_by(entered_day)
    ):
        days[_day(day)]["entered"] = n
    for day, n in conn.execute(
        select(closed_day, func.count())
        .where(_cohort(journey, period), runs.c.goal.is_not(None), runs.c.closed_at.is_not(None))
        .group_by(closed_day)
    ):
        days[_day(day)]["converted"] = n
    sent_day = _utc_day(messages.c.created_at)
    for day, n in conn.execute(
        select(sent_day, func.count())
        .where(messages.c.journey == journey, _in_period(period), messages.c.status == "sent")
        .group_by(sent_day)
    ):
        days[_day(day)]["sent"] = n
    return [{"day": day, **counts} for day, counts in sorted(days.items())]


# Messages ------------------------------------------------------------------------------------
def messages_report(
    engine: Engine, period: Period, *, journey: str | None = None, by_day: bool = False
) -> list[dict]:
    """Per template (of ``journey``, or of every journey): what was sent and what it did."""
    where = [_in_period(period)]
    if journey is not None:
        where.append(messages.c.journey == journey)
    keys = [messages.c.template]
    if by_day:
        keys.append(_utc_day(messages.c.created_at).label("day"))
    skip_keys = [messages.c.template, _skip_kind().label("kind")]
    with engine.connect() as conn:
        rows = conn.execute(select(*keys, *_message_counts()).where(*where).group_by(*keys)).all()
        skips: dict[str, dict[str, int]] = defaultdict(dict)
        for template, kind, n in conn.execute(
            select(*skip_keys, func.count())
            .where(*where, messages.c.status == "skipped")
            .group_by(*skip_keys)
        ):
            skips[template][kind] = n
    by_template: dict[str, dict] = {}
    for row in rows:
        entry = by_template.setdefault(row.template, {"template": row.template, "counts": {}})
        _add(entry["counts"], row)
        if by_day:
            entry.setdefault("days", []).append(
                {"day": _day(row.day), **_with_rates({n: getattr(row, n) or 0 for n in COUNTS})}
            )
    out = []
    for template, entry in sorted(by_template.items()):
        item = {
            "template": template,
            "journey": journey,
            **_with_rates(entry["counts"]),
            "skipped_by_reason": dict(sorted(skips.get(template, {}).items())),
        }
        if by_day:
            item["days"] = sorted(entry["days"], key=lambda d: d["day"])
        out.append(item)
    return out


# Experiments ---------------------------------------------------------------------------------
def wilson(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """The 95 % confidence interval of a proportion (Wilson's: sound for small counts)."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float] | None:
    """The two-proportion z-test (pooled): z and its two-sided p-value; None when undefined."""
    if n1 == 0 or n2 == 0:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return None
    z = (x1 / n1 - x2 / n2) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def experiment_report(engine: Engine, journey: str, node: str, period: Period) -> dict:
    """Per arm of the experiment ``node``: the runs placed on it that ended (entered in the
    period), their conversions, the rate with its 95 % interval; the messages sent on it; each
    arm against the leading one (the highest rate), two-proportion z-test at 5 %."""
    arms: dict[str, dict] = defaultdict(lambda: {"runs": 0, "conversions": 0, "sends": 0})
    with engine.connect() as conn:
        for placed, goal in conn.execute(
            select(runs.c.arms, runs.c.goal).where(
                _cohort(journey, period),
                runs.c.closed_at.is_not(None),
                cast(runs.c.arms, String) != "{}",
            )
        ):
            arm = (placed or {}).get(node)
            if arm is None:
                continue
            arms[arm]["runs"] += 1
            arms[arm]["conversions"] += goal is not None
        step = _ledger_node(messages.c.step)
        for raw, n in conn.execute(
            select(step, func.count())
            .where(messages.c.journey == journey, _in_period(period), messages.c.status == "sent")
            .group_by(step)
        ):
            arm = arm_of(raw)
            if arm is not None and arm in arms:
                arms[arm]["sends"] += n
    for counts in arms.values():
        counts["conversion_rate"] = _rate(counts["conversions"], counts["runs"])
        counts["interval_95"] = wilson(counts["conversions"], counts["runs"])
    leading = max(arms, key=lambda a: (arms[a]["conversion_rate"] or 0, a), default=None)
    significant = False
    for name, counts in arms.items():
        if name == leading:
            counts["versus_leading"] = None
            continue
        lead = arms[leading]
        test = two_proportion_z(
            lead["conversions"], lead["runs"], counts["conversions"], counts["runs"]
        )
        counts["versus_leading"] = (
            None
            if test is None
            else {
                "z": round(test[0], 4),
                "p_value": round(test[1], 6),
                "significant": test[1] < 0.05,
            }
        )
    others = [c["versus_leading"] for n, c in arms.items() if n != leading]
    significant = bool(others) and all(o is not None and o["significant"] for o in others)
    return {
        "journey": journey,
        "node": node,
        "start": period.start,
        "end": period.end,
        "arms": dict(sorted(arms.items())),
        "leading_arm": leading,
        "significant": significant,
    }


def experiment_nodes(engine: Engine, journey: str, period: Period) -> list[str]:
    """The experiments the period's runs of ``journey`` were placed on (their nodes), so a page
    can show each one's arms. Grouped on the arms' JSON text: few distinct values."""
    as_text = cast(runs.c.arms, String)
    nodes: set[str] = set()
    with engine.connect() as conn:
        for (placed,) in conn.execute(
            select(as_text).where(_cohort(journey, period), as_text != "{}").group_by(as_text)
        ):
            nodes.update(json.loads(placed) if isinstance(placed, str) else placed or {})
    return sorted(nodes)


def funnel_stages(report: dict) -> list[tuple[str, int]]:
    """A journey's funnel as a chart draws it: entered, each step's messages sent (the most sent
    first: a funnel narrows), each checkpoint passed, converted."""
    steps = sorted(
        ((step, counts.get("sent", 0)) for step, counts in report["steps"].items()),
        key=lambda pair: (-pair[1], pair[0]),
    )
    return [
        ("entered", report["entered"]),
        *((f"sent: {step}", n) for step, n in steps),
        *((f"checkpoint: {name}", n) for name, n in report["checkpoints"].items()),
        ("converted", report["converted"]),
    ]

"""Segment counts (relance/domain/segment_query.py) over many leads and a long history, vs the
same counts written by hand in SQL, in the same run, on SQLite and on PostgreSQL.

The data: ``--segment-leads`` leads (100,000 by default; a fifth in France, scores spread 0-99, a
plan attribute) and ``--segment-events`` history rows (1,000,000 by default) shared between
emails (half of them opened, a tenth clicked), page views (a tenth of them of the pricing page)
and custom events (webinars attended), spread over the last 60 days. Each rule is counted the
way segments count (all leads at once: GROUP BY ... HAVING) and the way one lead's condition
reads (correlated EXISTS / count subqueries), against the hand-written query; the best of three
runs each, warm. Target: the compiled count within 2× of the hand-written SQL.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import DateTime, bindparam, func, insert, select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bench.results import Row
from bench.stack import say
from relance.dev.postgres import throwaway_postgres
from relance.domain.conditions import Test
from relance.domain.db import make_engine
from relance.domain.models import CustomEvent, Lead, LeadActivity, Message, utcnow
from relance.domain.segment_query import ALL_LEADS, ONE_LEAD, Compiler, count
from relance.domain.settings import Settings
from relance.services import migrate

CHUNK = 20_000
# a throwaway cluster loaded at once: durability is not what is measured
FAST_LOAD = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
RULES: dict[str, dict] = {
    "opened ≥2 emails in 7 d": {"message": {"action": "opened", "at_least": 2, "within": "7d"}},
    "pricing page in 48 h": {"page": {"url_contains": "/pricing", "within": "48h"}},
    "both (seed 000's two)": {
        "all": [
            {"message": {"action": "opened", "at_least": 2, "within": "7d"}},
            {"page": {"url_contains": "/pricing", "within": "48h"}},
        ]
    },
    "France, hot, 2 webinars in 30 d": {
        "all": [
            {"attribute": {"name": "country", "op": "eq", "value": "FR"}},
            {"segment": "hot"},
            {"event": {"name": "webinar_attended", "at_least": 2, "within": "30d"}},
        ]
    },
    "clicked in 30 d, not pro": {
        "all": [
            {"message": {"action": "clicked", "within": "30d"}},
            {"not": {"attribute": {"name": "plan", "op": "eq", "value": "pro"}}},
        ]
    },
}


def hand_written(dialect: str) -> dict[str, list[str]]:
    """The same counts as a person would write them for this database (where two forms come to
    mind, both: the faster is the baseline)."""
    plan = "json_extract(attributes, '$.plan')" if dialect == "sqlite" else "attributes->>'plan'"
    like = "LIKE" if dialect == "sqlite" else "ILIKE"  # SQLite's LIKE ignores case already
    openers = (
        "SELECT lead_id FROM messages WHERE opened_at >= :week "
        "GROUP BY lead_id HAVING count(*) >= 2"
    )
    pricing = (
        "SELECT DISTINCT lead_id FROM lead_activities WHERE kind = 'page_view' "
        f"AND url {like} '%/pricing%' AND at >= :two_days"
    )
    viewers = pricing.replace("SELECT DISTINCT", "SELECT")
    return {
        "opened ≥2 emails in 7 d": [f"SELECT count(*) FROM ({openers}) o"],
        "pricing page in 48 h": [
            f"SELECT count(*) FROM ({pricing}) p",
            f"SELECT count(*) FROM leads WHERE id IN ({viewers})",
        ],
        "both (seed 000's two)": [
            f"SELECT count(*) FROM ({openers}) o JOIN ({pricing}) p ON p.lead_id = o.lead_id",
            f"SELECT count(*) FROM ({openers}) o WHERE o.lead_id IN ({viewers})",
        ],
        "France, hot, 2 webinars in 30 d": [
            "SELECT count(*) FROM leads WHERE country = 'FR' AND score >= 50 AND id IN ("
            "SELECT lead_id FROM custom_events WHERE name = 'webinar_attended' "
            "AND occurred_at >= :month GROUP BY lead_id HAVING count(*) >= 2)"
        ],
        "clicked in 30 d, not pro": [
            "SELECT count(*) FROM leads WHERE id IN (SELECT lead_id FROM messages "
            f"WHERE clicked_at >= :month) AND ({plan} IS NULL OR {plan} <> 'pro')"
        ],
    }


def populate(engine: Engine, leads: int, events: int, seed: int = 18) -> None:
    rng = random.Random(seed)
    now = utcnow()
    horizon = 60 * 86400
    ids = [f"{n:032x}" for n in range(1, leads + 1)]
    with engine.begin() as s:
        for start in range(0, leads, CHUNK):
            s.execute(
                insert(Lead.__table__),
                [
                    {
                        "id": lead_id,
                        "email": f"lead{lead_id[-8:]}@example.com",
                        "country": "FR" if rng.random() < 0.2 else rng.choice(["DE", "ES", None]),
                        "score": rng.randrange(100),
                        "locale": "fr",
                        "time_zone": "Europe/Paris",
                        "attributes": {"plan": rng.choice(["free", "starter", "pro"])},
                        "created_at": now,
                        "updated_at": now,
                    }
                    for lead_id in ids[start : start + CHUNK]
                ],
            )
        per_kind = {"messages": events * 4 // 10, "pages": events * 4 // 10}
        per_kind["custom"] = events - sum(per_kind.values())
        ago = lambda: now - timedelta(seconds=rng.randrange(horizon))  # noqa: E731
        made = 0
        while made < per_kind["messages"]:
            rows = []
            for _ in range(min(CHUNK, per_kind["messages"] - made)):
                made += 1
                sent = ago()
                opened = sent + timedelta(hours=1) if rng.random() < 0.5 else None
                clicked = opened if opened is not None and rng.random() < 0.2 else None
                rows.append(
                    {
                        "id": f"m{made:031x}",
                        "send_key": f"bench:{made}",
                        "lead_id": rng.choice(ids),
                        "workflow_id": "bench",
                        "journey": "newsletter",
                        "step": "send",
                        "channel": "email",
                        "template": "newsletter",
                        "kind": "marketing",
                        "status": "sent",
                        "created_at": sent,
                        "sent_at": sent,
                        "opened_at": opened,
                        "clicked_at": clicked,
                        "attempts": 1,
                        "attempts_not_delivered": 0,
                    }
                )
            s.execute(insert(Message.__table__), rows)
        for start in range(0, per_kind["pages"], CHUNK):
            s.execute(
                insert(LeadActivity.__table__),
                [
                    {
                        "lead_id": rng.choice(ids),
                        "kind": "page_view",
                        "url": "https://example.com/pricing"
                        if rng.random() < 0.1
                        else f"https://example.com/blog/{rng.randrange(500)}",
                        "at": ago(),
                    }
                    for _ in range(min(CHUNK, per_kind["pages"] - start))
                ],
            )
        for start in range(0, per_kind["custom"], CHUNK):
            s.execute(
                insert(CustomEvent.__table__),
                [
                    {
                        "lead_id": rng.choice(ids),
                        "name": "webinar_attended",
                        "properties": {"webinar": f"w{rng.randrange(20)}"},
                        "occurred_at": ago(),
                        "received_at": now,
                    }
                    for _ in range(min(CHUNK, per_kind["custom"] - start))
                ],
            )
    # fresh statistics for the planner (and PostgreSQL's visibility map), as a live database has
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("ANALYZE" if engine.dialect.name == "sqlite" else "VACUUM ANALYZE"))


def best_of(runs: int, work: Callable[[], int]) -> tuple[float, int]:
    times, result = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return min(times), result


def measure(engine: Engine, settings: Settings, name: str) -> list[Row]:
    dialect = engine.dialect.name
    now = utcnow()
    params = {
        "week": now - timedelta(days=7),
        "two_days": now - timedelta(hours=48),
        "month": now - timedelta(days=30),
    }
    rows: list[Row] = []

    def query(sql: str):
        return text(sql).bindparams(
            *(bindparam(k, type_=DateTime(timezone=True)) for k in params if f":{k}" in sql)
        )

    def used(q) -> dict:
        return {k: v for k, v in params.items() if f":{k}" in str(q)}

    for label, forms in hand_written(dialect).items():
        test = Test.model_validate(RULES[label])
        with Session(engine) as s:
            hand, expected = min(
                best_of(5, lambda q=q: s.execute(q, used(q)).scalar_one())  # noqa: B023
                for q in (query(sql) for sql in forms)
            )
            compiled, got = best_of(
                5,
                lambda: count(s, test, settings, strategy=ALL_LEADS, now=now),  # noqa: B023
            )
            over_leads, got_three = best_of(
                5,
                lambda: s.execute(  # the form before: every count read the leads table
                    select(func.count())
                    .select_from(Lead)
                    .where(Compiler(settings, now=now).where(test))  # noqa: B023
                ).scalar_one(),
            )
            correlated, got_too = best_of(
                1,
                lambda: count(s, test, settings, strategy=ONE_LEAD, now=now),  # noqa: B023
            )
        if not expected == got == got_too == got_three:
            raise AssertionError(
                f"{label}: hand {expected}, compiled {got}, over leads {got_three}, "
                f"correlated {got_too}"
            )
        ratio = compiled / hand
        say(
            f"{dialect} {label}: {got} leads; hand {hand * 1000:.0f} ms, compiled "
            f"{compiled * 1000:.0f} ms ({ratio:.2f}×), over leads {over_leads * 1000:.0f} ms, "
            f"correlated {correlated * 1000:.0f} ms"
        )
        rows.append(
            Row(
                benchmark=f"segments {dialect}: {label}",
                ratio=f"{ratio:.2f}×",
                target=f"≤ 2× hand-written SQL: {'met' if ratio <= 2 else 'NOT met'}",
                details=f"{name}; {got} leads; hand-written {hand * 1000:.0f} ms, compiled "
                f"{compiled * 1000:.0f} ms (GROUP BY over the leads table, the form before: "
                f"{over_leads * 1000:.0f} ms), compiled correlated (EXISTS) "
                f"{correlated * 1000:.0f} ms",
            )
        )
    return rows


def run_standalone(args) -> list[Row]:
    """No Temporal, no API: two databases, filled the same way."""
    leads, events = args.segment_leads, args.segment_events
    name = f"{leads:,} leads, {events:,} history rows"
    settings = Settings(_env_file=None)
    rows: list[Row] = []
    url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='relance-bench-')) / 'segments.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    started = time.perf_counter()
    populate(engine, leads, events)
    say(f"sqlite: {name} written in {time.perf_counter() - started:.0f} s")
    rows += measure(engine, settings, name)
    engine.dispose()
    if not args.segment_sqlite_only:
        with throwaway_postgres(FAST_LOAD) as pg_url:
            engine = make_engine(pg_url)
            started = time.perf_counter()
            populate(engine, leads, events)
            say(f"postgresql: {name} written in {time.perf_counter() - started:.0f} s")
            rows += measure(engine, settings, name)
            engine.dispose()
    return rows

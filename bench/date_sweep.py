"""The hourly sweep's date triggers over many leads: the leads read to decide who is due now, with
the SQL filter on the date attribute (relance/services/triggers.py ``date_candidates``) vs
reading every lead and deciding in Python (what the sweep did before), in the same run, on
SQLite and on PostgreSQL (database only: no Temporal, API nor worker).

The data: ``--sweep-leads`` leads (100,000 by default) with a birthday spread over the year and
time zones on both sides of the date line; the trigger: a birthday every year at 09:00. Each side
is the best of three runs, warm; both must find the same leads due. Target: the filtered read
at most a tenth of the full one.
"""

from __future__ import annotations

import random
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bench.results import Row
from bench.stack import say
from relance.dev.postgres import throwaway_postgres
from relance.domain.db import make_engine
from relance.domain.definitions import DateTrigger
from relance.domain.models import Lead, utcnow
from relance.services import migrate
from relance.services.triggers import date_candidates, occurrence

CHUNK = 20_000
FAST_LOAD = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
ZONES = ("Pacific/Kiritimati", "Asia/Tokyo", "Europe/Paris", "UTC", "America/New_York",
         "Pacific/Pago_Pago")  # fmt: skip
BIRTHDAY = DateTrigger(attribute="birthday", every_year=True, at="09:00")
NOW = datetime(2027, 3, 15, 12, 0, tzinfo=UTC)


def populate(engine: Engine, leads: int, seed: int = 17) -> None:
    rng = random.Random(seed)
    now = utcnow()
    with engine.begin() as s:
        for start in range(0, leads, CHUNK):
            s.execute(
                insert(Lead.__table__),
                [
                    {
                        "id": f"{n:032x}",
                        "email": f"lead{n}@example.com",
                        "locale": "en",
                        "time_zone": rng.choice(ZONES),
                        "score": 0,
                        "attributes": {
                            "birthday": (
                                date(1970, 1, 1) + timedelta(days=rng.randrange(365 * 40))
                            ).isoformat()
                        },
                        "created_at": now,
                        "updated_at": now,
                    }
                    for n in range(start + 1, min(start + CHUNK, leads) + 1)
                ],
            )


def _due(rows) -> tuple[int, set[str]]:
    due = set()
    for lead_id, zone, attributes in rows:
        value = date.fromisoformat(attributes["birthday"])
        if occurrence(BIRTHDAY, value, NOW.astimezone(ZoneInfo(zone))):
            due.add(lead_id)
    return len(rows), due


def every_lead(engine: Engine) -> tuple[int, set[str]]:
    with Session(engine) as session:
        return _due(session.exec(select(Lead.id, Lead.time_zone, Lead.attributes)).all())


def filtered(engine: Engine) -> tuple[int, set[str]]:
    with Session(engine) as session:
        return _due(date_candidates(session, [BIRTHDAY], NOW))


def best_of(runs: int, work) -> tuple[float, tuple[int, set[str]]]:
    times, result = [], (0, set())
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return min(times), result


def measure(engine: Engine, leads: int) -> Row:
    dialect = engine.dialect.name
    full_s, (full_read, full_due) = best_of(3, lambda: every_lead(engine))
    sql_s, (sql_read, sql_due) = best_of(3, lambda: filtered(engine))
    assert sql_due == full_due, "the filtered sweep and the full one disagree"
    ratio = sql_s / full_s
    say(
        f"{dialect}: every lead {full_s * 1000:.0f} ms ({full_read:,} read), filtered "
        f"{sql_s * 1000:.0f} ms ({sql_read:,} read), {len(sql_due)} due"
    )
    return Row(
        benchmark=f"date sweep ({dialect})",
        ratio=f"{ratio:.2f}×",
        target=f"≤ 0.1× {'ok' if ratio <= 0.1 else 'MISSED'}",
        details=(
            f"{leads:,} leads, birthdays every year at 09:00: filtered {sql_s * 1000:.0f} ms "
            f"reading {sql_read:,} leads vs {full_s * 1000:.0f} ms reading {full_read:,}; "
            f"{len(sql_due)} due in both"
        ),
    )


def run_standalone(args) -> list[Row]:
    leads = args.sweep_leads
    url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='relance-bench-')) / 'sweep.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    populate(engine, leads)
    rows = [measure(engine, leads)]
    engine.dispose()
    if not args.segment_sqlite_only:
        with throwaway_postgres(FAST_LOAD) as pg_url:
            engine = make_engine(pg_url)
            populate(engine, leads)
            rows.append(measure(engine, leads))
            engine.dispose()
    return rows

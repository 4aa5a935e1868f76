"""SQLite writers in one process queue on a lock (relance/domain/db.py) instead of polling SQLite's.

What a user cares about: a burst of concurrent sign-ups all land, none waits anywhere near the
30 s busy timeout, and a transaction that ends without a commit (an error, a dropped session)
never leaves the lock taken for the next writer.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, insert, select
from sqlmodel import Session

from relance.domain.db import make_engine
from relance.domain.models import Lead, new_id, utcnow
from relance.services.migrate import upgrade


def lead_row(tag: str) -> dict:
    now = utcnow()
    return {
        "id": new_id(),
        "email": f"{tag}-{new_id()}@example.com",
        "first_name": "W",
        "locale": "en",
        "time_zone": "UTC",
        "score": 0,
        "created_at": now,
        "updated_at": now,
    }


def test_concurrent_writers_all_land_and_an_abandoned_transaction_frees_the_lock(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'writers.db'}"
    upgrade(url)
    engine = make_engine(url)
    waits: list[float] = []
    waits_lock = threading.Lock()

    def one(i: int) -> None:
        started = time.perf_counter()
        with Session(engine) as session:
            session.execute(insert(Lead), [lead_row("kept" if i % 3 else "dropped")])
            time.sleep(0.005)  # hold the write a little, as a real sign-up does
            if i % 3:
                session.commit()
            elif i % 2:
                session.rollback()
            # else: the session closes with the write neither committed nor rolled back
        with waits_lock:
            waits.append(time.perf_counter() - started)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, range(120)))

    with Session(engine) as session:
        kept = session.execute(
            select(func.count()).select_from(Lead).where(Lead.email.like("kept-%"))
        ).scalar_one()
        dropped = session.execute(
            select(func.count()).select_from(Lead).where(Lead.email.like("dropped-%"))
        ).scalar_one()
    assert (kept, dropped) == (80, 0)
    # 120 transactions of ~5 ms, one at a time: a leaked lock would cost a 30 s timeout.
    assert max(waits) < 10, f"a writer waited {max(waits):.1f} s"

    # And the lock is free now: a new write goes through at once.
    started = time.perf_counter()
    with Session(engine) as session:
        session.execute(insert(Lead), [lead_row("after")])
        session.commit()
    assert time.perf_counter() - started < 2

"""Database engine and sessions (SQLModel over SQLAlchemy).

SQLite is the default; the same code runs on PostgreSQL by changing ``RELANCE_DATABASE_URL``.
SQLite is set to WAL mode with a busy timeout so the API and the worker, two processes, can
write the same file. Within one process, writers queue on a lock before SQLite's own: SQLite's
busy handler polls with sleeps of up to 100 ms, so under a burst of sign-ups most of a request's
time went to sleeping after the lock was already free (p99 ~1 s at 10 concurrent sign-ups).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import Session, create_engine


def make_engine(database_url: str) -> Engine:
    if database_url.startswith("sqlite"):
        engine = create_engine(
            database_url, connect_args={"check_same_thread": False, "timeout": 30}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        queue_writers(engine)
        return engine
    return create_engine(database_url, pool_pre_ping=True)


WRITES = ("INSERT", "UPDATE", "DELETE", "REPLAC")


def queue_writers(engine: Engine, timeout: float = 30.0) -> None:
    """One writing transaction at a time in this process: a transaction takes the lock at its
    first write and gives it back at commit or rollback, as SQLite does with its own write lock,
    but a waiting thread wakes as soon as the lock is free. Never worse than SQLite alone: after
    ``timeout`` the transaction goes on and SQLite's busy handling decides, as before."""
    lock = threading.Lock()

    @event.listens_for(engine, "before_cursor_execute")
    def _take(conn, _cursor, statement, _parameters, _context, _executemany) -> None:
        if "relance_write_lock" not in conn.info and statement.lstrip()[:6].upper() in WRITES:
            if lock.acquire(timeout=timeout):
                conn.info["relance_write_lock"] = True

    def _give_back(conn) -> None:
        if conn.info.pop("relance_write_lock", False):
            lock.release()

    event.listen(engine, "commit", _give_back)
    event.listen(engine, "rollback", _give_back)

    @event.listens_for(engine.pool, "checkin")
    def _never_keep(_dbapi_connection, record) -> None:  # a connection dropped without commit or rollback
        if record is not None and record.info.pop("relance_write_lock", False):
            lock.release()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


F = TypeVar("F", bound=Callable[..., Any])
CONFLICT_ATTEMPTS = 3


def retry_on_conflict(work: F) -> F:
    """For a unit of writes that commits, called with ``session=``: when a concurrent request
    inserted the same row first (a unique key: one email, one cart id, one list member), roll
    back and run it again in a fresh transaction. The second run finds that row and takes the
    update path, so a race ends as a single request would (200 instead of 201, "already
    recorded"), never a 500."""

    @functools.wraps(work)
    def retrying(*args: Any, session: Session, **kwargs: Any) -> Any:
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                return work(*args, session=session, **kwargs)
            except (IntegrityError, StaleDataError):
                session.rollback()
                if attempt == CONFLICT_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    return retrying  # type: ignore[return-value]

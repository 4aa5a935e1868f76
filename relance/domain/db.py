"""Database engine and sessions (SQLModel over SQLAlchemy).

SQLite is the default; the same code runs on PostgreSQL by changing ``RELANCE_DATABASE_URL``.
SQLite is set to WAL mode with a busy timeout so the API and the worker, two processes, can
write the same file. Within one process, writers queue on a lock before SQLite's own: SQLite's
busy handler polls with sleeps of up to 100 ms, so under a burst of sign-ups most of a request's
time went to sleeping after the lock was already free (p99 ~1 s at 10 concurrent sign-ups).

Erased means gone from the disk too: SQLite runs with ``secure_delete`` (a deleted or rewritten
row's bytes are overwritten with zeros, not left in the page's free space), and an erasure
checkpoints the write-ahead log into the database file and truncates it (``checkpoint_wal``),
so ``relance.db-wal`` keeps no copy of the pages the lead's rows were on.

A database that does not accept writes (its data folder made read-only, a full disk remounted
read-only, a PostgreSQL standby) raises ``DatabaseNotWritable``, which the API answers with a
503. It recovers by itself: SQLite opens a file it cannot write read-only, silently, and such a
connection stays read-only for its whole life, so a pooled one kept refusing writes after the
folder was writable again; on that error the engine closes every connection it holds, and the
next request opens the file again.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from sqlalchemy import event, false, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import Session, create_engine

from relance.domain.models import Lead


class DatabaseNotWritable(OperationalError):
    """The database refused a write because it is read-only at the moment."""


SQLITE_READONLY = (
    8  # and its extended codes (READONLY_DBMOVED, _CANTLOCK, _DIRECTORY...), in the low byte
)
PG_READ_ONLY_SQL_TRANSACTION = "25006"


def refuses_writes(err: BaseException) -> bool:
    """True for the error a read-only database answers a write with (SQLite or PostgreSQL)."""
    code = getattr(err, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF == SQLITE_READONLY
    return getattr(err, "sqlstate", None) == PG_READ_ONLY_SQL_TRANSACTION


def report_read_only(engine: Engine) -> None:
    """Raise ``DatabaseNotWritable`` for a refused write, and on SQLite drop every connection
    that may have been opened read-only, so that the next one opens the file afresh."""
    refused_at = [0.0]  # time.time() of the latest refusal

    @event.listens_for(engine, "handle_error")
    def _read_only(context):
        if not refuses_writes(context.original_exception):
            return None
        if engine.dialect.name == "sqlite":
            # SQLite opens a file it cannot write read-only, and that connection stays so for
            # life; worse, while any connection of this process still has the file open
            # read-only, a new one is read-only too (one shared state per file in a process).
            # So: this connection is dropped (and closed for real: a statement left open would
            # keep it alive until garbage collection), the idle ones are closed now, and those
            # in use are closed when they come back (below).
            refused_at[0] = time.time()
            cursor = getattr(context.execution_context, "cursor", None)
            if cursor is not None:
                with suppress(Exception):
                    cursor.close()
            context.is_disconnect = True
            engine.dispose()
        return DatabaseNotWritable(
            context.statement, context.parameters, context.original_exception
        )

    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.pool, "checkin")
        def _close_if_opened_before_a_refusal(dbapi_connection, record) -> None:
            if (
                dbapi_connection is not None
                and record is not None
                and record.starttime <= refused_at[0]
            ):
                record.invalidate()


def accepts_writes(session: Session) -> bool:
    """Whether the database takes a write now: an UPDATE that changes no row, rolled back. It
    asks for the write lock as any write does (SQLite opens a write transaction; PostgreSQL
    refuses it in a read-only transaction) and holds it for an instant. Raises for any other
    failure (the database unreachable)."""
    try:
        session.execute(update(Lead).where(false()).values(score=Lead.score))
        return True
    except DatabaseNotWritable:
        return False
    finally:
        session.rollback()


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
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.close()

        queue_writers(engine)
        report_read_only(engine)
        return engine
    engine = create_engine(database_url, pool_pre_ping=True)
    report_read_only(engine)
    return engine


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
        if conn.invalidated:  # given back when its connection was invalidated (below)
            return
        if conn.info.pop("relance_write_lock", False):
            lock.release()

    event.listen(engine, "commit", _give_back)
    event.listen(engine, "rollback", _give_back)

    @event.listens_for(engine.pool, "invalidate")
    def _dropped(
        _dbapi_connection, record, _exception
    ) -> None:  # e.g. found read-only: before its info goes
        if record is not None and record.info.pop("relance_write_lock", False):
            lock.release()

    @event.listens_for(engine.pool, "checkin")
    def _never_keep(
        _dbapi_connection, record
    ) -> None:  # a connection dropped without commit or rollback
        if record is not None and record.info.pop("relance_write_lock", False):
            lock.release()


def checkpoint_wal(engine: Engine) -> bool:
    """Copy the write-ahead log into the database file and truncate it to zero bytes (SQLite;
    nothing to do elsewhere). Waits, within the busy timeout, for readers of older snapshots.
    False when it could not complete (a reader held on): the log is then emptied by a later one."""
    if engine.dialect.name != "sqlite":
        return True
    with engine.connect() as connection:
        busy, _, _ = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
    return not busy


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

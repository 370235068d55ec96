"""Engine and sessions, and the schema migration (Alembic) that `mailflow init` runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"

# Every row lock we take is to change the row, never its key: FOR NO KEY UPDATE on PostgreSQL
# (ignored by SQLite). A plain FOR UPDATE also blocks the FOR KEY SHARE lock that inserting a
# row that references it takes: a transaction holding the audit chain's head, inserting an
# audit event that names a case, deadlocked with one holding that case and waiting for the
# head (found by the chaos test: an email recorded as sent was rolled back and sent again).
ROW_LOCK: dict[str, Any] = {"key_share": True}
SQLITE_BUSY_SECONDS = 30  # how long a writer waits for SQLite's write lock before failing


def make_engine(url: str, echo: bool = False, always_write: bool = False) -> Engine:
    """`always_write`: every transaction takes SQLite's write lock up front, for code that
    reads then writes in one transaction and is not ours to mark (APScheduler's job store)."""
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        if always_write:
            engine.update_execution_options(**{WRITE: True})
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Our own transaction handling: BEGIN IMMEDIATE below, so writers queue instead of failing.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # a committed row (our 250) survives power loss
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
    cur.close()


WRITE = "mailflow_write"


def _sqlite_begin_immediate(conn: Any) -> None:
    # Writers take the lock up front (BEGIN IMMEDIATE) so they queue on the busy timeout
    # instead of failing on a lock upgrade; readers begin deferred and never block writers.
    write = conn.get_execution_options().get(WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


# SQLite has one writer. Between processes, BEGIN IMMEDIATE waits in SQLite's busy handler,
# which sleeps in steps of up to 100 ms and so wakes long after the lock is free; the
# threads of one process (the SMTP door's spooling, the worker's loops, the outbox) queue on
# a mutex instead, handed on the moment the writer before them commits. Re-entrant: a
# transaction opened inside another on the same thread waits in SQLite, as it always did.
# Bounded like SQLite's own wait: past it the transaction goes on to SQLite's busy handler,
# so a writer that holds the mutex for long (a retention run) delays others by no more.
_sqlite_writers: dict[str, threading.RLock] = {}
_sqlite_writers_lock = threading.Lock()


@contextmanager
def _one_writer(factory: sessionmaker[Session]) -> Iterator[None]:
    engine = factory.kw.get("bind")
    if not isinstance(engine, Engine) or engine.dialect.name != "sqlite":
        yield
        return
    with _sqlite_writers_lock:
        mutex = _sqlite_writers.setdefault(str(engine.url.database), threading.RLock())
    held = mutex.acquire(timeout=SQLITE_BUSY_SECONDS)
    try:
        yield
    finally:
        if held:
            mutex.release()


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work that writes: commit on success, roll back on any exception."""
    with _one_writer(factory), factory() as session, session.begin():
        session.connection(execution_options={WRITE: True})
        yield session


@cache
def schema_head() -> str:
    """The newest migration's revision (read once per process: Alembic compiles every
    migration file to find it)."""
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def migrate(engine: Engine) -> None:
    """Bring the database to the newest schema; a database already there is only checked."""
    with engine.connect() as conn:
        if MigrationContext.configure(conn).get_current_revision() == schema_head():
            return
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")

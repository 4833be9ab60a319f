"""Engines for the metadata database: SQLite tuning, write transactions and migrations."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from ensign.errors import ConfigurationError

__all__ = ["HEAD_REVISION", "create_engine", "upgrade", "write_transaction"]

_MIGRATIONS = Path(__file__).with_name("migrations")
#: The schema revision this version of ensign writes.
HEAD_REVISION = "0002"
# Several processes share one SQLite file: wait for the write lock rather than fail.
_SQLITE_BUSY_TIMEOUT_MS = 120_000
#: The attribute of a SQLite engine holding the lock its writing threads queue on.
_WRITE_LOCK = "_ensign_write_lock"


def create_engine(url: str) -> sa.Engine:
    """Return an engine for ``url``, tuned for concurrent writers.

    SQLite gets WAL journaling, a long busy timeout and explicit transactions, so that
    :func:`write_transaction` can take the write lock up front (``BEGIN IMMEDIATE``).

    Raises:
        ConfigurationError: when the database driver is not installed.
    """
    try:
        if url.startswith("sqlite"):
            Path(url.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000})
            _tune_sqlite(engine)
            setattr(engine, _WRITE_LOCK, _WriterQueue())
            return engine
        return sa.create_engine(url, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"the database driver for {url.split(':', 1)[0]!r} is not installed: "
            "pip install 'ensign[postgres]'"
        ) from exc


def _tune_sqlite(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        immediate = connection.get_execution_options().get("ensign_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class _WriterQueue:
    """The lock the writing threads of one process take before SQLite's write lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holder = threading.local()

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        if getattr(self._holder, "held", False):
            # The lock is not reentrant, and neither is SQLite's: this would wait forever.
            raise RuntimeError("a write transaction was opened inside another in one thread")
        with self._lock:
            self._holder.held = True
            try:
                yield
            finally:
                self._holder.held = False


@contextlib.contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """Open a transaction that holds the write lock from its first statement.

    On SQLite this is ``BEGIN IMMEDIATE``, so two writers never deadlock on a lock upgrade;
    on PostgreSQL row locks taken by the statements themselves serialise writers.

    The threads of one process also queue on a lock of the engine before SQLite's: its
    busy handler retries after sleeps of up to 100 ms, so under contention (a server's
    request threads) some writers would wait far longer than the others.
    """
    queue: _WriterQueue | None = getattr(engine, _WRITE_LOCK, None)
    with contextlib.ExitStack() as stack:
        if queue is not None:
            stack.enter_context(queue.turn())
        conn = stack.enter_context(engine.connect()).execution_options(ensign_write=True)
        with conn.begin():
            yield conn


def _alembic_config(conn: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def current_revision(engine: sa.Engine) -> str | None:
    """Return the schema revision of the database, ``None`` when it has none."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine) -> None:
    """Bring the schema to the newest revision; safe when many processes start at once.

    The migration runs inside one write transaction (SQLite: ``BEGIN IMMEDIATE``;
    PostgreSQL: a transaction-scoped advisory lock), so only one process migrates.
    """
    if current_revision(engine) == HEAD_REVISION:
        return
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7305092813)"))
        if MigrationContext.configure(conn).get_current_revision() == HEAD_REVISION:
            return
        command.upgrade(_alembic_config(conn), "head")


def head_of_scripts() -> str | None:
    """Return the head revision of the migration scripts (used by tests)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()

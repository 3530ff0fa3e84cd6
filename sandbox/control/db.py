"""Control-DB engines, sessions and migrations.

* ``make_engine(url)``: SQLite (WAL, busy timeout, foreign keys, SQLAlchemy-managed
  BEGIN) or PostgreSQL through psycopg 3.
* ``session_scope(engine, immediate=False)``: one transaction, committed on success,
  rolled back on error. On SQLite ``immediate=True`` starts it with
  ``BEGIN IMMEDIATE`` (takes the write lock up front): use it for every
  transaction that appends to the audit log or changes the ledger, so two
  writers queue on the busy timeout instead of failing on a stale snapshot.
* ``migrate(url)``: Alembic ``upgrade head`` with the migrations shipped in
  ``sandbox/control/migrations``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from sandbox.errors import ConfigError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
_BEGIN_OPTION = "sandbox_sqlite_begin"


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs given without a driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(engine: Engine | Connection | Session) -> bool:
    bind = engine.get_bind() if isinstance(engine, Session) else engine
    return bind.dialect.name == "sqlite"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create a control-DB engine for ``sqlite:///path`` or ``postgresql+psycopg://...``."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _make_sqlite_engine(url, **kwargs)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _make_sqlite_engine(url: str, **kwargs: Any) -> Engine:
    parsed = make_url(url)
    in_memory = parsed.database in (None, "", ":memory:")
    connect_args: dict[str, Any] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    if in_memory:
        connect_args["check_same_thread"] = False
        kwargs.setdefault("poolclass", StaticPool)
    kwargs["connect_args"] = {**connect_args, **kwargs.get("connect_args", {})}
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy, not the sqlite3 module, emits BEGIN (see the "begin" hook).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def immediate_engine(engine: Engine) -> Engine:
    """An engine view whose transactions start with ``BEGIN IMMEDIATE`` on SQLite.

    On PostgreSQL it is the engine itself (appenders lock the chain head row).
    """
    if engine.dialect.name != "sqlite":
        return engine
    return engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})


@contextmanager
def session_scope(engine: Engine, *, immediate: bool = False) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception.

    ``immediate=True`` takes SQLite's write lock at BEGIN; use it whenever the
    transaction writes the audit log (``sandbox.audit.store.append``).
    """
    bind = immediate_engine(engine) if immediate else engine
    with Session(bind, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# --- migrations -------------------------------------------------------------------------------


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """Alembic configuration pointing at the migrations shipped in this package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    if url is not None:
        cfg.attributes["url"] = normalise_url(url)
    return cfg


def head_revision() -> str:
    """The newest migration id shipped with this code."""
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None before the first migration)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def open_engine(url: str) -> Engine:
    """An engine on an initialised control DB; ``ConfigError`` when it needs ``sandbox init``."""
    parsed = make_url(normalise_url(url))
    database = parsed.database or ""
    in_memory = database in ("", ":memory:")
    if parsed.get_backend_name() == "sqlite" and not in_memory and not Path(database).exists():
        raise ConfigError(f"The control DB {database} does not exist.", hint="Run `sandbox init` first.")
    engine = make_engine(url)
    try:
        revision = current_revision(engine)
    except SQLAlchemyError as err:
        engine.dispose()
        raise ConfigError(
            f"Cannot open the control DB: {type(err).__name__}.", hint="Check SANDBOX_CONTROL_DB_URL."
        ) from err
    if revision != head_revision():
        engine.dispose()
        state = "not initialised" if revision is None else f"at revision {revision}, not {head_revision()}"
        raise ConfigError(f"The control DB is {state}.", hint="Run `sandbox init` first.")
    return engine


def migrate(url: str | Engine, revision: str = "head") -> None:
    """Upgrade the control DB at ``url`` to ``revision`` (default: head). Idempotent."""
    engine = make_engine(url) if isinstance(url, str) else url
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
    finally:
        if isinstance(url, str):
            engine.dispose()


__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "current_revision",
    "head_revision",
    "immediate_engine",
    "is_sqlite",
    "make_engine",
    "migrate",
    "normalise_url",
    "open_engine",
    "session_scope",
]

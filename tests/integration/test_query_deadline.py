"""The warehouse statement deadline (sandbox.catalog.deadline) on DuckDB, SQLite and a real
PostgreSQL, and its setting ``SANDBOX_QUERY_TIMEOUT``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from sandbox.catalog.deadline import statement_deadline
from sandbox.catalog.warehouse import make_engine
from sandbox.config import DEFAULT_QUERY_TIMEOUT, MAX_QUERY_TIMEOUT, Settings
from sandbox.errors import ConfigError

SLOW = {
    "duckdb": "SELECT count(*) FROM range(100000000000) a",
    "sqlite": (
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 10000000000) "
        "SELECT count(*) FROM r"
    ),
    "postgresql": "SELECT pg_sleep(30)",
}


@pytest.fixture(params=["duckdb", "sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_database_url")
    else:
        url = f"{request.param}:///{tmp_path / ('w.' + request.param)}"
    made = make_engine(url)
    request.addfinalizer(made.dispose)
    return made


# Were the deadline broken, these statements would run for hours: fail the run loudly instead.
NO_HANG = pytest.mark.timeout(60, method="thread")


@NO_HANG
def test_a_slow_statement_is_stopped_at_the_deadline(engine: Engine) -> None:
    with engine.connect() as conn:
        started = time.monotonic()
        with pytest.raises(DBAPIError) as info, statement_deadline(conn, 0.5) as deadline:
            conn.exec_driver_sql(SLOW[engine.dialect.name]).all()
        elapsed = time.monotonic() - started
        assert deadline.expired(info.value)
        assert 0.4 <= elapsed < 10, elapsed
    # the pool hands out a working connection afterwards, with no limit left behind
    with engine.connect() as conn, statement_deadline(conn, 5) as deadline:
        assert conn.exec_driver_sql("SELECT 41 + 1").scalar() == 42
        assert not deadline.expired()
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:  # SET LOCAL ended with its transaction
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "0"


def test_a_statement_within_the_deadline_is_untouched(engine: Engine) -> None:
    with engine.connect() as conn:
        with statement_deadline(conn, 0.2) as deadline:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        time.sleep(0.4)  # past the deadline, outside the block: nothing fires
        assert not deadline.expired()
        assert conn.exec_driver_sql("SELECT 2").scalar() == 2


def test_other_errors_are_not_taken_for_timeouts(engine: Engine) -> None:
    with engine.connect() as conn:
        with pytest.raises(DBAPIError) as info, statement_deadline(conn, 5) as deadline:
            conn.exec_driver_sql("SELECT * FROM no_such_table").all()
        assert not deadline.expired(info.value)


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf"), MAX_QUERY_TIMEOUT + 1])
def test_deadline_bounds(seconds: float, tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'w.sqlite'}")
    with (
        engine.connect() as conn,
        pytest.raises(ValueError, match="deadline"),
        statement_deadline(conn, seconds),
    ):
        pass  # pragma: no cover - refused on entry
    engine.dispose()


def test_query_timeout_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SANDBOX_QUERY_TIMEOUT", raising=False)
    assert Settings().query_timeout == DEFAULT_QUERY_TIMEOUT == 300
    monkeypatch.setenv("SANDBOX_QUERY_TIMEOUT", "42.5")
    assert Settings().query_timeout == 42.5
    for bad in ("abc", "0", "-3", "601", "inf", "nan"):
        monkeypatch.setenv("SANDBOX_QUERY_TIMEOUT", bad)
        with pytest.raises(ConfigError) as info:
            Settings()
        assert "SANDBOX_QUERY_TIMEOUT" in info.value.message and "600" in info.value.message
        assert "default of 300 s" in info.value.hint


@NO_HANG
def test_open_rows_past_the_deadline_answer_query_timeout(tmp_path: Path) -> None:
    """The open-data row pages (GET datasets/{id}/rows) run under the same deadline."""
    from sandbox.catalog.warehouse import dataset_table
    from sandbox.control.db import migrate
    from sandbox.errors import QueryTimeout
    from sandbox.gateway import backend
    from sandbox.services.queries import ServiceContext

    settings = Settings(
        data_dir=tmp_path,
        warehouse_url_override=f"sqlite:///{tmp_path / 'w.sqlite'}",
        control_db_url_override=f"sqlite:///{tmp_path / 'c.sqlite'}",
        query_timeout=0.5,
    )
    migrate(settings.control_db_url)
    ctx = ServiceContext.from_settings(settings)
    try:
        # ``venues`` (open tier) as a real but slow view: one row repeated 10^10 times
        columns = [c.name for c in dataset_table(ctx.catalog.dataset("venues"), sa.MetaData()).columns]
        select_list = ", ".join(f"NULL AS {name}" for name in columns)
        with make_engine(settings.warehouse_url).begin() as conn:
            conn.exec_driver_sql(
                f"CREATE VIEW venues AS SELECT {select_list} FROM (WITH RECURSIVE r(i) AS "
                "(SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 10000000000) SELECT i FROM r)"
            )
        account = backend.Account(
            name="alice", role="researcher", status="approved", organisation=None, projects=()
        )
        started = time.monotonic()
        with pytest.raises(QueryTimeout) as info:
            backend.open_rows(ctx, account, "venues", offset=0, limit=10)
        assert time.monotonic() - started < 10
        assert info.value.code == "query_timeout" and "0.5 s" in info.value.message
        assert "venues" in info.value.message and "limit" in info.value.hint
    finally:
        ctx.close()

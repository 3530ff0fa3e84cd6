"""The query window of ``transit_trips`` (policy ``query_window``: ``txn_time``, 31 days) end to end.

A refusal reaches the caller as the one JSON error shape (CLI: exit code 2; gateway: HTTP 400),
is audited as ``query.rejected`` and charges nothing; a query within the window runs and is
charged in rho as before. Real policies, DP engine, ledger and audit chain; the CLI runs on a
SQLite warehouse with a few hand-made trips, the gateway on a small synthetic DuckDB warehouse.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import test_gateway as tg  # sibling test module: build_sandbox, Gateway, _error
import test_ledger_service as svc  # sibling test module: environment helpers
import typer
from sqlalchemy import MetaData, func, select
from typer.testing import CliRunner

from sandbox.access import registry
from sandbox.catalog.warehouse import RANK_COLUMN, dataset_table
from sandbox.catalog.warehouse import make_engine as make_warehouse_engine
from sandbox.cli import query_cmd
from sandbox.control.db import make_engine, migrate, session_scope
from sandbox.control.models import AuditEntry
from sandbox.ledger.models import Release
from sandbox.policy.loader import load_policies

DATASET = "transit_trips"  # restricted, gaussian: rho budgets 0.5 / 1 / 1 / 10
JANUARY = "txn_time >= '2018-01-01' AND txn_time < '2018-02-01'"
OK_SQL = f"SELECT card_type, COUNT(*) AS trips FROM transit_trips WHERE {JANUARY} GROUP BY card_type"
REFUSED = [
    ("SELECT card_type, COUNT(*) FROM transit_trips GROUP BY card_type", "query_time_window_required"),
    ("SELECT COUNT(*) FROM transit_trips WHERE txn_time >= '2018-01-01'", "query_time_window_required"),
    (
        f"SELECT COUNT(*) FROM transit_trips WHERE ({JANUARY}) OR mode = '地铁'",
        "query_time_window_required",
    ),
    (
        "SELECT COUNT(*) FROM transit_trips WHERE txn_time >= '2018-01-01' AND txn_time <= '2018-02-01'",
        "query_time_window_too_long",
    ),
]
FULL_BUDGET = {"user_remaining": "1", "project_remaining": "1", "dataset_remaining": "10"}


def add_trips(url: str, cards: int = 30) -> None:
    """A ``transit_trips`` table with a few trips per card around January 2018."""
    dataset = load_policies(svc.REPO / "policies").dataset(DATASET)
    metadata = MetaData()
    table = dataset_table(dataset, metadata)
    start = datetime(2017, 12, 20, 8, 0)
    rows: list[dict[str, Any]] = []
    for i in range(cards):
        for j in range(5):
            rows.append(
                {
                    "card_pseudo": f"card{i:04d}",
                    "card_type": ["普通卡", "学生卡", "敬老卡"][i % 3],
                    "txn_time": start + timedelta(days=9 * j + i % 7, minutes=i),
                    "mode": "地铁",
                    "entry_station_id": "S001",
                    "exit_station_id": "S002",
                    "fare_yuan": 3.0,
                    "transfer_flag": False,
                    RANK_COLUMN: j + 1,
                }
            )
    engine = make_warehouse_engine(url)
    with engine.begin() as conn:
        metadata.create_all(conn)
        conn.execute(table.insert(), rows)
    engine.dispose()


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[typer.Typer, str]]:
    control_url = f"sqlite:///{tmp_path / 'control.sqlite'}"
    migrate(control_url)
    engine = make_engine(control_url)
    svc.seed_people(engine)
    with session_scope(engine, immediate=True) as s:
        registry.grant_dataset(s, "fin-lab", DATASET, actor=None)
    engine.dispose()
    warehouse = svc.make_warehouse(tmp_path / "warehouse.sqlite")
    add_trips(warehouse)
    monkeypatch.setenv("SANDBOX_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SANDBOX_POLICY_DIR", str(svc.REPO / "policies"))
    monkeypatch.setenv("SANDBOX_CONTROL_DB_URL", control_url)
    monkeypatch.setenv("SANDBOX_WAREHOUSE_URL", warehouse)
    svc.install_spies(monkeypatch)
    app = typer.Typer()
    query_cmd.register(app)
    yield app, control_url


def _run(app: typer.Typer, *args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _budget(app: typer.Typer) -> dict[str, str]:
    result = _run(app, "budget", "--as", "alice", "--project", "fin-lab", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["datasets"][DATASET]  # type: ignore[no-any-return]


def _audit(control_url: str) -> list[tuple[str, dict[str, Any]]]:
    engine = make_engine(control_url)
    try:
        with session_scope(engine) as s:
            return [
                (e.kind, json.loads(e.data)) for e in s.scalars(select(AuditEntry).order_by(AuditEntry.seq))
            ]
    finally:
        engine.dispose()


@pytest.mark.parametrize(("sql", "code"), REFUSED, ids=[f"{c}:{i}" for i, (_, c) in enumerate(REFUSED)])
def test_cli_refusal_is_the_error_shape_exit_2_and_charges_nothing(
    cli: tuple[typer.Typer, str], sql: str, code: str
) -> None:
    app, control_url = cli
    assert _budget(app) == FULL_BUDGET
    result = _run(app, "query", "--as", "alice", "--project", "fin-lab", "--epsilon", "0.1", "--json", sql)
    assert result.exit_code == 2, result.output
    body = json.loads(result.stdout)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "hint"}
    assert body["error"]["code"] == code
    assert "WHERE" in body["error"]["message"] and "txn_time" in body["error"]["message"]
    assert "WHERE txn_time >= '" in body["error"]["hint"]  # an example of a valid filter
    # refused before compiling: nothing reserved, nothing run, nothing charged
    assert svc.CALLS == {"compile": 0, "execute": 0}
    assert _budget(app) == FULL_BUDGET
    events = _audit(control_url)
    assert ("query.rejected", code) in [(kind, data.get("code")) for kind, data in events]
    assert "budget.reserved" not in [kind for kind, _ in events]
    engine = make_engine(control_url)
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Release)) == 0
    engine.dispose()


def test_cli_readable_refusal_goes_to_stderr(cli: tuple[typer.Typer, str]) -> None:
    app, _ = cli
    result = _run(app, "query", "--as", "alice", "--project", "fin-lab", REFUSED[0][0])
    assert result.exit_code == 2
    assert "error [query_time_window_required]" in result.stderr


def test_cli_query_within_the_window_is_released_and_charged_in_rho(cli: tuple[typer.Typer, str]) -> None:
    app, _ = cli
    result = _run(
        app, "query", "--as", "alice", "--project", "fin-lab", "--epsilon", "0.25", "--json", OK_SQL
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["dataset"] == DATASET and body["epsilon_spent"] == "0.25"
    assert sorted(r[0] for r in body["rows"]) == sorted(["普通卡", "学生卡", "敬老卡"])
    assert body["budget"] == {
        "user_remaining": "0.75",
        "project_remaining": "0.75",
        "dataset_remaining": "9.75",
    }
    assert svc.CALLS == {"compile": 1, "execute": 1}


# --------------------------------------------------------------------------- gateway


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tg.SandboxEnv]:
    sandbox = tg.build_sandbox(tmp_path_factory.mktemp("window"), datasets=("transit_stations", DATASET))
    yield sandbox
    sandbox.ctx.close()


@pytest.fixture(scope="module")
def gw(env: tg.SandboxEnv) -> tg.Gateway:
    return tg.Gateway(env.app())


def _frank_budget(gw: tg.Gateway, env: tg.SandboxEnv) -> dict[str, Any]:
    body = gw.request("GET", "budget?project=mobility-lab", env.headers("frank")).json()
    return next(b for b in body["budgets"] if b["dataset"] == DATASET)


@pytest.mark.parametrize(("sql", "code"), REFUSED, ids=[f"{c}:{i}" for i, (_, c) in enumerate(REFUSED)])
def test_gateway_refuses_with_400_and_charges_nothing(
    gw: tg.Gateway, env: tg.SandboxEnv, sql: str, code: str
) -> None:
    before = _frank_budget(gw, env)
    for path in ("query", "preview"):
        response = gw.request(
            "POST", path, env.headers("frank"), json={"sql": sql, "epsilon": "0.1", "project": "mobility-lab"}
        )
        err = tg._error(response, 400, code)
        assert "WHERE" in err["message"] and err["hint"]
    assert _frank_budget(gw, env) == before


def test_gateway_releases_a_query_within_the_window(gw: tg.Gateway, env: tg.SandboxEnv) -> None:
    before = _frank_budget(gw, env)
    sql = (
        "SELECT card_type, mode, COUNT(*) AS trips FROM transit_trips "
        "WHERE txn_time BETWEEN '2018-03-01 00:00:00' AND '2018-03-31 23:59:59' GROUP BY card_type, mode"
    )
    response = gw.request(
        "POST", "query", env.headers("frank"), json={"sql": sql, "epsilon": "0.1", "project": "mobility-lab"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dataset"] == DATASET and Decimal(body["epsilon_spent"]) == Decimal("0.1")
    assert body["columns"] == ["card_type", "mode", "trips"] and len(body["rows"]) == 9
    after = _frank_budget(gw, env)
    assert Decimal(after["project_remaining"]) == Decimal(before["project_remaining"]) - Decimal("0.1")


def test_describe_shows_the_window(gw: tg.Gateway, env: tg.SandboxEnv) -> None:
    trips = gw.request("GET", f"datasets/{DATASET}", env.headers("frank")).json()
    assert trips["query_window"] == {"column": "txn_time", "max_days": 31}
    stations = gw.request("GET", "datasets/transit_stations", env.headers("frank")).json()
    assert stations["query_window"] is None

"""``sandbox query`` and ``sandbox budget``: JSON shapes, readable output, exit code 2 on errors.

Real DP engine and warehouse, as in test_ledger_service.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_ledger_service as svc  # sibling test module: environment helpers
import typer
from typer.testing import CliRunner

from sandbox.cli import query_cmd
from sandbox.control.db import make_engine, migrate

RELEASE_KEYS = {"release_id", "dataset", "epsilon_spent", "columns", "rows", "ci95", "budget"}
BUDGET_KEYS = {"user_remaining", "project_remaining", "dataset_remaining"}


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    control_url = f"sqlite:///{tmp_path / 'control.sqlite'}"
    migrate(control_url)
    engine = make_engine(control_url)
    svc.seed_people(engine)
    engine.dispose()
    monkeypatch.setenv("SANDBOX_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SANDBOX_POLICY_DIR", str(svc.REPO / "policies"))
    monkeypatch.setenv("SANDBOX_CONTROL_DB_URL", control_url)
    monkeypatch.setenv("SANDBOX_WAREHOUSE_URL", svc.make_warehouse(tmp_path / "warehouse.sqlite"))
    svc.install_spies(monkeypatch)
    app = typer.Typer()
    query_cmd.register(app)
    yield app


def _run(app: typer.Typer, *args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_query_json_shape(cli: typer.Typer) -> None:
    result = _run(
        cli, "query", "--as", "alice", "--project", "fin-lab", "--epsilon", "0.5", "--json", svc.SQL
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert set(body) == RELEASE_KEYS
    assert body["dataset"] == svc.DATASET
    assert body["epsilon_spent"] == "0.5"
    assert body["columns"] == ["credit_grade", "count"]
    assert sorted(r[0] for r in body["rows"]) == sorted(svc.GRADES)
    assert all(ci[0] is None and ci[1] > 0 for ci in body["ci95"])
    assert body["budget"] == {
        "user_remaining": "2.5",
        "project_remaining": "2.5",
        "dataset_remaining": "29.5",
    }


def test_repeated_query_costs_zero_in_json(cli: typer.Typer) -> None:
    args = ["query", "--as", "alice", "--project", "fin-lab", "--epsilon", "0.5", "--json", svc.SQL]
    first = json.loads(_run(cli, *args).stdout)
    second = json.loads(_run(cli, *args).stdout)
    assert second["release_id"] == first["release_id"]
    assert second["epsilon_spent"] == "0"
    assert second["budget"] == first["budget"]


def test_budget_json_shape(cli: typer.Typer) -> None:
    _run(cli, "query", "--as", "bob", "--project", "fin-lab", "--epsilon", "0.25", svc.SQL)
    result = _run(cli, "budget", "--as", "alice", "--project", "fin-lab", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert set(body) == {"datasets"}
    assert body["datasets"] == {
        svc.DATASET: {"user_remaining": "3", "project_remaining": "2.75", "dataset_remaining": "29.75"}
    }
    assert set(body["datasets"][svc.DATASET]) == BUDGET_KEYS


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (
            ["query", "--as", "carol", "--project", "fin-lab", "--epsilon", "0.1", svc.SQL],
            "not_project_member",
        ),
        (["query", "--as", "carol", "--project", "no-grant-lab", "--epsilon", "0.1", svc.SQL], "no_grant"),
        (["query", "--as", "alice", "--project", "fin-lab", "--epsilon", "2", svc.SQL], "epsilon_too_large"),
        (["query", "--as", "alice", "--project", "fin-lab", "--epsilon", "abc", svc.SQL], "invalid_query"),
        (["query", "--as", "nobody", "--project", "fin-lab", svc.SQL], "authentication_failed"),
        (["budget", "--as", "carol", "--project", "fin-lab"], "not_project_member"),
    ],
)
def test_errors_print_the_error_shape_and_exit_2(cli: typer.Typer, args: list[str], code: str) -> None:
    result = _run(cli, *args, "--json")
    assert result.exit_code == 2, result.output
    body = json.loads(result.stdout)
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"] and "hint" in body["error"]


def test_budget_exceeded_exits_2(cli: typer.Typer) -> None:
    for i in range(3):
        _run(
            cli,
            "query",
            "--as",
            "alice",
            "--project",
            "fin-lab",
            "--epsilon",
            "1",
            svc.distinct_sql(i),
        )
    result = _run(cli, "query", "--as", "bob", "--project", "fin-lab", "--epsilon", "0.1", "--json", svc.SQL)
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["code"] == "budget_exceeded"


def test_readable_output(cli: typer.Typer) -> None:
    result = _run(cli, "query", "--as", "alice", "--project", "fin-lab", "--epsilon", "0.5", svc.SQL)
    assert result.exit_code == 0, result.output
    assert "epsilon spent: 0.5" in result.stdout
    assert "±" in result.stdout and "credit_grade" in result.stdout
    assert "remaining: you 2.5, project 2.5, dataset 29.5" in result.stdout
    table = _run(cli, "budget", "--as", "alice", "--project", "fin-lab")
    assert table.exit_code == 0
    assert svc.DATASET in table.stdout and "2.5 / 3" in table.stdout
    error = _run(cli, "query", "--as", "carol", "--project", "fin-lab", svc.SQL)
    assert error.exit_code == 2
    assert "error [not_project_member]" in error.stderr


def test_main_app_registers_query_and_budget() -> None:
    from sandbox.cli.main import app

    names = {command.name for command in app.registered_commands}
    assert {"query", "budget"} <= names

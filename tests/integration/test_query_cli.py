"""``sandbox query`` and ``sandbox budget``: JSON shapes, readable output, exit code 2 on errors.

Real DP engine and warehouse, as in test_ledger_service.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import test_ledger_service as svc  # sibling test module: environment helpers
import typer
from sqlalchemy import select
from typer.testing import CliRunner

from sandbox.access import registry
from sandbox.audit import store as audit_store
from sandbox.cli import query_cmd
from sandbox.control.db import make_engine, migrate, session_scope
from sandbox.control.models import AuditEntry
from sandbox.ledger import store as ledger
from sandbox.ledger.models import Release
from sandbox.policy.loader import load_policies

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

    commands = {command.name for command in app.registered_commands}
    groups = {group.name for group in app.registered_groups}  # budget: status, and `budget sweep`
    assert "query" in commands and "budget" in groups


# --------------------------------------------------------------------------- budget sweep

SWEPT_KEYS = {"id", "request_id", "user", "project", "dataset", "charge", "reserved_at"}


def _reserve_as(user: str, charge: str, *, minutes_ago: float) -> str:
    """A reservation by ``user`` in fin-lab whose process died ``minutes_ago``; its release id."""
    engine = make_engine(os.environ["SANDBOX_CONTROL_DB_URL"])
    try:
        with session_scope(engine) as s:
            account = registry.find_user(s, user)
            project = registry.find_project(s, "fin-lab")
            assert account is not None and project is not None
            party = ledger.Party(account.id, account.username, project.id, project.name)
        res = ledger.reserve(
            engine,
            party,
            dataset=svc.DATASET,
            budgets=load_policies(svc.REPO / "policies").budgets(svc.DATASET),
            fingerprint=f"{user}-{charge}-{minutes_ago}",
            epsilon=Decimal(charge),
            charge=Decimal(charge),
        )
        with session_scope(engine, immediate=True) as s:
            row = s.get(Release, res.release_id)
            assert row is not None
            row.created_at = row.created_at - timedelta(minutes=minutes_ago)
        return res.release_id
    finally:
        engine.dispose()


def _release_statuses() -> dict[str, str]:
    engine = make_engine(os.environ["SANDBOX_CONTROL_DB_URL"])
    try:
        with session_scope(engine) as s:
            return dict(s.execute(select(Release.id, Release.status)).all())
    finally:
        engine.dispose()


def test_budget_sweep_json_dry_run_then_sweep(cli: typer.Typer) -> None:
    old = _reserve_as("alice", "0.5", minutes_ago=40)
    fresh = _reserve_as("bob", "0.25", minutes_ago=1)
    budget_before = json.loads(_run(cli, "budget", "--as", "alice", "--project", "fin-lab", "--json").stdout)

    preview = _run(cli, "budget", "sweep", "--dry-run", "--json")
    assert preview.exit_code == 0, preview.output
    body = json.loads(preview.stdout)
    assert body["dry_run"] is True and body["older_than_minutes"] == 15
    assert [item["id"] for item in body["abandoned"]] == [old]
    item = body["abandoned"][0]
    assert set(item) == SWEPT_KEYS
    assert (item["user"], item["project"], item["dataset"], item["charge"]) == (
        "alice",
        "fin-lab",
        svc.DATASET,
        "0.5",
    )
    assert _release_statuses() == {old: "reserved", fresh: "reserved"}

    swept = _run(cli, "budget", "sweep", "--json", "--actor", "ops")
    assert swept.exit_code == 0, swept.output
    assert json.loads(swept.stdout)["abandoned"] == body["abandoned"]
    assert _release_statuses() == {old: "abandoned", fresh: "reserved"}
    # the charge is kept: the budget JSON is unchanged, in value and in shape
    budget_after = json.loads(_run(cli, "budget", "--as", "alice", "--project", "fin-lab", "--json").stdout)
    assert budget_after == budget_before
    assert set(budget_after) == {"datasets"} and set(budget_after["datasets"][svc.DATASET]) == BUDGET_KEYS
    engine = make_engine(os.environ["SANDBOX_CONTROL_DB_URL"])
    try:
        with session_scope(engine) as s:
            entry = s.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
            assert entry is not None and entry.kind == "budget.abandoned" and entry.actor == "ops"
            assert entry.payload()["release_id"] == old
            assert audit_store.verify(s).ok
            assert ledger.verify(s) == []
    finally:
        engine.dispose()

    again = json.loads(_run(cli, "budget", "sweep", "--json").stdout)
    assert again["abandoned"] == []
    # a cut-off of zero takes every reservation in flight, even one a second old
    everything = json.loads(_run(cli, "budget", "sweep", "--older-than", "0", "--dry-run", "--json").stdout)
    assert [i["id"] for i in everything["abandoned"]] == [fresh]


def test_budget_sweep_and_in_flight_readable(cli: typer.Typer) -> None:
    nothing = _run(cli, "budget", "sweep")
    assert (
        nothing.exit_code == 0
        and "No reservation has been in flight for more than 15 minutes" in nothing.stdout
    )
    old = _reserve_as("alice", "0.5", minutes_ago=40)
    table = _run(cli, "budget", "--as", "bob", "--project", "fin-lab")
    assert table.exit_code == 0
    assert f"in flight (charged, no result yet): {svc.DATASET} 1" in table.stdout
    preview = _run(cli, "budget", "sweep", "--older-than", "30", "--dry-run")
    assert preview.exit_code == 0
    assert "dry run" in preview.stdout and "alice" in preview.stdout and "0.5" in preview.stdout
    assert _release_statuses() == {old: "reserved"}
    done = _run(cli, "budget", "sweep", "--older-than", "30")
    assert done.exit_code == 0 and "marked abandoned" in done.stdout and "charges are kept" in done.stdout
    assert _release_statuses() == {old: "abandoned"}
    assert "in flight" not in _run(cli, "budget", "--as", "bob", "--project", "fin-lab").stdout


def test_sweep_default_is_the_ledgers_cut_off() -> None:
    assert timedelta(minutes=query_cmd.DEFAULT_SWEEP_MINUTES) == ledger.ABANDON_AFTER


def test_budget_without_user_or_project_is_a_usage_error(cli: typer.Typer) -> None:
    result = _run(cli, "budget", "--project", "fin-lab")
    assert result.exit_code == 2 and "--as" in result.output
    result = _run(cli, "budget", "sweep", "--older-than", "-5")
    assert result.exit_code == 2

"""``sandbox export submit|show|review|download``: JSON shapes, files written, exit code 2 on errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_export_service as svc  # sibling test module: seeding helpers
import typer
from typer.testing import CliRunner

from sandbox.cli import export_cmd
from sandbox.config import Settings
from sandbox.control.db import migrate
from sandbox.export.service import ExportContext

KEYS = {"id", "status", "checks", "sha256"}


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    url = f"sqlite:///{tmp_path / 'control.sqlite'}"
    migrate(url)
    ctx = ExportContext.from_settings(
        Settings(data_dir=tmp_path, policy_dir=svc.REPO / "policies", control_db_url_override=url)
    )
    svc.seed(ctx)
    ctx.close()
    monkeypatch.setenv("SANDBOX_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SANDBOX_POLICY_DIR", str(svc.REPO / "policies"))
    monkeypatch.setenv("SANDBOX_CONTROL_DB_URL", url)
    app = typer.Typer()
    export_cmd.register(app)
    yield app


def run(app: typer.Typer, *args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def submit(app: typer.Typer, tmp_path: Path, content: bytes, name: str = "t.csv") -> Any:
    f = tmp_path / name
    f.write_bytes(content)
    return run(
        app,
        "export",
        "submit",
        "--as",
        "alice",
        "--project",
        "fin-lab",
        "--purpose",
        "paper",
        "--dataset",
        "enterprise_tax",
        "--json",
        str(f),
    )


def test_submit_review_download_round_trip(cli: typer.Typer, tmp_path: Path) -> None:
    result = submit(cli, tmp_path, svc.GOOD_CSV)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert set(body) == KEYS and body["status"] == "under_review"
    assert all(set(c) == {"name", "verdict", "reason"} for c in body["checks"])
    export_id = str(body["id"])

    shown = run(cli, "export", "show", export_id, "--as", "audrey", "--json")
    assert shown.exit_code == 0 and set(json.loads(shown.stdout)) >= KEYS

    reviewed = run(
        cli, "export", "review", export_id, "--as", "tess", "--approve", "--reason", "ok", "--json"
    )
    assert reviewed.exit_code == 0, reviewed.output
    assert json.loads(reviewed.stdout)["status"] == "approved"

    out = tmp_path / "out" / "table.csv"
    got = run(cli, "export", "download", export_id, "--as", "bob", "-o", str(out))
    assert got.exit_code == 0, got.output
    assert out.read_bytes() == svc.GOOD_CSV
    manifest = json.loads((tmp_path / "out" / "table.csv.manifest.json").read_text(encoding="utf-8"))
    assert manifest["file"]["sha256"] == body["sha256"]
    assert "cite: 数据来源" in got.stdout


def test_human_output_lists_checks(cli: typer.Typer, tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_bytes(svc.GOOD_CSV)
    result = run(cli, "export", "submit", "--as", "alice", "--project", "fin-lab", "--purpose", "p", str(f))
    assert result.exit_code == 0, result.output
    assert "[PASS] identifiers" in result.stdout


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (
            ("export", "review", "1", "--as", "tess", "--approve", "--reject", "--reason", "x", "--json"),
            "export_invalid",
        ),
        (("export", "show", "99", "--as", "alice", "--json"), "not_found"),
        (("export", "download", "1", "--as", "alice", "-o", "x.csv", "--json"), "invalid_transition"),
        (
            ("export", "review", "1", "--as", "alice", "--approve", "--reason", "mine", "--json"),
            "invalid_transition",
        ),
    ],
)
def test_errors_print_the_error_shape_and_exit_2(
    cli: typer.Typer, tmp_path: Path, args: tuple[str, ...], code: str
) -> None:
    assert submit(cli, tmp_path, svc.GOOD_CSV).exit_code == 0
    result = run(cli, *args)
    assert result.exit_code == 2, result.output
    body = json.loads(result.stdout)
    assert set(body["error"]) >= {"code", "message", "hint"} and body["error"]["code"] == code


def test_rejected_file_type_exits_2_with_hint(cli: typer.Typer, tmp_path: Path) -> None:
    result = submit(cli, tmp_path, b"\x00\x01", name="data.parquet")
    assert result.exit_code == 2
    err = json.loads(result.stdout)["error"]
    assert err["code"] == "export_invalid" and "CSV" in err["hint"]


def test_missing_file_exits_2(cli: typer.Typer, tmp_path: Path) -> None:
    result = run(
        cli,
        "export",
        "submit",
        "--as",
        "alice",
        "--project",
        "fin-lab",
        "--purpose",
        "p",
        "--json",
        str(tmp_path / "nope.csv"),
    )
    assert result.exit_code == 2 and json.loads(result.stdout)["error"]["code"] == "export_invalid"

"""`sandbox policy check|schema` and `sandbox catalog` through the Typer app."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sandbox.cli import policy_cmd
from sandbox.config import REPO_ROOT
from sandbox.policy.schema import schema_text

POLICY_DIR = REPO_ROOT / "policies"


@pytest.fixture
def app() -> typer.Typer:
    """Only this area's commands, so the test does not depend on other areas' modules."""
    app = typer.Typer(add_completion=False)

    @app.callback()
    def _root() -> None:
        """sandbox"""

    policy_cmd.register(app)
    return app


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    copy = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, copy)
    return copy


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_check_ok_on_committed_policies(app: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(app, ["policy", "check", str(POLICY_DIR)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "ok: 15 datasets, 15 departments"


def test_check_defaults_to_sandbox_policy_dir(
    app: typer.Typer, runner: CliRunner, policies: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (policies / "hotel_stays.yaml").unlink()
    monkeypatch.setenv("SANDBOX_POLICY_DIR", str(policies))
    result = runner.invoke(app, ["policy", "check"])
    assert result.exit_code == 0, result.output
    assert "ok: 14 datasets" in result.stdout


def test_check_reports_three_faults_in_one_run(app: typer.Typer, runner: CliRunner, policies: Path) -> None:
    """Acceptance: unknown key, inverted bounds and a privacy unit that is not a column."""
    path = policies / "enterprise_tax.yaml"
    _replace(path, "privacy_unit: uscc\n", "privacy_unit: taxpayer\nowner: tax_bureau\n")
    _replace(path, "bounds: {lower: 0, upper: 50000}", "bounds: {lower: 50000, upper: 0}")

    result = runner.invoke(app, ["policy", "check", str(policies)])

    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 3, lines
    assert any(line.startswith("enterprise_tax.yaml: owner: unknown key") for line in lines)
    assert any(
        line.startswith("enterprise_tax.yaml: columns.3.bounds: lower (50000) must be below")
        for line in lines
    )
    assert any(
        line.startswith("enterprise_tax.yaml: privacy_unit: 'taxpayer' is not a column") for line in lines
    )
    assert "3 problem(s)" in result.stderr


def test_check_reports_problems_across_files(app: typer.Typer, runner: CliRunner, policies: Path) -> None:
    _replace(policies / "penalties.yaml", "provider: [", "provider: [supreme_court, ")
    _replace(
        policies / "transit_trips.yaml", "references: transit_stations.station_id", "references: stations.id"
    )
    (policies / "venues.yaml").write_text("id: venues\ncolumns: [\n", encoding="utf-8")

    result = runner.invoke(app, ["policy", "check", str(policies)])

    assert result.exit_code == 1
    out = result.stdout
    assert "penalties.yaml: provider.0: unknown department 'supreme_court'" in out
    assert "transit_trips.yaml: columns.4.references: unknown dataset 'stations'" in out
    assert "venues.yaml: YAML syntax error" in out
    assert "(line 3)" in out


def test_check_of_a_missing_directory_fails(app: typer.Typer, runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["policy", "check", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert "policy directory not found" in result.stdout


def test_schema_writes_then_reports_unchanged_and_checks(
    app: typer.Typer, runner: CliRunner, tmp_path: Path
) -> None:
    target = tmp_path / "schema.json"
    assert runner.invoke(app, ["policy", "schema", "--check", "-o", str(target)]).exit_code == 1
    result = runner.invoke(app, ["policy", "schema", "-o", str(target)])
    assert result.exit_code == 0 and "wrote" in result.stdout
    assert target.read_text(encoding="utf-8") == schema_text()
    assert "unchanged" in runner.invoke(app, ["policy", "schema", "-o", str(target)]).stdout
    assert runner.invoke(app, ["policy", "schema", "--check", "-o", str(target)]).exit_code == 0


def test_schema_default_target_is_the_policy_dir(
    app: typer.Typer, runner: CliRunner, policies: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_POLICY_DIR", str(policies))
    result = runner.invoke(app, ["policy", "schema", "--check"])
    assert result.exit_code == 0, result.output


def test_catalog_json_lists_the_opening_list(app: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(app, ["catalog", "--policies", str(POLICY_DIR)])
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row for row in json.loads(result.stdout)}
    assert len(rows) == 15
    tax = rows["enterprise_tax"]
    assert tax["name_zh"] == "企业纳税信用与纳税情况"
    assert tax["provider"] == ["tax_bureau"]
    assert (tax["tier"], tax["source_tier"], tax["focus_area"]) == ("conditional", "T2", "inclusive_finance")
    assert (tax["privacy_unit"], tax["max_rows_per_unit"]) == ("uscc", 3)
    assert tax["per_project"] == "3.0"
    assert tax["conditions"]
    assert rows["venues"]["per_project"] is None  # open: no DP budget
    assert rows["transit_trips"]["mechanism"] == "gaussian"


def test_catalog_csv_is_utf8_with_one_row_per_dataset(
    app: typer.Typer, runner: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "opening_list.csv"
    result = runner.invoke(app, ["catalog", "--format", "csv", "--policies", str(POLICY_DIR), "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(rows) == 15
    by_id = {r["id"]: r for r in rows}
    assert by_id["social_insurance"]["provider"] == "hr_social_security;housing_fund"
    assert by_id["hotel_stays"]["tier_zh"].startswith("非开放")
    assert by_id["road_accidents"]["update_frequency"] == "monthly"
    assert by_id["venues"]["privacy_unit"] == ""


def test_catalog_on_invalid_policies_prints_the_error_shape(
    app: typer.Typer, runner: CliRunner, policies: Path
) -> None:
    _replace(policies / "venues.yaml", "tier: open", "tier: closed")
    result = runner.invoke(app, ["catalog", "--json", "--policies", str(policies)])
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "policy_invalid"
    assert any(p.startswith("venues.yaml: tier:") for p in error["details"]["problems"])


def test_real_entry_point_reports_the_three_faults(policies: Path) -> None:
    """The installed `sandbox` command (main.py registers this module) exits 1 naming all three."""
    path = policies / "enterprise_tax.yaml"
    _replace(path, "privacy_unit: uscc\n", "privacy_unit: taxpayer\nowner: tax_bureau\n")
    _replace(path, "bounds: {lower: 0, upper: 50000}", "bounds: {lower: 50000, upper: 0}")
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox.cli.main", "policy", "check", str(policies)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    paths = sorted(line.split(": ")[1] for line in proc.stdout.splitlines())
    assert paths == ["columns.3.bounds", "owner", "privacy_unit"], proc.stdout

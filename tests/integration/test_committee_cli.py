"""``sandbox committee queues|list|show|raise|opinion|withdraw`` (SR-37) through Typer's CliRunner.

On the sandbox of ``test_governance_world`` (demo experts kai, lin, mei), configured by the
``SANDBOX_*`` environment like a terminal. JSON shapes are pinned; errors print the one JSON
shape and exit 2.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from test_governance_world import APPLICATION, World, build_world
from typer.testing import CliRunner

from sandbox.access import registry
from sandbox.cli.main import app
from sandbox.control.db import session_scope

ITEM_KEYS = {
    "id",
    "kind",
    "status",
    "title",
    "description",
    "dataset",
    "application_id",
    "departments",
    "raised_by",
    "raised_at",
    "automatic",
    "withdrawn_by",
    "withdrawn_at",
    "withdrawn_reason",
    "opinion",
    "application",
    "history",
}
OPINION_KEYS = {"opinion", "conditions", "reason", "decided_on", "members", "recorded_by", "recorded_at"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("committee-cli"))
    with session_scope(w.ctx.control_engine, immediate=True) as s:
        registry.create_user(s, "pia", "steward", department="pilot_bank", actor="admin")
    yield w
    w.ctx.close()


@pytest.fixture
def sandbox(world: World, monkeypatch: pytest.MonkeyPatch) -> Any:
    settings = world.settings
    monkeypatch.setenv("SANDBOX_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SANDBOX_POLICY_DIR", str(settings.policy_dir))
    monkeypatch.setenv("SANDBOX_WAREHOUSE_URL", settings.warehouse_url)
    monkeypatch.setenv("SANDBOX_CONTROL_DB_URL", settings.control_db_url)
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Any:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output
        if "--json" in args:
            return json.loads(result.stdout)
        return result.output

    return run


def error(output: Any, code: str) -> dict[str, str]:
    assert set(output) == {"error"} and set(output["error"]) == {"code", "message", "hint"}, output
    assert output["error"]["code"] == code, output
    return output["error"]


def test_a_high_risk_application_from_referral_to_approval(sandbox: Any) -> None:
    submitted = sandbox(
        "application", "submit", "--as", "alice", "--project", "fin-lab", "--datasets", "sme_loans",
        "--scenario", APPLICATION["scenario"], "--purpose", APPLICATION["purpose"], "--days", "30",
        "--measures", APPLICATION["security_measures"], "--undertaking", "--json",
    )  # fmt: skip
    app_id = submitted["id"]
    queues = {q["kind"]: q for q in sandbox("committee", "queues", "--as", "kai", "--json")}
    assert set(queues["high_risk_application"]) == {
        "kind",
        "title_zh",
        "title_en",
        "open",
        "opinion_recorded",
        "withdrawn",
    }
    assert queues["high_risk_application"]["open"] == 1
    listed = sandbox("committee", "list", "--as", "kai", "--kind", "high_risk_application", "--json")
    (item,) = [i for i in listed if i["application_id"] == app_id]
    assert set(item) == ITEM_KEYS
    assert (item["status"], item["dataset"], item["raised_by"], item["automatic"]) == (
        "open",
        "sme_loans",
        "alice",
        True,
    )
    item_id = str(item["id"])

    refused = sandbox(
        "application", "decide", str(app_id), "--as", "pia", "--approve", "--reason", "ok", "--json", code=2
    )
    assert "awaits the expert committee" in error(refused, "invalid_transition")["message"]

    not_member = sandbox(
        "committee", "opinion", item_id, "--as", "pia", "--opinion", "approve", "--members", "pia,kai,lin",
        "--reason", "I am the provider", "--json", code=2,
    )  # fmt: skip
    error(not_member, "access_denied")
    too_few = sandbox(
        "committee", "opinion", item_id, "--as", "kai", "--opinion", "approve", "--members", "kai",
        "--reason", "alone", "--json", code=2,
    )  # fmt: skip
    assert "at least 2" in error(too_few, "invalid_request")["message"]

    done = sandbox(
        "committee", "opinion", item_id, "--as", "kai", "--opinion", "approve_with_conditions",
        "--members", "kai,lin", "--conditions", "District-level aggregates only.",
        "--reason", "Proportionate to the scenario.", "--date", "2025-03-01", "--json",
    )  # fmt: skip
    assert set(done) == ITEM_KEYS and done["status"] == "opinion_recorded"
    assert set(done["opinion"]) == OPINION_KEYS
    assert done["opinion"]["members"] == ["kai", "lin"] and done["opinion"]["decided_on"] == "2025-03-01"

    shown = sandbox("committee", "show", item_id, "--as", "erin", "--json")
    assert (
        shown["application"]["id"] == app_id and shown["application"]["scenario"] == APPLICATION["scenario"]
    )
    assert [h["kind"] for h in shown["history"]] == ["committee.raised", "committee.opinion_recorded"]
    text = sandbox("committee", "show", item_id, "--as", "erin")
    assert f"item {item_id}  high_risk_application  opinion_recorded" in text
    assert "conditions: District-level aggregates only." in text

    again = sandbox(
        "committee", "opinion", item_id, "--as", "mei", "--opinion", "reject", "--members", "mei,lin",
        "--reason", "late", "--json", code=2,
    )  # fmt: skip
    error(again, "invalid_transition")
    approved = sandbox(
        "application", "decide", str(app_id), "--as", "pia", "--approve", "--reason", "ok", "--json"
    )
    assert approved["status"] == "approved"
    assert sandbox("audit", "verify").startswith("ok ")


def test_raise_and_withdraw_and_errors(sandbox: Any) -> None:
    raised = sandbox(
        "committee", "raise", "--as", "carol", "--kind", "classification_dispute",
        "--dataset", "enterprise_tax", "--title", "Grade of enterprise_tax",
        "--description", "Tax amounts at firm level may be 重要数据.", "--json",
    )  # fmt: skip
    assert set(raised) == ITEM_KEYS and raised["departments"] == ["tax_bureau"]
    item_id = str(raised["id"])
    error(sandbox("committee", "show", item_id, "--as", "dave", "--json", code=2), "access_denied")
    error(
        sandbox("committee", "withdraw", item_id, "--as", "kai", "--reason", "no", "--json", code=2),
        "access_denied",
    )
    gone = sandbox("committee", "withdraw", item_id, "--as", "carol", "--reason", "Settled.", "--json")
    assert (gone["status"], gone["withdrawn_by"], gone["withdrawn_reason"]) == (
        "withdrawn",
        "carol",
        "Settled.",
    )
    late = sandbox(
        "committee", "opinion", item_id, "--as", "kai", "--opinion", "approve", "--members", "kai,lin",
        "--reason", "too late", "--json", code=2,
    )  # fmt: skip
    error(late, "invalid_transition")
    error(
        sandbox(
            "committee",
            "raise",
            "--as",
            "carol",
            "--kind",
            "nonsense",
            "--dataset",
            "enterprise_tax",
            "--title",
            "t",
            "--description",
            "a description of it",
            "--json",
            code=2,
        ),
        "invalid_request",
    )
    error(sandbox("committee", "show", "999999", "--as", "kai", "--json", code=2), "not_found")
    assert "(none)" in sandbox("committee", "list", "--as", "bob")
    readable = sandbox("committee", "queues", "--as", "kai")
    assert "classification_dispute" in readable and "分级分类争议" in readable


def test_help_names_every_command_and_option(sandbox: Any) -> None:
    text = sandbox("committee", "--help")
    for command in ("queues", "list", "show", "raise", "opinion", "withdraw"):
        assert command in text
    opinion_help = sandbox("committee", "opinion", "--help")
    for option in ("--opinion", "--members", "--reason", "--conditions", "--date", "--json"):
        assert option in opinion_help
    assert "approve_with_conditions" in opinion_help

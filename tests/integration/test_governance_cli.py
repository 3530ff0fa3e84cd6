"""The governance commands (``sandbox application|agreement|consent|lookup|violation|...``).

Run through Typer's CliRunner on the sandbox of ``test_governance_world``, configured by the
``SANDBOX_*`` environment like a terminal. Errors print the one JSON shape and exit 2.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from test_governance_world import APPLICATION, World, build_world
from typer.testing import CliRunner

from sandbox.cli.main import app


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("gov-cli"))
    yield w
    w.ctx.close()


@pytest.fixture
def sandbox(world: World, monkeypatch: pytest.MonkeyPatch) -> Any:
    settings = world.settings
    monkeypatch.setenv("SANDBOX_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SANDBOX_POLICY_DIR", str(settings.policy_dir))
    monkeypatch.setenv("SANDBOX_WAREHOUSE_URL", settings.warehouse_url)
    monkeypatch.setenv("SANDBOX_CONTROL_DB_URL", settings.control_db_url)
    for name in ("JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN", "SANDBOX_HUB_STOP_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Any:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output
        if "--json" in args:
            return json.loads(result.stdout)
        return result.output

    return run


def error(output: Any, code: str) -> None:
    assert set(output) == {"error"} and set(output["error"]) >= {"code", "message", "hint"}
    assert output["error"]["code"] == code, output


def test_application_submit_decide_show(sandbox: Any, world: World) -> None:
    submit = [
        "application", "submit", "--as", "grace", "--project", "credit-lab", "--datasets", "enterprise_tax",
        "--scenario", APPLICATION["scenario"], "--purpose", APPLICATION["purpose"], "--days", "30",
        "--measures", APPLICATION["security_measures"], "--json",
    ]  # fmt: skip
    error(sandbox(*submit, code=2), "invalid_request")  # no --undertaking
    created = sandbox(*submit, "--undertaking")
    assert created["status"] == "submitted"
    app_id = str(created["id"])
    error(
        sandbox("application", "decide", app_id, "--as", "dave", "--reason", "x", "--json", code=2),
        "access_denied",
    )
    decided = sandbox(
        "application", "decide", app_id, "--as", "carol", "--approve", "--reason", "Fine.", "--json"
    )
    assert decided["status"] == "approved" and decided["agreement"]["status"] == "active"
    text = sandbox("application", "show", app_id, "--as", "grace")
    assert f"application {app_id}  approved" in text and "agreement" in text
    listed = sandbox("application", "show", "--as", "erin", "--json")
    assert int(app_id) in {a["id"] for a in listed}
    conditions = sandbox("application", "conditions", "--json")
    assert "enterprise_tax" in {c["dataset"] for c in conditions}
    agreement = str(decided["agreement"]["id"])
    shown = sandbox("agreement", "show", agreement, "--as", "grace", "--json")
    assert shown["digest"] == decided["agreement"]["digest"]
    withdrawn = sandbox(
        "agreement", "withdraw", agreement, "--as", "carol", "--reason", "Ended early.", "--json"
    )
    assert withdrawn["status"] == "withdrawn"


def test_consent_lookup_revoke(sandbox: Any, world: World) -> None:
    granted = sandbox(
        "consent", "grant", "--enterprise", world.uscc, "--bank", "BANK_A", "--datasets", "enterprise_tax",
        "--days", "5", "--json",
    )  # fmt: skip
    assert granted["enterprise"] == "ent" and granted["status"] == "active"
    found = sandbox("lookup", "--as", "bob", "--dataset", "enterprise_tax", "--uscc", world.uscc, "--json")
    assert found["rows"] and {r[found["columns"].index("uscc")] for r in found["rows"]} == {world.uscc}
    human = sandbox("lookup", "--as", "bob", "--dataset", "enterprise_tax", "--uscc", world.uscc)
    assert f"row(s) of {world.uscc}" in human
    other = sandbox(
        "lookup", "--as", "bob", "--dataset", "enterprise_tax", "--uscc", world.other_uscc, "--json", code=2
    )
    error(other, "consent_required")
    error(sandbox("consent", "revoke", str(granted["id"]), "--as", "bob", "--json", code=2), "access_denied")
    revoked = sandbox("consent", "revoke", str(granted["id"]), "--reason", "done", "--json")
    assert revoked["status"] == "revoked"
    after = sandbox(
        "lookup", "--as", "bob", "--dataset", "enterprise_tax", "--uscc", world.uscc, "--json", code=2
    )
    error(after, "consent_required")
    log = sandbox("consent", "log", "--as", "ent", "--json")
    assert {"consent.granted", "consent.used", "consent.revoked", "lookup.refused"} <= {
        e["kind"] for e in log
    }
    assert "nothing to do" in sandbox("consent", "demo-enterprise")


def test_violation_report_confirm_dismiss(sandbox: Any, world: World) -> None:
    case = sandbox(
        "violation", "report", "--as", "alice", "--subject", "ivy", "--category", "illegal_acquisition",
        "--description", "Scraped the open portal with stolen credentials.", "--json",
    )  # fmt: skip
    other = sandbox(
        "violation",
        "report",
        "--as",
        "alice",
        "--subject",
        "frank",
        "--description",
        "Seemed odd to me.",
        "--json",
    )
    error(
        sandbox("violation", "confirm", str(case["id"]), "--as", "erin", "--reason", "x", "--json", code=2),
        "access_denied",
    )
    confirmed = sandbox(
        "violation", "confirm", str(case["id"]), "--as", "admin", "--reason", "Proven.", "--json"
    )
    assert confirmed["status"] == "confirmed"
    assert confirmed["actions"]["servers"]["status"] == "not_configured"  # no hub in this terminal
    dismissed = sandbox(
        "violation", "dismiss", str(other["id"]), "--as", "admin", "--reason", "No evidence.", "--json"
    )
    assert dismissed["status"] == "dismissed"
    public = sandbox("disclosures", "--json")
    assert [d["subject"] for d in public] == ["ivy"]
    assert "ivy" in sandbox("disclosures")
    appealed = sandbox(
        "violation",
        "appeal",
        str(case["id"]),
        "--as",
        "ivy",
        "--grounds",
        "The credentials were mine.",
        "--json",
    )
    assert appealed["status"] == "appealed"
    upheld = sandbox(
        "violation",
        "decide-appeal",
        str(case["id"]),
        "--as",
        "admin",
        "--uphold",
        "--reason",
        "No.",
        "--json",
    )
    assert upheld["status"] == "upheld"


def test_channels_and_usage(sandbox: Any, world: World) -> None:
    demand = sandbox(
        "demand", "file", "--as", "bob", "--title", "Utility bills",
        "--description", "Electricity payments of SMEs.",
        "--json",
    )  # fmt: skip
    assert demand["department"] is None
    routed = sandbox(
        "demand", "route", str(demand["id"]), "--as", "admin", "--department", "market_regulation", "--json"
    )
    assert routed["department"] == "market_regulation"
    correction = sandbox(
        "correction", "file", "--as", "ent", "--dataset", "enterprise_tax",
        "--description", "Grade is wrong.",
        "--columns", "credit_grade", "--json",
    )  # fmt: skip
    answered = sandbox(
        "demand", "respond", str(correction["id"]), "--as", "carol", "--status", "rejected",
        "--response", "The grade is right.", "--json",
    )  # fmt: skip
    assert answered["status"] == "rejected"
    report = sandbox("report", "usage", "--as", "grace", "--project", "credit-lab", "--papers", "1", "--json")
    assert report["papers"] == 1
    assert isinstance(sandbox("report", "due", "--json"), list)
    usage = sandbox("usage", "--as", "carol", "--json")
    assert [u["dataset"] for u in usage] == ["enterprise_tax"]
    error(sandbox("usage", "--as", "bob", "--json", code=2), "access_denied")


def test_an_uninitialised_sandbox_says_what_to_do(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SANDBOX_CONTROL_DB_URL", f"sqlite:///{tmp_path / 'none.sqlite'}")
    result = CliRunner().invoke(app, ["violation", "list", "--as", "admin", "--json"])
    assert result.exit_code == 2
    error(json.loads(result.stdout), "config_error")

"""``sandbox init [--demo]``, ``sandbox audit verify`` and the admin commands, end to end."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from sqlalchemy import func, select, text
from typer.testing import CliRunner, Result

from sandbox.access import registry
from sandbox.cli import admin_cmd, audit_cmd, init_cmd
from sandbox.control.db import make_engine, session_scope
from sandbox.control.models import AuditEntry, Grant, Project, ProjectMember, User

EXPECTED_GRANTS = {
    "fin-lab": {"enterprise_registry", "enterprise_tax", "social_insurance", "penalties", "sme_loans"},
    "mobility-lab": {"transit_stations", "transit_trips", "taxi_trips", "road_accidents"},
}
DEMO_USERS = {"admin", "alice", "bob", "frank", "carol", "dave", "erin", "kai", "lin", "mei"}


def _app() -> typer.Typer:
    app = typer.Typer()
    for module in (init_cmd, audit_cmd, admin_cmd):
        module.register(app)
    return app


APP = _app()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    data_dir = tmp_path / "state" / ".sandbox"
    monkeypatch.setenv("SANDBOX_DATA_DIR", str(data_dir))
    for name in ("SANDBOX_CONTROL_DB_URL", "SANDBOX_DEMO_PASSWORD", "SANDBOX_POLICY_DIR", "SANDBOX_ACTOR"):
        monkeypatch.delenv(name, raising=False)
    yield data_dir


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(APP, list(args), input=input, catch_exceptions=False)


def _control_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'control.sqlite'}"


def _snapshot(url: str) -> dict[str, object]:
    engine = make_engine(url)
    try:
        with session_scope(engine) as s:
            return {
                "users": {u.username: (u.role, u.status, u.password_hash) for u in s.scalars(select(User))},
                "members": s.scalar(select(func.count()).select_from(ProjectMember)),
                "grants": sorted(
                    (p.name, g.dataset) for g, p in s.execute(select(Grant, Project).join(Project)).all()
                ),
                "audit": s.scalar(select(func.count()).select_from(AuditEntry)),
            }
    finally:
        engine.dispose()


def test_init_demo_twice_is_idempotent_and_the_chain_verifies(env: Path) -> None:
    first = run("init", "--demo")
    assert first.exit_code == 0, first.output
    assert stat.S_IMODE(env.stat().st_mode) == 0o700
    assert "created     user alice (researcher)" in first.output
    assert "demo passwords (shown only now" in first.output
    after_first = _snapshot(_control_url(env))
    assert set(after_first["users"]) == DEMO_USERS  # type: ignore[arg-type]
    grants: dict[str, set[str]] = {}
    for project, dataset in after_first["grants"]:  # type: ignore[attr-defined]
        grants.setdefault(project, set()).add(dataset)
    assert grants == EXPECTED_GRANTS
    assert after_first["members"] == 3  # alice (lead), bob, frank (lead)
    users = after_first["users"]
    assert users["carol"][0] == "steward" and users["erin"][0] == "auditor"  # type: ignore[index]
    assert {name for name, u in users.items() if u[0] == "expert"} == {"kai", "lin", "mei"}  # type: ignore[attr-defined]
    for _role, _status, password_hash in users.values():  # type: ignore[attr-defined]
        assert password_hash.startswith("$argon2id$")

    second = run("init", "--demo")
    assert second.exit_code == 0, second.output
    assert "nothing to do" in second.output
    assert "demo passwords" not in second.output
    assert _snapshot(_control_url(env)) == after_first

    verified = run("audit", "verify")
    assert verified.exit_code == 0, verified.output
    assert verified.output.startswith(f"ok {after_first['audit']} entries, head ")


def test_demo_password_from_the_environment(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_DEMO_PASSWORD", "demo-pass-123")
    result = run("init", "--demo", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["passwords"] == {}
    assert set(report["users_with_env_password"]) == DEMO_USERS
    assert "demo-pass-123" not in result.output
    engine = make_engine(_control_url(env))
    try:
        with session_scope(engine) as s:
            assert registry.authenticate(s, "alice", "demo-pass-123") is not None
            assert registry.authenticate(s, "bob", "wrong-pass-123") is None
    finally:
        engine.dispose()


def test_generated_passwords_work_and_are_printed_once(env: Path) -> None:
    report = json.loads(run("init", "--demo", "--json").output)
    assert set(report["passwords"]) == DEMO_USERS
    engine = make_engine(_control_url(env))
    try:
        with session_scope(engine) as s:
            assert registry.authenticate(s, "frank", report["passwords"]["frank"]) is not None
    finally:
        engine.dispose()
    assert json.loads(run("init", "--demo", "--json").output)["passwords"] == {}


def test_init_without_demo_creates_no_accounts(env: Path) -> None:
    result = run("init")
    assert result.exit_code == 0, result.output
    snap = _snapshot(_control_url(env))
    assert snap["users"] == {} and snap["grants"] == []
    assert snap["audit"] == 2  # system.migrated, policy.loaded
    assert "nothing to do" in run("init").output


def test_editing_an_audit_row_makes_verify_fail_naming_its_seq(env: Path) -> None:
    assert run("init", "--demo").exit_code == 0
    engine = make_engine(_control_url(env))
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 7"))
    finally:
        engine.dispose()
    result = run("audit", "verify")
    assert result.exit_code == 1
    assert "broken at seq 7: hash mismatch" in result.output
    as_json = json.loads(run("audit", "verify", "--json").output)
    assert (as_json["ok"], as_json["first_bad"], as_json["count"]) == (False, 7, 6)


def test_exported_log_verifies_offline(env: Path, tmp_path: Path) -> None:
    assert run("init", "--demo").exit_code == 0
    out = tmp_path / "audit.jsonl"
    assert run("audit", "export", "--out", str(out)).exit_code == 0
    result = run("audit", "verify", "--file", str(out))
    assert result.exit_code == 0 and result.output.startswith("ok ")
    lines = out.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[3])
    row["data"]["role"] = "admin"
    lines[3] = json.dumps(row, ensure_ascii=False)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tampered = run("audit", "verify", "--file", str(out))
    assert tampered.exit_code == 1 and "seq 4" in tampered.output


def test_verify_before_init_says_what_to_do(env: Path) -> None:
    result = run("audit", "verify")
    assert result.exit_code == 2
    assert "sandbox init" in result.output


def test_admin_commands_change_state_and_keep_the_chain(env: Path) -> None:
    assert run("init", "--demo").exit_code == 0
    added = run("user", "add", "gina", "--role", "researcher", "--organisation", "Uni", "--json")
    assert added.exit_code == 0, added.output
    assert len(json.loads(added.output)["password"]) >= 12
    piped = run("user", "add", "hal", "--role", "bank", "--password-stdin", input="hal-password-1\n")
    assert piped.exit_code == 0 and "password" not in piped.output
    assert run("user", "suspend", "gina", "--reason", "test").exit_code == 0
    assert "nothing changed" in run("user", "suspend", "gina").output
    assert run("user", "reinstate", "gina").exit_code == 0
    assert run("user", "revoke", "hal").exit_code == 0
    assert run("project", "add", "geo-lab", "--lead", "gina", "--title", "Geo").exit_code == 0
    assert run("project", "add-member", "geo-lab", "bob").exit_code == 0
    assert run("grant", "add", "geo-lab", "taxi_trips", "--expires", "2099-12-31").exit_code == 0
    duplicate = run("grant", "add", "geo-lab", "taxi_trips")
    assert duplicate.exit_code == 2 and "already_exists" in duplicate.output
    unknown = run("grant", "add", "geo-lab", "no_such_dataset")
    assert unknown.exit_code == 2 and "unknown_dataset" in unknown.output
    listed = json.loads(run("grant", "list", "--project", "geo-lab", "--json").output)
    assert [(g["dataset"], g["expires_at"][:10], g["granted_by"]) for g in listed] == [
        ("taxi_trips", "2100-01-01", "admin")
    ]
    assert run("grant", "revoke", "geo-lab", "taxi_trips", "--reason", "ended").exit_code == 0
    assert json.loads(run("grant", "list", "--project", "geo-lab", "--json").output) == []
    users = {u["username"]: u["status"] for u in json.loads(run("user", "list", "--json").output)}
    assert users["gina"] == "approved" and users["hal"] == "revoked"
    projects = {p["name"]: p["members"] for p in json.loads(run("project", "list", "--json").output)}
    assert projects["geo-lab"] == ["bob", "gina"]
    tail = json.loads(run("audit", "tail", "-n", "9", "--json").output)
    assert [e["kind"] for e in tail] == [
        "user.created",
        "user.created",
        "user.status_changed",
        "user.status_changed",
        "user.status_changed",
        "project.created",
        "project.member_added",
        "grant.added",
        "grant.revoked",
    ]
    assert {e["actor"] for e in tail} == {"admin"}
    assert all("password" not in json.dumps(e["data"]) for e in tail)
    assert run("audit", "verify").exit_code == 0


def test_init_demo_on_postgres_is_idempotent(
    env: Path, pg_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_CONTROL_DB_URL", pg_database_url)
    assert run("init", "--demo").exit_code == 0
    before = _snapshot(pg_database_url)
    second = run("init", "--demo")
    assert second.exit_code == 0 and "nothing to do" in second.output
    assert _snapshot(pg_database_url) == before
    verified = run("audit", "verify")
    assert verified.exit_code == 0 and verified.output.startswith(f"ok {before['audit']} entries")

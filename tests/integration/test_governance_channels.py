"""SR-30: the objection channel (权益保护) and the SLA clocks of all three channels.

Services, CLI and JSON API on the sandbox of ``test_governance_world`` (real SQLite control DB);
time is injected with ``now=``. One flow also runs on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select
from test_governance_world import Gateway, World, build_world, error_of
from typer.testing import CliRunner

from sandbox.access import registry
from sandbox.access.errors import InvalidRequest
from sandbox.cli.main import app as cli_app
from sandbox.control.db import migrate, session_scope
from sandbox.control.models import AuditEntry
from sandbox.errors import AccessDenied, InvalidTransition, NotFound, UnknownDataset
from sandbox.governance import auditor, channels, consent, objections
from sandbox.governance.channel_rules import Clock

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("gov-channels"))
    with session_scope(w.ctx.control_engine, immediate=True) as s:
        registry.create_user(s, "hana", "steward", department="housing_fund", actor="admin")
    yield w
    w.ctx.close()


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _entries(world: World, kind: str, request_id: int) -> list[dict[str, Any]]:
    with session_scope(world.ctx.control_engine) as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.kind == kind).order_by(AuditEntry.seq))
        return [e.payload() for e in rows if e.payload().get("request_id") == request_id]


# --------------------------------------------------------------------------- objections


def test_an_enterprise_objects_and_the_provider_decides_late(world: World) -> None:
    grounds = "The 2019 tax arrears shown for our company were settled; please remove them."
    filed = objections.file_objection(
        world.ctx, user="ent", dataset="enterprise_tax", grounds=grounds, now=T0
    )
    assert (filed.kind, filed.status, filed.department) == ("objection", "received", "tax_bureau")
    assert filed.due_at == T0 + timedelta(days=15) and filed.answered_at is None
    assert (filed.clock, filed.overdue) == ("open", False)

    (entry,) = _entries(world, "objection.filed", filed.id)
    assert entry["description_sha256"] == _sha(grounds) and entry["dataset"] == "enterprise_tax"
    assert grounds not in json.dumps(entry, ensure_ascii=False)  # only the digest reaches the chain
    assert "title" not in entry and entry["due_at"] == filed.due_at.isoformat()

    # Nobody but the filer, the provider's stewards, the operator and supervisors sees it.
    for outsider in ("alice", "bob", "dave"):
        assert filed.id not in {r.id for r in channels.list_requests(world.ctx, user=outsider)}
        with pytest.raises(NotFound):
            channels.get_request(world.ctx, user=outsider, request_id=filed.id)
    with pytest.raises(NotFound):  # a steward of another department cannot even learn it exists
        channels.respond(world.ctx, user="dave", request_id=filed.id, status="upheld", response="Yes indeed")
    for reader in ("ent", "carol", "admin", "erin"):
        assert filed.id in {r.id for r in channels.list_requests(world.ctx, user=reader, kind="objection")}
    with pytest.raises(AccessDenied, match="change nothing"):
        channels.respond(world.ctx, user="erin", request_id=filed.id, status="rejected", response="No way")

    ack = channels.respond(
        world.ctx,
        user="carol",
        request_id=filed.id,
        status="acknowledged",
        response="Checking.",
        now=T0 + timedelta(days=2),
    )
    assert ack.answered_at is None  # an acknowledgement does not stop the clock
    assert channels.get_request(
        world.ctx, user="ent", request_id=filed.id, now=T0 + timedelta(days=16)
    ).overdue

    with pytest.raises(InvalidRequest, match="response"):
        channels.respond(world.ctx, user="carol", request_id=filed.id, status="upheld", response="ok")
    with pytest.raises(InvalidTransition):
        channels.respond(
            world.ctx, user="carol", request_id=filed.id, status="corrected", response="Fixed it."
        )
    reason = "Arrears were settled on 2019-11-02; the record is corrected in the next release."
    late = T0 + timedelta(days=20)
    decided = channels.respond(
        world.ctx, user="carol", request_id=filed.id, status="partly_upheld", response=reason, now=late
    )
    assert (decided.status, decided.answered_at, decided.clock) == ("partly_upheld", late, "answered_late")
    assert decided.answered_late and not decided.overdue

    seen = channels.get_request(world.ctx, user="ent", request_id=filed.id)  # the filer reads the outcome
    assert (seen.status, seen.response, seen.responded_by) == ("partly_upheld", reason, "carol")
    updates = _entries(world, "objection.updated", filed.id)
    assert [u["status"] for u in updates] == ["acknowledged", "partly_upheld"]
    assert updates[-1]["response_sha256"] == _sha(reason) and updates[-1]["answered_late"] is True
    assert all("response" not in u for u in updates)
    with pytest.raises(InvalidTransition):  # decided: closed
        channels.respond(
            world.ctx, user="carol", request_id=filed.id, status="rejected", response="Changed mind"
        )
    assert auditor.chain_status(world.ctx, user="erin").ok


def test_any_provider_department_of_the_dataset_answers(world: World) -> None:
    filed = objections.file_objection(
        world.ctx, user="ivy", dataset="social_insurance", grounds="My contribution history is wrong."
    )
    assert filed.department == "hr_social_security"  # routed to the first provider
    assert filed.id in {r.id for r in channels.list_requests(world.ctx, user="hana")}  # housing_fund
    decided = channels.respond(
        world.ctx,
        user="hana",
        request_id=filed.id,
        status="rejected",
        response="The record matches our files.",
    )
    assert (decided.status, decided.responded_by) == ("rejected", "hana")


def test_an_objection_names_a_subject_that_exists_and_concerns_the_dataset(world: World) -> None:
    grant = consent.grant(world.ctx, actor="ent", bank="BANK_A", datasets=["enterprise_tax"], days=30)
    about = objections.file_objection(
        world.ctx,
        user="ent",
        dataset="enterprise_tax",
        grounds="The bank looked us up beyond what we authorised.",
        subject="consent",
        subject_ref=grant.id,
    )
    assert (about.subject_kind, about.subject_ref) == ("consent", str(grant.id))
    (entry,) = _entries(world, "objection.filed", about.id)
    assert entry["subject"] == {"kind": "consent", "ref": str(grant.id)}

    bad = [
        {"subject": "consent", "subject_ref": 999_999},  # no such consent
        {"subject": "consent"},  # kind without id
        {"subject": "rumour", "subject_ref": 1},
        {"subject": "release", "subject_ref": "no-such-release"},
        {"subject": "lookup", "subject_ref": 1},  # seq 1 is not a look-up
    ]
    for kw in bad:
        with pytest.raises(InvalidRequest):
            objections.file_objection(
                world.ctx, user="ent", dataset="enterprise_tax", grounds="Grounds here.", **kw
            )
    with pytest.raises(InvalidRequest):  # the consent does not cover that dataset
        objections.file_objection(
            world.ctx,
            user="ent",
            dataset="penalties",
            grounds="Grounds here.",
            subject="consent",
            subject_ref=grant.id,
        )
    with pytest.raises(UnknownDataset):
        objections.file_objection(world.ctx, user="ent", dataset="nope", grounds="Grounds here.")
    with pytest.raises(InvalidRequest, match="grounds"):
        objections.file_objection(world.ctx, user="ent", dataset="enterprise_tax", grounds="no")


# --------------------------------------------------------------------------- clocks and KPIs


def test_clocks_and_the_sla_summary_with_injected_time(world: World) -> None:
    """tim (transport_commission) sees only these requests, so the numbers are exact."""
    day = timedelta(days=1)
    d1 = channels.file_demand(
        world.ctx,
        user="ivy",
        title="Hourly taxi",
        description="Hourly taxi trips please.",
        dataset="taxi_trips",
        now=T0,
    )
    d2 = channels.file_demand(
        world.ctx,
        user="ivy",
        title="Taxi fares",
        description="Fare components please.",
        dataset="taxi_trips",
        now=T0,
    )
    c1 = channels.file_correction(
        world.ctx, user="ivy", dataset="taxi_trips", description="Trip distances look doubled.", now=T0
    )
    o1 = objections.file_objection(
        world.ctx, user="ivy", dataset="taxi_trips", grounds="My trips are traceable.", now=T0
    )
    o2 = objections.file_objection(
        world.ctx, user="ivy", dataset="taxi_trips", grounds="Another complaint here.", now=T0 + 20 * day
    )
    assert (d1.due_at, c1.due_at, o1.due_at) == (T0 + 15 * day, T0 + 10 * day, T0 + 15 * day)

    channels.respond(
        world.ctx, user="tim", request_id=d1.id, status="answered", response="Soon.", now=T0 + 5 * day
    )
    channels.respond(
        world.ctx, user="tim", request_id=d2.id, status="refused", response="Not kept.", now=T0 + 16 * day
    )
    channels.respond(
        world.ctx, user="tim", request_id=o1.id, status="upheld", response="Removed.", now=T0 + 2 * day
    )
    # a later move keeps the first answer's time
    again = channels.respond(
        world.ctx, user="tim", request_id=d1.id, status="opened", response="Open now.", now=T0 + 40 * day
    )
    assert again.answered_at == T0 + 5 * day and again.clock == "answered_on_time"

    now = T0 + 30 * day
    assert [r.id for r in channels.list_requests(world.ctx, user="tim", overdue=True, now=now)] == [c1.id]
    assert [r.id for r in channels.list_requests(world.ctx, user="tim", clock="answered_late", now=now)] == [
        d2.id
    ]
    assert {r.id for r in channels.list_requests(world.ctx, user="tim", clock="open", now=now)} == {o2.id}
    assert channels.list_requests(world.ctx, user="tim", overdue=True, now=T0 + 9 * day) == []
    with pytest.raises(InvalidRequest, match="clock"):
        channels.list_requests(world.ctx, user="tim", clock="late")

    summary = {s.kind: s.to_dict() for s in channels.sla_summary(world.ctx, user="tim", now=now)}
    assert summary == {
        "demand": {
            "kind": "demand", "sla_days": 15, "filed": 2, "open": 0, "overdue": 0,
            "answered_on_time": 1, "answered_late": 1, "median_days_to_answer": 10.5,
        },
        "correction": {
            "kind": "correction", "sla_days": 10, "filed": 1, "open": 0, "overdue": 1,
            "answered_on_time": 0, "answered_late": 0, "median_days_to_answer": None,
        },
        "objection": {
            "kind": "objection", "sla_days": 15, "filed": 2, "open": 1, "overdue": 0,
            "answered_on_time": 1, "answered_late": 0, "median_days_to_answer": 2.0,
        },
    }  # fmt: skip
    everything = {s.kind: s for s in channels.sla_summary(world.ctx, user="erin", now=now)}
    assert everything["objection"].filed >= 2 + 2  # the supervisor sees the other tests' too
    assert Clock.OVERDUE.value == "overdue"


def test_the_sla_days_come_from_the_platform_policy(world: World) -> None:
    platform = world.ctx.catalog.platform
    changed = platform.model_copy(
        update={
            "channels": platform.channels.model_copy(
                update={"sla_days": platform.channels.sla_days.model_copy(update={"correction": 3})}
            )
        }
    )
    ctx = SimpleNamespace(
        catalog=replace(world.ctx.catalog, platform=changed), control_engine=world.ctx.control_engine
    )
    filed = channels.file_correction(
        ctx, user="ivy", dataset="penalties", description="A wrong fine amount.", now=T0
    )
    assert filed.due_at == T0 + timedelta(days=3)
    summary = {s.kind: s.sla_days for s in channels.sla_summary(ctx, user="ivy")}
    assert summary["correction"] == 3


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli(world: World, monkeypatch: pytest.MonkeyPatch) -> Any:
    settings = world.settings
    monkeypatch.setenv("SANDBOX_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SANDBOX_POLICY_DIR", str(settings.policy_dir))
    monkeypatch.setenv("SANDBOX_WAREHOUSE_URL", settings.warehouse_url)
    monkeypatch.setenv("SANDBOX_CONTROL_DB_URL", settings.control_db_url)
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Any:
        result = runner.invoke(cli_app, list(args))
        assert result.exit_code == code, result.output
        return json.loads(result.stdout) if "--json" in args else result.output

    return run


def _error(output: Any, code: str) -> None:
    assert set(output) == {"error"} and set(output["error"]) == {"code", "message", "hint"}, output
    assert output["error"]["code"] == code, output


def test_the_objection_commands(cli: Any) -> None:
    filed = cli(
        "objection", "file", "--as", "ent", "--dataset", "enterprise_tax",
        "--grounds", "Our registered capital is shown wrongly.", "--json",
    )  # fmt: skip
    assert filed["kind"] == "objection" and filed["clock"] == "open" and filed["overdue"] is False
    assert {"due_at", "answered_at", "answered_late", "subject_kind", "subject_ref"} <= set(filed)
    _error(
        cli(
            "objection",
            "file",
            "--as",
            "ent",
            "--dataset",
            "nope",
            "--grounds",
            "Some grounds.",
            "--json",
            code=2,
        ),
        "unknown_dataset",
    )
    _error(
        cli(
            "objection",
            "file",
            "--as",
            "ent",
            "--dataset",
            "enterprise_tax",
            "--grounds",
            "Some grounds.",
            "--subject",
            "consent",
            "--json",
            code=2,
        ),
        "invalid_request",
    )
    rid = str(filed["id"])
    _error(
        cli(
            "demand",
            "respond",
            rid,
            "--as",
            "alice",
            "--status",
            "upheld",
            "--response",
            "Sure.",
            "--json",
            code=2,
        ),
        "not_found",
    )
    decided = cli(
        "demand",
        "respond",
        rid,
        "--as",
        "carol",
        "--status",
        "rejected",
        "--response",
        "Matches the register.",
        "--json",
    )
    assert decided["status"] == "rejected" and decided["clock"] == "answered_on_time"
    listed = cli("demand", "list", "--as", "erin", "--kind", "objection", "--json")
    assert int(rid) in {r["id"] for r in listed}
    assert all(r["clock"] == "overdue" for r in cli("demand", "list", "--as", "erin", "--overdue", "--json"))
    assert "objection" in cli("demand", "list", "--as", "ent", "--kind", "objection")
    _error(cli("demand", "list", "--as", "erin", "--clock", "soon", "--json", code=2), "invalid_request")
    sla = cli("demand", "sla", "--as", "erin", "--json")
    assert [k["kind"] for k in sla] == ["demand", "correction", "objection"]
    assert set(sla[0]) == {
        "kind", "sla_days", "filed", "open", "overdue",
        "answered_on_time", "answered_late", "median_days_to_answer",
    }  # fmt: skip
    assert "objection (15 days): filed" in cli("demand", "sla", "--as", "erin")


# --------------------------------------------------------------------------- API


def test_the_objection_api(world: World) -> None:
    gw = Gateway(world.app())

    def call(user: str, method: str, path: str, **kw: Any) -> Any:
        return gw.request(method, path, world.headers(user), **kw)

    body = {"dataset": "enterprise_tax", "grounds": "Our penalty record is outdated."}
    created = call("ent", "POST", "objections", json=body)
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    assert created.json()["department"] == "tax_bureau" and created.json()["clock"] == "open"
    error_of(call("ent", "POST", "objections", json={**body, "extra": 1}), 400, "invalid_request")
    error_of(call("ent", "POST", "objections", json={**body, "subject": "release"}), 400, "invalid_request")

    assert rid not in {r["id"] for r in call("alice", "GET", "requests").json()}
    error_of(call("alice", "GET", f"requests/{rid}"), 404, "not_found")
    assert rid in {r["id"] for r in call("erin", "GET", "requests?kind=objection").json()}
    error_of(
        call("erin", "POST", f"requests/{rid}/response", json={"status": "upheld", "response": "Agreed."}),
        403,
        "access_denied",
    )
    answered = call(
        "carol", "POST", f"requests/{rid}/response", json={"status": "upheld", "response": "Updated."}
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["status"] == "upheld" and answered.json()["answered_at"]
    shown = call("ent", "GET", f"requests/{rid}").json()
    assert (shown["status"], shown["response"], shown["answered_late"]) == ("upheld", "Updated.", False)

    overdue = call("erin", "GET", "requests?overdue=true")
    assert overdue.status_code == 200 and all(r["clock"] == "overdue" for r in overdue.json())
    sla = call("erin", "GET", "requests/sla")
    assert sla.status_code == 200, sla.text
    by_kind = {k["kind"]: k for k in sla.json()}
    assert (
        set(by_kind) == {"demand", "correction", "objection"}
        and by_kind["objection"]["answered_on_time"] >= 1
    )
    mine = {k["kind"]: k for k in call("ent", "GET", "requests/sla").json()}
    assert mine["objection"]["filed"] < by_kind["objection"]["filed"]  # the filer's own only


# --------------------------------------------------------------------------- PostgreSQL


def test_an_objection_flow_on_postgres(
    world: World, pg_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """File, answer late and summarise on a PostgreSQL control DB (times and CHECKs)."""
    from sandbox.control.db import make_engine

    migrate(pg_database_url)
    engine = make_engine(pg_database_url)
    try:
        with session_scope(engine, immediate=True) as s:
            registry.create_user(s, "carol", "steward", department="tax_bureau", actor="admin")
            registry.create_user(s, "ent", "enterprise", uscc=world.uscc, actor="admin")
            registry.create_user(s, "erin", "auditor", actor="admin")
        monkeypatch.setattr(world.ctx, "control_engine", engine)
        filed = objections.file_objection(
            world.ctx, user="ent", dataset="enterprise_tax", grounds="Wrong records.", now=T0
        )
        decided = channels.respond(
            world.ctx,
            user="carol",
            request_id=filed.id,
            status="upheld",
            response="Fixed.",
            now=T0 + timedelta(days=16),
        )
        assert decided.answered_at == T0 + timedelta(days=16) and decided.answered_late
        (objection,) = [s for s in channels.sla_summary(world.ctx, user="erin") if s.kind == "objection"]
        assert (objection.filed, objection.answered_late, objection.median_days_to_answer) == (1, 1, 16.0)
        assert auditor.chain_status(world.ctx, user="erin").ok
    finally:
        engine.dispose()

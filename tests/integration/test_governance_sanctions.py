"""Violation reports, sanctions, disclosure, appeal; channels; usage; auditor views (services)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text
from test_governance_world import APPLICATION, World, build_world

from sandbox.access import registry
from sandbox.access.errors import InvalidRequest
from sandbox.access.rules import check_can_query
from sandbox.audit import chain
from sandbox.audit import store as audit_store
from sandbox.control.db import session_scope
from sandbox.control.models import AuditEntry, utcnow
from sandbox.errors import AccessDenied, AccountInactive, BudgetFrozen, InvalidTransition, NotFound
from sandbox.governance import applications, auditor, channels, sanctions, usage, usage_reports
from sandbox.governance.sanctions import HttpxServerStopper, NullServerStopper, SanctionServices
from sandbox.services.queries import run_query


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("gov-sanctions"))
    yield w
    w.ctx.close()


def make_user(world: World, name: str, role: str = "researcher", **kw: str) -> str:
    with session_scope(world.ctx.control_engine, immediate=True) as s:
        registry.create_user(s, name, role, actor="admin", **kw)
    return name


# --------------------------------------------------------------------------- sanctions


def test_confirmation_closes_access_at_once_and_publishes(world: World) -> None:
    make_user(world, "mole", organisation="Shady analytics")
    with session_scope(world.ctx.control_engine, immediate=True) as s:
        registry.add_member(s, "fin-lab", "mole", actor="alice")
    with session_scope(world.ctx.control_engine) as s:
        check_can_query(s, "mole", "fin-lab", "enterprise_tax", world.ctx.catalog)  # demo grant
    case = sanctions.report(
        world.ctx,
        reporter="bob",
        subject="mole",
        description="Shared screenshots of query results outside the lab.",
        category="beyond_scenario",
        dataset="enterprise_tax",
        project="fin-lab",
    )
    assert case.status == "reported"
    with pytest.raises(AccessDenied, match="operator"):  # a steward records, but does not publish alone
        sanctions.confirm(
            world.ctx, actor="carol", violation_id=case.id, reason="x", services=world.services()
        )
    with pytest.raises(AccessDenied):
        sanctions.confirm(world.ctx, actor="bob", violation_id=case.id, reason="x", services=world.services())
    confirmed = sanctions.confirm(
        world.ctx,
        actor="admin",
        violation_id=case.id,
        reason="Screenshots confirmed by the lab lead.",
        summary="Query results shared outside the agreed scenario (enterprise_tax).",
        services=world.services(),
    )
    assert confirmed.status == "confirmed"
    assert "mole" in world.stopper.calls
    assert confirmed.actions is not None
    assert confirmed.actions["account"]["status"] == "revoked"
    assert confirmed.actions["servers"]["status"] == "stopped"
    assert confirmed.actions["exports"]["status"] in ("none_pending", "recorded")
    with session_scope(world.ctx.control_engine) as s:
        with pytest.raises(AccountInactive):
            check_can_query(s, "mole", "fin-lab", "enterprise_tax", world.ctx.catalog)
        assert sanctions.is_frozen(s, "mole")
    public = {d.subject: d for d in sanctions.disclosures(world.ctx)}
    entry = public["mole"]
    assert entry.organisation == "Shady analytics" and entry.status == "published"
    assert entry.summary.startswith("Query results shared")
    with pytest.raises(InvalidTransition):
        sanctions.dismiss(world.ctx, actor="admin", violation_id=case.id, reason="too late")

    # Appeal by the sanctioned (revoked) account, then reinstatement.
    with pytest.raises(AccessDenied):
        sanctions.appeal(world.ctx, user="bob", violation_id=case.id, grounds="Not my case to appeal.")
    appealed = sanctions.appeal(
        world.ctx, user="mole", violation_id=case.id, grounds="The screenshots showed public data only."
    )
    assert appealed.status == "appealed"
    reinstated = sanctions.decide_appeal(
        world.ctx, actor="admin", violation_id=case.id, reinstate=True, reason="Only open data was shown."
    )
    assert reinstated.status == "reinstated"
    with session_scope(world.ctx.control_engine) as s:
        check_can_query(s, "mole", "fin-lab", "enterprise_tax", world.ctx.catalog)
        assert not sanctions.is_frozen(s, "mole")
    entry = {d.subject: d for d in sanctions.disclosures(world.ctx)}["mole"]
    assert entry.status == "reinstated" and entry.note and "reinstated on appeal" in entry.note


def test_dismissal_changes_nothing_but_the_case(world: World) -> None:
    make_user(world, "innocent")
    case = sanctions.report(world.ctx, reporter="hugo", subject="innocent", description="Looked suspicious.")
    dismissed = sanctions.dismiss(world.ctx, actor="admin", violation_id=case.id, reason="No evidence.")
    assert dismissed.status == "dismissed" and dismissed.decision_reason == "No evidence."
    assert "innocent" not in {d.subject for d in sanctions.disclosures(world.ctx)}
    with session_scope(world.ctx.control_engine) as s:
        assert registry.get_user(s, "innocent").status == "approved"


def test_an_upheld_appeal_keeps_the_sanction(world: World) -> None:
    make_user(world, "repeat", organisation="Repeat Ltd")
    case = sanctions.report(
        world.ctx,
        reporter="frank",
        subject="repeat",
        description="Tried re-identification.",
        category="infringement",
    )
    sanctions.confirm(
        world.ctx,
        actor="admin",
        violation_id=case.id,
        reason="Logs show it.",
        services=SanctionServices(NullServerStopper(), world.services().withdrawer),
    )
    sanctions.appeal(world.ctx, user="repeat", violation_id=case.id, grounds="It was an honest mistake.")
    upheld = sanctions.decide_appeal(
        world.ctx, actor="admin", violation_id=case.id, reinstate=False, reason="No."
    )
    assert upheld.status == "upheld"
    with session_scope(world.ctx.control_engine) as s:
        assert registry.get_user(s, "repeat").status == "revoked"
    entry = {d.subject: d for d in sanctions.disclosures(world.ctx)}["repeat"]
    assert entry.status == "published" and entry.note and "appeal refused" in entry.note


def test_report_validation_and_visibility(world: World) -> None:
    with pytest.raises(InvalidRequest, match="category"):
        sanctions.report(
            world.ctx, reporter="bob", subject="alice", description="Something odd here.", category="gossip"
        )
    with pytest.raises(NotFound):
        sanctions.report(world.ctx, reporter="bob", subject="nobody", description="Something odd here.")
    case = sanctions.report(
        world.ctx, reporter="ent", subject="frank", description="Something odd here.", dataset="taxi_trips"
    )
    assert case.id in {v.id for v in sanctions.list_violations(world.ctx, user="ent")}
    assert case.id in {v.id for v in sanctions.list_violations(world.ctx, user="erin")}
    assert case.id not in {v.id for v in sanctions.list_violations(world.ctx, user="carol")}  # not tax data
    with pytest.raises(NotFound):
        sanctions.get_violation(world.ctx, user="bob", violation_id=case.id)


def test_the_hub_stopper_deletes_every_server_with_the_service_token() -> None:
    seen: list[tuple[str, str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.raw_path.decode(), request.headers["authorization"]))
        if request.method == "GET" and request.url.path.endswith("/users/gone"):
            return httpx.Response(404)
        if request.method == "GET" and request.url.path.endswith("/tokens"):
            return httpx.Response(200, json={"api_tokens": [{"id": "a7"}, {"id": "o9"}]})
        if request.method == "GET":
            return httpx.Response(200, json={"name": "mole", "servers": {"": {}, "big one": {}}})
        if "/tokens/" in request.url.path:
            return httpx.Response(204)
        return httpx.Response(204 if request.url.path.endswith("/server") else 202)

    stopper = HttpxServerStopper(
        "http://hub/hub/api/", "svc-token", transport=httpx.MockTransport(handler), via="test"
    )
    outcome = stopper.stop_servers("mole")
    assert outcome.status == "stop_pending" and outcome.servers == ["", "big one"]
    assert outcome.tokens_deleted == 2 and outcome.via == "test"
    assert ("DELETE", "/hub/api/users/mole/server", "token svc-token") in seen
    assert ("DELETE", "/hub/api/users/mole/servers/big%20one", "token svc-token") in seen
    deletes = [path for method, path, _ in seen if method == "DELETE"]
    assert deletes[:2] == ["/hub/api/users/mole/tokens/a7", "/hub/api/users/mole/tokens/o9"]  # tokens first
    assert stopper.stop_servers("gone").status == "no_hub_user"

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    failed = HttpxServerStopper("http://hub/hub/api", "svc-token", transport=httpx.MockTransport(down))
    outcome = failed.stop_servers("mole")
    assert outcome.status == "failed" and "svc-token" not in outcome.detail
    assert HttpxServerStopper.from_env({}) is None
    assert HttpxServerStopper.from_env(
        {"JUPYTERHUB_API_URL": "http://hub/hub/api", "JUPYTERHUB_API_TOKEN": "t"}
    )


def test_the_stopper_is_the_code_of_close_hub_access() -> None:
    """One set of hub calls (``sandbox.hub.hubapi.close_access``) for the CLI and the sanction."""
    from sandbox.hub import hubapi

    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        if request.url.path.endswith("/tokens"):
            return httpx.Response(403)  # a token with admin:servers only: the tokens stay
        if request.method == "GET":
            return httpx.Response(200, json={"name": "mole", "servers": {"": {"ready": True}}})
        return httpx.Response(204)

    transport = httpx.MockTransport(handler)
    with hubapi.hub_client("http://hub/hub/api", "t", transport=transport) as hub:
        closed = hubapi.close_access(hub, "mole")
    assert closed.server_stopped and closed.tokens_deleted == 0 and "403" in closed.tokens_error
    direct = list(calls)
    calls.clear()
    outcome = HttpxServerStopper("http://hub/hub/api", "t", transport=transport).stop_servers("mole")
    assert calls == direct  # the same requests, in the same order
    assert outcome.status == "stopped" and "tokens kept" in outcome.detail

    def idle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/tokens"):
            return httpx.Response(200, json={"api_tokens": []})
        return httpx.Response(200, json={"name": "mole", "servers": {}})

    quiet = HttpxServerStopper("http://hub/hub/api", "t", transport=httpx.MockTransport(idle))
    assert quiet.stop_servers("mole").status == "not_running"

    def refused(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403)

    no_scope = HttpxServerStopper("http://hub/hub/api", "t", transport=httpx.MockTransport(refused))
    outcome = no_scope.stop_servers("mole")
    assert outcome.status == "failed" and "admin:servers" in outcome.detail


def test_the_gateway_uses_its_own_service_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the gateway process (service ``sandbox``) the stopper takes the gateway's own token,
    even where the ``sandbox-ops`` token would be readable; an explicit token file wins."""
    hub_env = {"JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api", "JUPYTERHUB_API_TOKEN": "gw-token"}
    for key, value in hub_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv(sanctions.HUB_TOKEN_FILE_ENV, raising=False)
    monkeypatch.setattr(
        HttpxServerStopper, "from_hub_settings", classmethod(lambda cls: cls("http://ops", "ops", via="ops"))
    )
    monkeypatch.setenv("JUPYTERHUB_SERVICE_NAME", "sandbox")
    stopper = SanctionServices.default(None).stopper  # type: ignore[arg-type]
    assert isinstance(stopper, HttpxServerStopper) and stopper.via == sanctions.VIA_SERVICE
    monkeypatch.delenv("JUPYTERHUB_SERVICE_NAME")
    assert SanctionServices.default(None).stopper.via == "ops"  # type: ignore[arg-type,attr-defined]
    token_file = tmp_path / "stop.token"
    token_file.write_text("file-token\n")
    monkeypatch.setenv(sanctions.HUB_TOKEN_FILE_ENV, str(token_file))
    monkeypatch.setenv("JUPYTERHUB_SERVICE_NAME", "sandbox")
    stopper = SanctionServices.default(None).stopper  # type: ignore[arg-type]
    assert stopper.via == sanctions.VIA_TOKEN_FILE  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- channels


def test_demand_requests_are_routed_and_answered_by_the_provider(world: World) -> None:
    demand = channels.file_demand(
        world.ctx,
        user="alice",
        title="Monthly VAT by industry",
        description="Need monthly rather than yearly VAT for a seasonality study.",
        dataset="enterprise_tax",
        scenario="SME seasonality",
    )
    assert (demand.department, demand.status) == ("tax_bureau", "received")
    with pytest.raises(AccessDenied):
        channels.respond(world.ctx, user="dave", request_id=demand.id, status="answered", response="x")
    with pytest.raises(InvalidRequest, match="response"):
        channels.respond(world.ctx, user="carol", request_id=demand.id, status="refused", response="")
    answered = channels.respond(
        world.ctx, user="carol", request_id=demand.id, status="refused", response="Monthly data is not kept."
    )
    assert answered.status == "refused" and answered.responded_by == "carol"
    with pytest.raises(InvalidTransition):
        channels.respond(world.ctx, user="carol", request_id=demand.id, status="opened", response="after all")
    with pytest.raises(InvalidRequest, match="already open"):
        channels.file_demand(
            world.ctx, user="alice", title="x", description="Open data please", dataset="venues"
        )
    unrouted = channels.file_demand(
        world.ctx, user="bob", title="Utility payments", description="Electricity payment history of SMEs."
    )
    assert unrouted.department is None
    routed = channels.route(world.ctx, user="admin", request_id=unrouted.id, department="market_regulation")
    assert routed.department == "market_regulation"
    assert demand.id in {r.id for r in channels.list_requests(world.ctx, user="carol", kind="demand")}
    assert demand.id not in {r.id for r in channels.list_requests(world.ctx, user="dave")}


def test_corrections_go_to_the_provider(world: World) -> None:
    report = channels.file_correction(
        world.ctx,
        user="ent",
        dataset="enterprise_tax",
        description="Our 2017 grade is B, not C.",
        columns=["credit_grade"],
    )
    assert report.department == "tax_bureau" and report.kind == "correction"
    with pytest.raises(InvalidRequest, match="no column"):
        channels.file_correction(
            world.ctx, user="ent", dataset="enterprise_tax", description="bad col here", columns=["nope"]
        )
    step = channels.respond(
        world.ctx, user="carol", request_id=report.id, status="acknowledged", response="Checking."
    )
    done = channels.respond(
        world.ctx, user="carol", request_id=step.id, status="corrected", response="Fixed in v2."
    )
    assert done.status == "corrected"


def test_usage_reports_only_from_members(world: World) -> None:
    with pytest.raises(AccessDenied):
        usage_reports.file_usage_report(world.ctx, user="frank", project="fin-lab", papers=1)
    record = usage_reports.file_usage_report(
        world.ctx,
        user="alice",
        project="fin-lab",
        papers=2,
        products=1,
        loans_supported=40,
        outputs=["Paper A", "Paper B"],
        benefits="Faster credit decisions.",
    )
    assert (record.papers, record.loans_supported, record.outputs) == (2, 40, ["Paper A", "Paper B"])
    with pytest.raises(InvalidRequest):
        usage_reports.file_usage_report(world.ctx, user="alice", project="fin-lab", papers=-1)
    assert record.id in {r.id for r in usage_reports.list_usage_reports(world.ctx, user="alice")}
    assert record.id not in {r.id for r in usage_reports.list_usage_reports(world.ctx, user="frank")}


# --------------------------------------------------------------------------- usage, auditor


def test_per_dataset_usage_counts_queries_epsilon_and_lookups(world: World) -> None:
    app = applications.submit(
        world.ctx, applicant="grace", project="credit-lab", datasets=["enterprise_tax"], **APPLICATION
    )
    applications.decide(world.ctx, steward="carol", application_id=app.id, approve=True, reason="ok")
    run_query(
        world.ctx,
        user="grace",
        project="credit-lab",
        sql="SELECT credit_grade, COUNT(*) FROM enterprise_tax GROUP BY credit_grade",
        epsilon=Decimal("0.1"),
    )
    run_query(
        world.ctx,
        user="hugo",
        project="credit-lab",
        sql="SELECT COUNT(*) FROM enterprise_tax",
        epsilon=Decimal("0.2"),
    )
    rows = {u.dataset: u for u in usage.dataset_usage(world.ctx, user="carol")}
    assert set(rows) == {"enterprise_tax"}  # a steward sees their department's datasets only
    tax = rows["enterprise_tax"]
    assert tax.queries >= 2 and tax.epsilon >= Decimal("0.3")
    assert tax.projects["credit-lab"] == {"queries": 2, "epsilon": "0.3"}
    assert tax.agreements_in_force >= 1 and tax.active_grants >= 1
    everything = usage.dataset_usage(world.ctx, user="erin")
    assert {u.dataset for u in everything} == set(world.ctx.catalog.datasets)
    with pytest.raises(AccessDenied):
        usage.dataset_usage(world.ctx, user="grace")
    with pytest.raises(AccessDenied):
        usage.dataset_usage(world.ctx, user="carol", dataset="taxi_trips")
    future = usage.dataset_usage(world.ctx, user="carol", since=utcnow() + timedelta(days=1))
    assert future[0].queries == 0


def test_audit_views_follow_the_matrix(world: World) -> None:
    everything = auditor.entries(world.ctx, user="erin", limit=500)
    assert everything.scope == "all" and everything.rows
    own = auditor.entries(world.ctx, user="grace", limit=500)
    assert own.rows and all("grace" in (r.actor, r.data.get("user")) for r in own.rows)
    steward = auditor.entries(world.ctx, user="carol", kind="application.", limit=500)
    assert steward.rows and all(r.kind.startswith("application.") for r in steward.rows)
    assert all(
        "tax_bureau" in r.data.get("departments", [r.data.get("department")])
        or "enterprise_tax" in r.data.get("datasets", [])
        for r in steward.rows
    )
    ent = auditor.entries(world.ctx, user="ent", limit=500)
    assert all(
        r.actor == "ent" or r.data.get("enterprise") == "ent" or r.data.get("user") == "ent" for r in ent.rows
    )
    page = auditor.entries(world.ctx, user="erin", limit=3)
    nxt = auditor.entries(world.ctx, user="erin", after=page.next_after or 0, limit=3)
    assert page.next_after is not None and nxt.rows[0].seq > page.rows[-1].seq
    status = auditor.chain_status(world.ctx, user="erin")
    assert status.ok and status.head_seq == status.count
    with pytest.raises(AccessDenied):
        auditor.chain_status(world.ctx, user="carol")


def test_an_extract_verifies_and_any_edit_is_found_at_its_entry(world: World) -> None:
    lines = list(auditor.extract_lines(world.ctx, user="admin"))
    entries = [chain.Entry.from_dict(json.loads(line)) for line in lines]
    result = chain.verify(entries)
    status = auditor.chain_status(world.ctx, user="admin")
    assert result.ok and (result.count, result.head) == (status.count, status.head_hash)
    edited = json.loads(lines[len(lines) // 2])
    edited["data"]["reason"] = "edited"
    entries[len(lines) // 2] = chain.Entry.from_dict(edited)
    broken = chain.verify(entries)
    assert not broken.ok and broken.first_bad == edited["seq"]
    with pytest.raises(AccessDenied):
        list(auditor.extract_lines(world.ctx, user="bob"))


def test_editing_any_audit_row_in_the_database_breaks_the_chain_there(world: World) -> None:
    with session_scope(world.ctx.control_engine) as s:
        seqs = list(s.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)))
    assert len(seqs) > 50
    for seq in seqs:
        with world.ctx.control_engine.begin() as conn:
            original = conn.execute(
                text("SELECT data FROM audit_log WHERE seq = :s"), {"s": seq}
            ).scalar_one()
            conn.execute(
                text("UPDATE audit_log SET data = :d WHERE seq = :s"),
                {"d": original.replace("}", ',"x":1}', 1) if original != "{}" else '{"x":1}', "s": seq},
            )
        with session_scope(world.ctx.control_engine) as s:
            result = audit_store.verify(s)
        with world.ctx.control_engine.begin() as conn:
            conn.execute(text("UPDATE audit_log SET data = :d WHERE seq = :s"), {"d": original, "s": seq})
        assert not result.ok and result.first_bad == seq, (seq, result)
    with session_scope(world.ctx.control_engine) as s:
        assert audit_store.verify(s).ok


def test_a_frozen_budget_refuses_queries_even_if_the_account_is_approved_again(world: World) -> None:
    make_user(world, "leak", organisation="Leaky analytics")
    with session_scope(world.ctx.control_engine, immediate=True) as s:
        registry.add_member(s, "fin-lab", "leak", actor="alice")
    sql = "SELECT credit_grade, COUNT(*) FROM enterprise_tax GROUP BY credit_grade"
    first = run_query(world.ctx, user="leak", project="fin-lab", sql=sql, epsilon="0.1")
    case = sanctions.report(
        world.ctx, reporter="bob", subject="leak", description="Shared raw extracts outside the lab."
    )
    sanctions.confirm(
        world.ctx, actor="admin", violation_id=case.id, reason="Confirmed.", services=world.services()
    )
    # an operator approves the account again by hand, without the appeal that lifts the freeze
    with session_scope(world.ctx.control_engine, immediate=True) as s:
        registry.set_status(s, "leak", "approved", actor="admin")
    for query in (sql, "SELECT COUNT(*) FROM enterprise_tax"):  # the cached release and a new one
        with pytest.raises(BudgetFrozen) as info:
            run_query(world.ctx, user="leak", project="fin-lab", sql=query, epsilon="0.1")
        assert info.value.code == "budget_frozen" and f"case {case.id}" in info.value.message
    with session_scope(world.ctx.control_engine) as s:
        rejected = s.scalars(select(AuditEntry).where(AuditEntry.kind == "query.rejected")).all()
        assert [e.payload()["code"] for e in rejected if e.actor == "leak"] == ["budget_frozen"] * 2
    # reinstatement on appeal lifts the freeze: the stored release comes back at zero cost
    sanctions.appeal(world.ctx, user="leak", violation_id=case.id, grounds="The extracts were open data.")
    sanctions.decide_appeal(
        world.ctx, actor="admin", violation_id=case.id, reinstate=True, reason="Open data."
    )
    again = run_query(world.ctx, user="leak", project="fin-lab", sql=sql, epsilon="0.1")
    assert again.cached and again.release_id == first.release_id

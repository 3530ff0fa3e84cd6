"""The governance flows through the real gateway ASGI app (the gateway's test authenticator).

1. application → approval (API, and in the steward's page) → agreement → DP query allowed
   → expiry → query refused;
2. authorisation → bank look-up allowed for that enterprise only → revocation → refused;
3. violation report → confirmation → the token is refused, the servers are stopped (fake hub),
   and the public disclosure page lists it without sign-in;
4. afterwards ``sandbox audit verify`` passes, and editing an audit row makes it fail there.

The tests share one sandbox and run in file order, as one story.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from test_governance_world import API, APPLICATION, PREFIX, Gateway, World, build_world, error_of
from typer.testing import CliRunner

import sandbox.access.rules as access_rules
from sandbox.cli.main import app as cli_app
from sandbox.control.models import utcnow

SQL = "SELECT credit_grade, COUNT(*) AS n FROM enterprise_tax GROUP BY credit_grade"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("gov-gateway"))
    yield w
    w.ctx.close()


@pytest.fixture(scope="module")
def gw(world: World) -> Gateway:
    return Gateway(world.app())


def call(gw: Gateway, world: World, user: str | None, method: str, path: str, **kw: Any) -> Any:
    return gw.request(method, path, world.headers(user) if user else None, **kw)


def query(gw: Gateway, world: World, user: str, project: str) -> Any:
    return call(gw, world, user, "POST", "query", json={"sql": SQL, "project": project, "epsilon": "0.1"})


# --------------------------------------------------------------------------- 1. applications


def test_application_approval_agreement_query_expiry(
    gw: Gateway, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    error_of(query(gw, world, "grace", "credit-lab"), 403, "no_grant")
    conditions = call(gw, world, "grace", "GET", "conditions").json()
    assert "enterprise_tax" in {c["dataset"] for c in conditions}

    body = {"project": "credit-lab", "datasets": ["enterprise_tax"], **APPLICATION}
    error_of(call(gw, world, "hugo", "POST", "applications", json=body), 403, "access_denied")  # not the lead
    submitted = call(gw, world, "grace", "POST", "applications", json=body)
    assert submitted.status_code == 201, submitted.text
    app_id = submitted.json()["id"]
    assert submitted.json()["datasets"][0]["status"] == "pending"

    decision = {"approve": True, "reason": "Meets the published conditions."}
    error_of(
        call(gw, world, "dave", "POST", f"applications/{app_id}/decisions", json=decision),
        403,
        "access_denied",
    )
    error_of(
        call(gw, world, "admin", "POST", f"applications/{app_id}/decisions", json=decision),
        403,
        "access_denied",
    )
    approved = call(gw, world, "carol", "POST", f"applications/{app_id}/decisions", json=decision)
    assert approved.status_code == 200, approved.text
    agreement = approved.json()["agreement"]
    assert approved.json()["status"] == "approved" and agreement["status"] == "active"
    assert agreement["document"]["budgets"]["enterprise_tax"]["per_project"]
    again = call(gw, world, "carol", "POST", f"applications/{app_id}/decisions", json=decision)
    error_of(again, 409, "invalid_transition")

    shown = call(gw, world, "grace", "GET", f"agreements/{agreement['id']}").json()
    assert shown["digest"] == agreement["digest"]

    released = query(gw, world, "grace", "credit-lab")
    assert released.status_code == 200, released.text
    assert released.json()["dataset"] == "enterprise_tax"

    term_end = datetime.fromisoformat(agreement["term_end"])
    monkeypatch.setattr(access_rules, "utcnow", lambda: term_end + timedelta(seconds=1))
    refused = error_of(query(gw, world, "grace", "credit-lab"), 403, "no_grant")
    assert "expired" in refused["message"]


def test_a_steward_approves_in_the_page(gw: Gateway, world: World) -> None:
    body = {"project": "mobility-lab", "datasets": ["taxi_trips"], **APPLICATION}
    app_id = call(gw, world, "frank", "POST", "applications", json=body).json()["id"]
    with_steward = "tim"
    page = gw.request("GET", f"{PREFIX}governance/applications/{app_id}", world.headers(with_steward))
    assert page.status_code == 200 and 'id="decide"' in page.text and "taxi_trips" in page.text
    assert "<script" not in page.text
    posted = gw.request(
        "POST",
        f"{PREFIX}governance/applications/{app_id}/decide",
        world.headers(with_steward),
        data={"decision": "approve", "reason": "Approved in the page."},
    )
    assert posted.status_code == 303
    assert posted.headers["location"] == f"{PREFIX}governance/applications/{app_id}"
    after = gw.request("GET", f"{PREFIX}governance/applications/{app_id}", world.headers(with_steward))
    assert '<span class="status" id="status">approved</span>' in after.text
    assert "Approved in the page." in after.text and "Data-use agreement" in after.text
    listing = gw.request("GET", f"{PREFIX}governance/applications", world.headers("erin"))
    assert listing.status_code == 200 and f">{app_id}</a>" in listing.text
    error_of(gw.request("GET", f"{PREFIX}governance/applications/{app_id}"), 401, "authentication_failed")


# --------------------------------------------------------------------------- 2. consent and look-up


def test_authorisation_lookup_revocation(gw: Gateway, world: World) -> None:
    lookup = {"dataset": "enterprise_tax", "uscc": world.uscc}
    error_of(call(gw, world, "bob", "POST", "lookup", json=lookup), 403, "consent_required")
    error_of(
        call(
            gw,
            world,
            "bob",
            "POST",
            "consents",
            json={"bank": "BANK_A", "datasets": ["enterprise_tax"], "days": 7},
        ),
        403,
        "access_denied",
    )
    granted = call(
        gw,
        world,
        "ent",
        "POST",
        "consents",
        json={"bank": "BANK_A", "datasets": ["enterprise_tax"], "days": 7},
    )
    assert granted.status_code == 201, granted.text
    consent_id = granted.json()["id"]

    found = call(gw, world, "bob", "POST", "lookup", json=lookup)
    assert found.status_code == 200, found.text
    rows, columns = found.json()["rows"], found.json()["columns"]
    assert "_rank" not in columns and rows
    assert {r[columns.index("uscc")] for r in rows} == {world.uscc}
    assert len(rows) == world.rows_of("enterprise_tax", world.uscc)

    error_of(
        call(gw, world, "bob", "POST", "lookup", json={**lookup, "uscc": world.other_uscc}),
        403,
        "consent_required",
    )
    error_of(call(gw, world, "bea", "POST", "lookup", json=lookup), 403, "consent_required")
    error_of(call(gw, world, "alice", "POST", "lookup", json=lookup), 403, "access_denied")

    log = call(gw, world, "ent", "GET", "consents/log").json()
    assert [e["kind"] for e in log if e["kind"] == "consent.used"] == ["consent.used"]
    assert any(e["kind"] == "lookup.refused" and e["actor"] == "bea" for e in log)

    revoked = call(
        gw, world, "ent", "POST", f"consents/{consent_id}/revoke", json={"reason": "Loan decided."}
    )
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    refused = error_of(call(gw, world, "bob", "POST", "lookup", json=lookup), 403, "consent_required")
    assert "revoked" in refused["message"]
    page = gw.request("GET", f"{PREFIX}governance/consents", world.headers("ent"))
    assert page.status_code == 200 and "consent.used" in page.text


# --------------------------------------------------------------------------- 3. sanctions


def test_violation_confirmation_refuses_the_token_and_publishes(gw: Gateway, world: World) -> None:
    assert call(gw, world, "hugo", "GET", "whoami").status_code == 200
    report = call(
        gw,
        world,
        "grace",
        "POST",
        "violations",
        json={
            "subject": "hugo",
            "description": "Copied released tables into a public repository.",
            "category": "beyond_scenario",
            "dataset": "enterprise_tax",
            "project": "credit-lab",
        },
    )
    assert report.status_code == 201, report.text
    case = report.json()["id"]
    error_of(
        call(gw, world, "carol", "POST", f"violations/{case}/confirm", json={"reason": "x"}),
        403,
        "access_denied",
    )

    page = gw.request("GET", f"{PREFIX}governance/violations/{case}", world.headers("admin"))
    assert page.status_code == 200 and 'id="decide"' in page.text
    posted = gw.request(
        "POST",
        f"{PREFIX}governance/violations/{case}/decide",
        world.headers("admin"),
        data={
            "decision": "confirm",
            "reason": "Repository found.",
            "summary": "Released tables republished.",
        },
    )
    assert posted.status_code == 303, posted.text

    error_of(call(gw, world, "hugo", "GET", "whoami"), 403, "account_inactive")
    error_of(query(gw, world, "hugo", "credit-lab"), 403, "account_inactive")
    assert "hugo" in world.stopper.calls
    shown = call(gw, world, "admin", "GET", f"violations/{case}").json()
    assert shown["status"] == "confirmed" and shown["actions"]["servers"]["status"] == "stopped"

    public = gw.request("GET", f"{PREFIX}disclosures")  # no sign-in
    assert public.status_code == 200 and "text/html" in public.headers["content-type"]
    assert "hugo" in public.text and "Released tables republished." in public.text
    listed = gw.request("GET", f"{API}disclosures").json()
    assert any(d["subject"] == "hugo" and d["status"] == "published" for d in listed)


# --------------------------------------------------------------------------- channels, usage, auditor


def test_channels_usage_and_auditor_over_http(gw: Gateway, world: World) -> None:
    demand = call(
        gw,
        world,
        "bob",
        "POST",
        "demands",
        json={
            "title": "Monthly VAT",
            "description": "Monthly rather than yearly VAT.",
            "dataset": "enterprise_tax",
        },
    )
    assert demand.status_code == 201 and demand.json()["department"] == "tax_bureau"
    answered = call(
        gw,
        world,
        "carol",
        "POST",
        f"requests/{demand.json()['id']}/response",
        json={"status": "answered", "response": "Planned for next year."},
    )
    assert answered.json()["status"] == "answered"
    correction = call(
        gw,
        world,
        "ent",
        "POST",
        "corrections",
        json={"dataset": "enterprise_tax", "description": "Our grade is wrong.", "columns": ["credit_grade"]},
    )
    assert correction.status_code == 201
    report = call(
        gw,
        world,
        "grace",
        "POST",
        "usage-reports",
        json={"project": "credit-lab", "papers": 1, "loans_supported": 3},
    )
    assert report.status_code == 201 and report.json()["papers"] == 1
    due = call(gw, world, "erin", "GET", "usage-reports/due").json()
    assert isinstance(due, list) and all("overdue" in d for d in due)

    usage = call(gw, world, "carol", "GET", "usage/datasets").json()
    assert [u["dataset"] for u in usage] == ["enterprise_tax"] and usage[0]["queries"] >= 1
    error_of(call(gw, world, "bob", "GET", "usage/datasets"), 403, "access_denied")
    for page in ("governance/", "governance/usage", "governance/requests", "governance/violations"):
        assert gw.request("GET", PREFIX + page, world.headers("carol")).status_code == 200, page

    status = call(gw, world, "erin", "GET", "audit/status").json()
    assert status["ok"] and status["head_hash"] == status["head_hash"].lower()
    entries = call(gw, world, "erin", "GET", "audit/entries", params={"kind": "consent.", "limit": 50}).json()
    assert entries["rows"] and all(r["kind"].startswith("consent.") for r in entries["rows"])
    mine = call(gw, world, "bob", "GET", "audit/entries", params={"limit": 500}).json()
    assert mine["scope"] != "all" and all("bob" in (r["actor"], r["data"].get("user")) for r in mine["rows"])
    error_of(call(gw, world, "bob", "GET", "audit/status"), 403, "access_denied")
    extract = call(gw, world, "erin", "GET", "audit/extract")
    assert extract.status_code == 200 and extract.headers["content-type"].startswith("application/x-ndjson")
    assert extract.text.count("\n") == status["count"] + 1  # ends with its own audit.extract_exported
    assert '"kind": "audit.extract_exported"' in extract.text.splitlines()[-1]
    status = call(gw, world, "erin", "GET", "audit/status").json()
    audit_page = gw.request(
        "GET", f"{PREFIX}governance/audit", world.headers("erin"), params={"kind": "violation."}
    )
    assert audit_page.status_code == 200 and status["head_hash"] in audit_page.text
    download = gw.request("GET", f"{PREFIX}governance/audit/extract", world.headers("erin"))
    assert download.status_code == 200 and download.text.count("\n") == status["count"] + 1


# --------------------------------------------------------------------------- 4. the chain afterwards


def test_audit_verify_passes_and_an_edited_row_fails_at_that_entry(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_CONTROL_DB_URL", world.settings.control_db_url)
    monkeypatch.setenv("SANDBOX_DATA_DIR", str(world.settings.data_dir))
    runner = CliRunner()
    ok = runner.invoke(cli_app, ["audit", "verify", "--json"])
    assert ok.exit_code == 0, ok.output
    assert '"ok": true' in ok.output
    with world.ctx.control_engine.begin() as conn:
        seq = conn.execute(
            text("SELECT seq FROM audit_log WHERE kind = 'violation.recorded' ORDER BY seq LIMIT 1")
        ).scalar_one()
        conn.execute(
            text(
                "UPDATE audit_log SET data = replace(data, 'Repository found.', 'Nothing found.') "
                "WHERE seq = :s"
            ),
            {"s": seq},
        )
    broken = runner.invoke(cli_app, ["audit", "verify"])
    assert broken.exit_code == 1
    assert f"broken at seq {seq}" in broken.output
    assert utcnow()  # the real clock was never patched here


def test_an_applicant_sees_the_committee_referral_of_a_restricted_dataset(gw: Gateway, world: World) -> None:
    body = {"project": "credit-lab", "datasets": ["sme_loans"], **APPLICATION}
    submitted = call(gw, world, "grace", "POST", "applications", json=body)
    assert submitted.status_code == 201, submitted.text
    (item,) = submitted.json()["datasets"]
    assert item["dataset"] == "sme_loans" and item["status"] == "pending"
    referral = item["committee"]
    assert referral["status"] == "open" and referral["opinion"] is None and referral["item_id"] > 0
    shown = call(gw, world, "grace", "GET", f"applications/{submitted.json()['id']}").json()
    assert shown["datasets"][0]["committee"] == referral

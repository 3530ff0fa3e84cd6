"""The export gate over the gateway API: dry run, submission, review, download, manifest (issue 5).

Through the real ASGI app with the gateway's ``StaticTokenAuthenticator``, on a real control DB
(demo accounts) and a small synthetic warehouse, both built by ``test_gateway.build_sandbox``.
DP tables come from real ``POST query`` releases. Stewards decide with
``sandbox.export.service.review`` (their pages have their own tests); two stewards of the pilot
bank are added for the restricted dataset ``sme_loans``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import test_gateway as tg  # sibling module: build_sandbox, SandboxEnv, Gateway
from sqlalchemy import func, select
from support.pdfs import rewrite, text_pdf

from sandbox.access import registry
from sandbox.control.db import session_scope
from sandbox.control.models import AuditEntry
from sandbox.errors import InvalidTransition
from sandbox.export import service
from sandbox.export.models import ExportRequest
from sandbox.export.quarantine import QuarantineStore
from sandbox.export.service import ExportContext

DATASETS = (*tg.DATASETS, "sme_loans")
TAX_SQL = "SELECT credit_grade, COUNT(*) AS n FROM enterprise_tax GROUP BY credit_grade"
LOANS_SQL = "SELECT product, COUNT(*) AS n FROM sme_loans GROUP BY product"
RESIDENT_ID = "11010519491231002X"  # REQUIREMENTS §7.6 vector: valid (合成/SYNTHETIC fixture)
PILOT_BANK_STEWARDS = ("penny", "percy")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tg.SandboxEnv]:
    sandbox_env = tg.build_sandbox(tmp_path_factory.mktemp("exports"), DATASETS)
    with session_scope(sandbox_env.ctx.control_engine, immediate=True) as session:
        for name in PILOT_BANK_STEWARDS:
            registry.create_user(session, name, "steward", department="pilot_bank", actor="admin")
    yield sandbox_env
    sandbox_env.ctx.close()


@pytest.fixture(scope="module")
def gw(env: tg.SandboxEnv) -> tg.Gateway:
    return tg.Gateway(env.app())


@pytest.fixture(scope="module")
def gate(env: tg.SandboxEnv) -> ExportContext:
    """The export service on the gateway's own control DB and quarantine (for stewards' decisions)."""
    return ExportContext(
        catalog=env.ctx.catalog,
        control_engine=env.ctx.control_engine,
        quarantine=QuarantineStore(env.settings.quarantine_dir),
    )


@pytest.fixture(scope="module")
def tax(gw: tg.Gateway, env: tg.SandboxEnv) -> dict[str, Any]:
    return _release(gw, env, TAX_SQL, "0.5")


@pytest.fixture(scope="module")
def loans(gw: tg.Gateway, env: tg.SandboxEnv) -> dict[str, Any]:
    return _release(gw, env, LOANS_SQL, "0.5")


def _release(gw: tg.Gateway, env: tg.SandboxEnv, sql: str, epsilon: str) -> dict[str, Any]:
    response = gw.request(
        "POST", "query", env.headers("alice"), json={"sql": sql, "epsilon": epsilon, "project": "fin-lab"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _csv(*releases: dict[str, Any], reverse: bool = False) -> bytes:
    """Releases as one CSV table (label, n), values exactly as released (what ``df.to_csv`` writes)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["group", "n"])
    rows = [row for rel in releases for row in rel["rows"]]
    for label, value in reversed(rows) if reverse else rows:
        writer.writerow([label, value])
    return buf.getvalue().encode("utf-8")


def _form(datasets: list[str] | None, **extra: str) -> dict[str, str]:
    form = {"project": "fin-lab", **extra}
    if datasets:
        form["datasets"] = ",".join(datasets)
    return form


def _submit(
    gw: tg.Gateway,
    env: tg.SandboxEnv,
    name: str,
    data: bytes,
    datasets: list[str] | None,
    user: str = "alice",
) -> dict[str, Any]:
    response = gw.request(
        "POST",
        "exports",
        env.headers(user),
        data=_form(datasets, purpose=f"paper: {name}"),
        files={"file": (name, data, "text/csv")},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _dry_run(
    gw: tg.Gateway,
    env: tg.SandboxEnv,
    name: str,
    data: bytes,
    datasets: list[str] | None,
    user: str = "alice",
) -> httpx.Response:
    return gw.request(
        "POST",
        "exports/check",
        env.headers(user),
        data=_form(datasets),
        files={"file": (name, data, "text/csv")},
    )


def _verdicts(checks: list[dict[str, str]], key: str = "check") -> dict[str, str]:
    return {c[key]: c["verdict"] for c in checks}


def _stored(env: tg.SandboxEnv) -> tuple[list[str], int, int]:
    """Quarantine files, export requests, audit entries."""
    root = env.settings.quarantine_dir
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []
    with session_scope(env.ctx.control_engine) as session:
        exports = session.scalar(select(func.count()).select_from(ExportRequest)) or 0
        audit = session.scalar(select(func.count()).select_from(AuditEntry)) or 0
    return files, exports, audit


def _download(gw: tg.Gateway, env: tg.SandboxEnv, export_id: int, user: str = "alice") -> httpx.Response:
    return gw.request("GET", f"exports/{export_id}/download", env.headers(user))


# --------------------------------------------------------------------------- dry run


def test_dry_run_gives_the_checks_of_a_submission_and_stores_no_file(
    gw: tg.Gateway, env: tg.SandboxEnv, tax: dict[str, Any]
) -> None:
    gw.request("GET", "whoami", env.headers("alice"))  # the first sight of a token is audited (login)
    before = _stored(env)
    good = _dry_run(gw, env, f"release-{tax['release_id']}.csv", _csv(tax), ["enterprise_tax"])
    assert good.status_code == 200, good.text
    body = good.json()
    assert set(body["checks"][0]) == {"name", "verdict", "reason"}
    assert _verdicts(body["checks"], "name")["provenance"] == "pass"
    assert body["verdict"] == "pass" and body["outcome"] == "under_review"
    assert body["tier"] == "conditional" and body["reviewers_required"] == 1
    assert body["release_ids"] == [tax["release_id"]] and body["departments"] == ["tax_bureau"]
    bad = _dry_run(gw, env, "contacts.csv", f"credit_grade,contact\nA,{RESIDENT_ID}\n".encode(), None)
    assert bad.status_code == 200, bad.text
    assert bad.json()["verdict"] == "fail" and bad.json()["outcome"] == "rejected"
    assert _verdicts(bad.json()["checks"], "name")["identifiers"] == "fail"
    assert RESIDENT_ID not in bad.text  # reasons mask identifiers
    tg._error(_dry_run(gw, env, "tool.exe", b"MZ\x90\x00", None), 400, "export_invalid")
    files, exports, audit = _stored(env)
    assert (files, exports) == before[:2]  # no quarantine file, no request
    assert audit == before[2] + 3  # but each dry run is in the audit log, without contents
    with session_scope(env.ctx.control_engine) as session:
        entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(3)))
    refused, rejected, passed = (e.payload() for e in entries)
    assert [e.kind for e in entries] == ["export.refused", "export.dry_run", "export.dry_run"]
    assert all(e.actor == "alice" for e in entries)
    assert passed["sha256"] == body["sha256"] and passed["verdict"] == "pass"
    assert passed["outcome"] == "under_review" and passed["verdicts"]["provenance"] == "pass"
    assert passed["datasets"] == ["enterprise_tax"] and passed["extension"] == ".csv"
    assert rejected["verdict"] == "fail" and rejected["verdicts"]["identifiers"] == "fail"
    assert refused["dry_run"] is True and refused["code"] == "export_invalid"
    assert RESIDENT_ID not in json.dumps([passed, rejected, refused])

    submitted = _submit(gw, env, f"release-{tax['release_id']}.csv", _csv(tax), ["enterprise_tax"])
    assert submitted["checks"] == [
        {"check": c["name"], "verdict": c["verdict"], "reason": c["reason"]} for c in body["checks"]
    ]
    assert submitted["status"] == body["outcome"] and submitted["sha256"] == body["sha256"]


def test_dry_run_is_for_the_people_who_may_submit(gw: tg.Gateway, env: tg.SandboxEnv) -> None:
    data = b"credit_grade,n\nA,1200\n"
    tg._error(_dry_run(gw, env, "t.csv", data, None, user="frank"), 403, "not_project_member")
    tg._error(_dry_run(gw, env, "t.csv", data, None, user="carol"), 403, "access_denied")
    tg._error(_dry_run(gw, env, "t.csv", data, ["hotel_stays"]), 403, "access_denied")
    tg._error(_dry_run(gw, env, "t.csv", data, None, user="mallory"), 403, "account_inactive")
    tg._error(
        gw.request("POST", "exports/check", env.headers("alice"), data=_form(None)), 400, "invalid_request"
    )


# --------------------------------------------------------------------------- submission


def test_dp_table_passes_and_identifiers_or_extracts_fail(
    gw: tg.Gateway, env: tg.SandboxEnv, tax: dict[str, Any]
) -> None:
    dp = _submit(gw, env, "table2.csv", _csv(tax, reverse=True), ["enterprise_tax"])
    assert _verdicts(dp["checks"])["provenance"] == "pass", dp["checks"]
    assert dp["status"] == "under_review" and dp["release_ids"] == [tax["release_id"]]

    ids = _submit(gw, env, "contacts.csv", f"credit_grade,contact\nA,{RESIDENT_ID}\n".encode(), None)
    assert ids["status"] == "rejected" and _verdicts(ids["checks"])["identifiers"] == "fail"
    assert "identifiers" in ids["decision_reason"]

    lines = ["uscc,tax_year,credit_grade,vat_paid_wan,cit_paid_wan"]
    lines += [f"U{n:05d},2018,{'ABMCD'[n % 5]},{100 + 7 * n}.5,{20 + n}.25" for n in range(40)]
    extract = _submit(gw, env, "extract.csv", ("\n".join(lines) + "\n").encode(), ["enterprise_tax"])
    assert extract["status"] == "rejected", extract["checks"]
    assert _verdicts(extract["checks"])["row_level"] == "fail"
    assert extract["tier"] == "conditional"


def test_pdf_of_released_values_traces_and_an_encrypted_pdf_is_rejected_not_an_error(
    gw: tg.Gateway, env: tg.SandboxEnv, tax: dict[str, Any]
) -> None:
    lines = ["Table 3. Credit grades", "| credit_grade | n |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in tax["rows"]]
    paper = text_pdf([lines])
    dp = _submit(gw, env, "paper.pdf", paper, ["enterprise_tax"])
    verdicts = _verdicts(dp["checks"])
    assert verdicts["provenance"] == "pass" and verdicts["identifiers"] == "pass", dp["checks"]
    assert verdicts["human_review"] == "warn"
    assert dp["status"] == "under_review" and dp["release_ids"] == [tax["release_id"]]

    locked = _submit(gw, env, "locked.pdf", rewrite(paper, password="s3cret"), ["enterprise_tax"])
    assert locked["status"] == "rejected" and _verdicts(locked["checks"])["file_type"] == "fail"
    assert "file_type" in locked["decision_reason"]


# --------------------------------------------------------------------------- review, release


def test_restricted_export_is_released_only_after_two_different_stewards(
    gw: tg.Gateway, env: tg.SandboxEnv, gate: ExportContext, loans: dict[str, Any]
) -> None:
    data = _csv(loans)
    req = _submit(gw, env, f"release-{loans['release_id']}.csv", data, ["sme_loans"])
    assert req["status"] == "under_review", req["checks"]
    assert req["tier"] == "restricted" and req["reviewers_required"] == 2
    with pytest.raises(InvalidTransition, match="requester"):
        service.review(gate, export_id=req["id"], reviewer="alice", approve=True, reason="mine")
    with pytest.raises(InvalidTransition):
        service.review(gate, export_id=req["id"], reviewer="carol", approve=True, reason="not my department")
    first = service.review(gate, export_id=req["id"], reviewer="penny", approve=True, reason="DP counts")
    assert first.status == "under_review"
    tg._error(_download(gw, env, req["id"]), 409, "invalid_transition")
    with pytest.raises(InvalidTransition, match="already reviewed"):
        service.review(gate, export_id=req["id"], reviewer="penny", approve=True, reason="again")
    second = service.review(gate, export_id=req["id"], reviewer="percy", approve=True, reason="agreed")
    assert second.status == "approved"
    got = _download(gw, env, req["id"])
    assert got.status_code == 200, got.text
    assert got.content == data
    assert got.headers["x-export-sha256"] == hashlib.sha256(data).hexdigest() == req["sha256"]
    assert got.headers["x-export-status"] == "released"
    status = gw.request("GET", f"exports/{req['id']}", env.headers("alice")).json()
    assert status["status"] == "released"
    assert [r["reviewer"] for r in status["reviews"]] == ["penny", "percy"]


def test_download_goes_to_the_project_and_only_for_approved_files(
    gw: tg.Gateway, env: tg.SandboxEnv, gate: ExportContext, tax: dict[str, Any]
) -> None:
    data = b"\xef\xbb\xbf" + _csv(tax)  # a BOM: another file than the other tests'
    approved = _submit(gw, env, "表2 counts.csv", data, ["enterprise_tax"])
    rejected = _submit(gw, env, "partial.csv", _csv(tax).replace(b"\n", b"\r\n"), ["enterprise_tax"])
    withdrawn = _submit(gw, env, "draft.csv", _csv(tax, reverse=True) + b"\n", ["enterprise_tax"])
    service.review(gate, export_id=approved["id"], reviewer="carol", approve=True, reason="DP only")
    assert rejected["status"] == "under_review", rejected["checks"]
    service.review(gate, export_id=rejected["id"], reviewer="carol", approve=False, reason="partial")
    service.withdraw(gate, export_id=withdrawn["id"], user="alice")

    tg._error(_download(gw, env, approved["id"], user="frank"), 403, "access_denied")  # not in fin-lab
    tg._error(_download(gw, env, approved["id"], user="carol"), 403, "access_denied")  # its steward
    got = _download(gw, env, approved["id"])
    assert got.status_code == 200, got.text
    assert got.content == data
    assert got.headers["content-type"] == "application/octet-stream"
    assert "attachment" in got.headers["content-disposition"]
    assert "UTF-8''%E8%A1%A82%20counts.csv" in got.headers["content-disposition"]
    again = _download(gw, env, approved["id"], user="bob")  # a project member, after the release
    assert again.status_code == 200 and again.content == data

    err = tg._error(_download(gw, env, rejected["id"]), 409, "invalid_transition")
    assert "rejected" in err["message"]
    err = tg._error(_download(gw, env, withdrawn["id"]), 409, "invalid_transition")
    assert "withdrawn" in err["message"]
    tg._error(_download(gw, env, 999_999), 404, "not_found")
    tg._error(gw.request("GET", f"exports/{rejected['id']}/manifest", env.headers("alice")), 404, "not_found")


def test_manifest_cites_every_source(
    gw: tg.Gateway,
    env: tg.SandboxEnv,
    gate: ExportContext,
    tax: dict[str, Any],
    loans: dict[str, Any],
) -> None:
    data = _csv(tax, loans)
    req = _submit(gw, env, "combined.csv", data, ["enterprise_tax", "sme_loans"])
    assert req["status"] == "under_review", req["checks"]
    assert sorted(req["release_ids"]) == sorted([tax["release_id"], loans["release_id"]])
    service.review(gate, export_id=req["id"], reviewer="carol", approve=True, reason="tax figures fine")
    service.review(gate, export_id=req["id"], reviewer="percy", approve=True, reason="loan figures fine")
    manifest_path = f"exports/{req['id']}/manifest"
    err = tg._error(gw.request("GET", manifest_path, env.headers("alice")), 404, "not_found")
    assert "approved" in err["message"]
    assert _download(gw, env, req["id"]).status_code == 200
    tg._error(gw.request("GET", manifest_path, env.headers("frank")), 403, "access_denied")

    response = gw.request("GET", manifest_path, env.headers("bob"))
    assert response.status_code == 200, response.text
    m = response.json()
    catalog = env.ctx.catalog
    departments = catalog.platform.departments
    assert m["export_id"] == req["id"] and m["project"] == "fin-lab" and m["requester"] == "alice"
    assert m["file"] == {
        "name": "combined.csv",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }
    assert m["platform"]["zh"] == catalog.platform.name.zh
    by_dataset = {s["dataset"]: s for s in m["sources"]}
    assert set(by_dataset) == {"enterprise_tax", "sme_loans"}
    for ds_id, rel in (("enterprise_tax", tax), ("sme_loans", loans)):
        ds = catalog.dataset(ds_id)
        source = by_dataset[ds_id]
        assert source["name"] == {"zh": ds.name.zh, "en": ds.name.en}
        assert source["tier"] == ds.tier.value
        assert [p["id"] for p in source["providers"]] == list(ds.provider)
        assert [p["zh"] for p in source["providers"]] == [departments[p].name.zh for p in ds.provider]
        assert source["release_ids"] == [rel["release_id"]] and source["retrieved"]
    releases = {r["release_id"]: r for r in m["releases"]}
    assert releases[tax["release_id"]]["epsilon"] == tax["epsilon_spent"] == "0.5"
    assert releases[loans["release_id"]]["dataset"] == "sme_loans"
    assert m["epsilon_by_dataset"] == {"enterprise_tax": "0.5", "sme_loans": "0.5"}
    assert [(r["reviewer"], r["department"], r["decision"]) for r in m["reviewers"]] == [
        ("carol", "tax_bureau", "approve"),
        ("percy", "pilot_bank", "approve"),
    ]
    assert {c["name"] for c in m["checks"]} >= {"identifiers", "provenance", "row_level"}
    assert len(m["citation"]) == 2
    for ds_id, rel in (("enterprise_tax", tax), ("sme_loans", loans)):
        ds = catalog.dataset(ds_id)
        cite = next(c for c in m["citation"] if ds.name.zh in c)
        assert departments[ds.provider[0]].name.zh in cite
        assert rel["release_id"] in cite and "获取日期" in cite
    assert m == service.download(gate, export_id=req["id"], user="alice").manifest  # what the CLI writes


def test_a_quarantined_file_altered_after_submission_is_never_released(
    gw: tg.Gateway, env: tg.SandboxEnv, gate: ExportContext, tax: dict[str, Any]
) -> None:
    data = _csv(tax).replace(b"group,n", b"grade,n")
    req = _submit(gw, env, "figure3.csv", data, ["enterprise_tax"])
    service.review(gate, export_id=req["id"], reviewer="carol", approve=True, reason="fine")
    path: Path = gate.quarantine.path_for(req["sha256"])
    os.chmod(path, 0o644)
    path.write_bytes(data.replace(b"grade,n", b"grade,n\nX,3"))
    response = _download(gw, env, req["id"])
    err = tg._error(response, 500, "internal_error")
    assert response.headers["x-request-id"] in err["message"]
    assert b"X,3" not in response.content
    status = gw.request("GET", f"exports/{req['id']}", env.headers("alice")).json()
    assert status["status"] == "approved"  # not released


def test_openapi_documents_the_export_routes(gw: tg.Gateway) -> None:
    paths = gw.request("GET", "openapi.json").json()["paths"]
    download = paths[f"{tg.API}exports/{{export_id}}/download"]["get"]["responses"]
    assert set(download["200"]["content"]) == {"application/octet-stream"}
    assert "409" in download
    assert f"{tg.API}exports/{{export_id}}/manifest" in paths
    assert "post" in paths[f"{tg.API}exports/check"]

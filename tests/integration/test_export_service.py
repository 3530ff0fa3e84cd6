"""Export service on a migrated SQLite control DB with the real policies and quarantine."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from support.pdfs import rewrite, text_pdf

from sandbox.access import registry
from sandbox.audit import store as audit_store
from sandbox.config import Settings
from sandbox.control.db import migrate, session_scope
from sandbox.control.models import AuditEntry
from sandbox.errors import AccessDenied, ExportRejected, InternalError, InvalidTransition, NotProjectMember
from sandbox.export import service
from sandbox.export.service import ExportContext
from sandbox.export.states import ExportStatus
from sandbox.ledger import store as ledger

REPO = Path(__file__).resolve().parents[2]

GOOD_CSV = b"district_code,count\n310101,1523\n310104,2210\n"
RESULT = {
    "columns": ["district_code", "count"],
    "key_columns": ["district_code"],
    "rows": [["310101", 1523.4], ["310104", 2210.1]],
    "ci95": [[None, 39.2], [None, 39.2]],
}


def seed(ctx: ExportContext) -> str:
    """alice and bob in fin-lab (enterprise_tax, social_insurance, venues granted); carol outside;
    stewards of tax, hr, housing fund, health; an auditor. Returns the release id of one DP release."""
    with session_scope(ctx.control_engine, immediate=True) as s:
        for name in ("alice", "bob", "carol"):
            registry.create_user(s, name, "researcher", actor=None)
        for name, dept in (
            ("tess", "tax_bureau"),
            ("tom", "tax_bureau"),
            ("hana", "hr_social_security"),
            ("hugo", "housing_fund"),
            ("hedy", "health_commission"),
            ("sam", "shenkang"),
            ("cleo", "culture_tourism"),
        ):
            registry.create_user(s, name, "steward", department=dept, actor=None)
        registry.create_user(s, "audrey", "auditor", actor=None)
        registry.create_user(s, "adam", "admin", actor=None)
        registry.create_project(s, "fin-lab", title="Finance lab", lead="alice", actor=None)
        registry.add_member(s, "fin-lab", "alice", actor=None)
        registry.add_member(s, "fin-lab", "bob", actor=None)
        for ds in ("enterprise_tax", "social_insurance", "outpatient_visits"):
            registry.grant_dataset(s, "fin-lab", ds, actor=None)
        alice = registry.get_user(s, "alice")
        project = registry.get_project(s, "fin-lab")
        party = ledger.Party(alice.id, "alice", project.id, "fin-lab")
    budgets = ctx.catalog.budgets("enterprise_tax")
    res = ledger.reserve(
        ctx.control_engine,
        party,
        dataset="enterprise_tax",
        budgets=budgets,
        fingerprint="f" * 64,
        epsilon=Decimal("0.5"),
        charge=Decimal("0.5"),
    )
    ledger.commit(ctx.control_engine, res, RESULT)
    return res.release_id


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[ExportContext]:
    url = f"sqlite:///{tmp_path / 'control.sqlite'}"
    migrate(url)
    settings = Settings(data_dir=tmp_path, policy_dir=REPO / "policies", control_db_url_override=url)
    context = ExportContext.from_settings(settings)
    context.release_id = seed(context)  # type: ignore[attr-defined]
    yield context
    context.close()


def kinds(ctx: ExportContext) -> list[str]:
    with session_scope(ctx.control_engine) as s:
        assert audit_store.verify(s).ok
        return list(s.scalars(select(AuditEntry.kind).order_by(AuditEntry.seq)))


def submit(
    ctx: ExportContext, data: bytes = GOOD_CSV, name: str = "t.csv", **kw: object
) -> service.ExportRecord:
    args: dict[str, object] = {"user": "alice", "project": "fin-lab", "purpose": "paper fig 1", **kw}
    return service.submit(ctx, filename=name, data=data, **args)  # type: ignore[arg-type]


def test_submit_quarantines_checks_and_waits_for_review(ctx: ExportContext) -> None:
    rec = submit(ctx, datasets=["enterprise_tax"])
    assert rec.status == ExportStatus.UNDER_REVIEW
    assert rec.departments == ["tax_bureau"] and rec.reviewers_required == 1
    assert rec.release_ids == [ctx.release_id]  # type: ignore[attr-defined]
    stored = ctx.quarantine.path_for(rec.sha256)
    assert stored.read_bytes() == GOOD_CSV
    assert not os.stat(stored).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert rec.to_dict().keys() == {"id", "status", "checks", "sha256"}
    assert kinds(ctx)[-2:] == ["export.submitted", "export.checked"]


def test_failing_checks_reject_at_once(ctx: ExportContext) -> None:
    rec = submit(ctx, data=b"name,phone\nx,13800138000\n", datasets=["enterprise_tax"])
    assert rec.status == ExportStatus.REJECTED
    assert "identifiers" in (rec.decision_reason or "")


def test_steward_of_the_department_approves_and_member_downloads_with_manifest(ctx: ExportContext) -> None:
    rec = submit(ctx, datasets=["enterprise_tax"])
    with pytest.raises(InvalidTransition, match="acting as someone with no role"):
        service.review(ctx, export_id=rec.id, reviewer="hedy", approve=True, reason="ok")  # wrong department
    with pytest.raises(InvalidTransition, match="you are acting as requester"):
        service.review(ctx, export_id=rec.id, reviewer="alice", approve=True, reason="mine")
    with pytest.raises(AccessDenied, match="Auditors read"):
        service.review(ctx, export_id=rec.id, reviewer="audrey", approve=True, reason="ok")
    rec = service.review(ctx, export_id=rec.id, reviewer="tess", approve=True, reason="aggregates only")
    assert rec.status == ExportStatus.APPROVED
    with pytest.raises(AccessDenied, match="only to members"):
        service.download(ctx, export_id=rec.id, user="carol")
    got = service.download(ctx, export_id=rec.id, user="bob")
    assert got.data == GOOD_CSV and got.record.status == ExportStatus.RELEASED
    m = got.manifest
    assert m["file"]["sha256"] == rec.sha256
    assert m["sources"][0]["name"]["zh"] and m["sources"][0]["providers"][0]["id"] == "tax_bureau"
    assert m["releases"][0]["epsilon"] == "0.5"
    assert m["reviewers"][0]["reviewer"] == "tess"
    assert "获取日期" in m["citation"][0] and ctx.release_id in m["citation"][0]  # type: ignore[attr-defined]
    again = service.download(ctx, export_id=rec.id, user="alice")
    assert again.manifest == m
    assert kinds(ctx)[-3:] == ["export.decided", "export.released", "export.downloaded"]


def test_every_provider_department_must_approve(ctx: ExportContext) -> None:
    rec = submit(ctx, datasets=["social_insurance"])
    assert rec.departments == ["housing_fund", "hr_social_security"]
    rec = service.review(ctx, export_id=rec.id, reviewer="hana", approve=True, reason="ok")
    assert rec.status == ExportStatus.UNDER_REVIEW
    rec = service.review(ctx, export_id=rec.id, reviewer="hugo", approve=True, reason="ok")
    assert rec.status == ExportStatus.APPROVED


def test_restricted_needs_two_different_stewards(ctx: ExportContext) -> None:
    data = "dept,visits\n内科,4000\n".encode()
    rec = submit(ctx, data=data, datasets=["outpatient_visits"])
    # untraced numbers from restricted data fail provenance: rejected
    assert rec.status == ExportStatus.REJECTED
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
    rec = submit(ctx, data=png, name="fig.png", datasets=["outpatient_visits"])
    assert rec.status == ExportStatus.UNDER_REVIEW and rec.reviewers_required == 2
    rec = service.review(ctx, export_id=rec.id, reviewer="hedy", approve=True, reason="figure is DP")
    with pytest.raises(InvalidTransition, match="already reviewed"):
        service.review(ctx, export_id=rec.id, reviewer="hedy", approve=True, reason="again")
    assert rec.status == ExportStatus.UNDER_REVIEW
    rec = service.review(ctx, export_id=rec.id, reviewer="sam", approve=True, reason="agree")
    assert rec.status == ExportStatus.APPROVED


def test_one_rejection_rejects_and_keeps_the_reason(ctx: ExportContext) -> None:
    rec = submit(ctx, datasets=["enterprise_tax"])
    rec = service.review(ctx, export_id=rec.id, reviewer="tom", approve=False, reason="too detailed")
    assert rec.status == ExportStatus.REJECTED and rec.decision_reason == "too detailed"
    with pytest.raises(InvalidTransition, match="final"):
        service.download(ctx, export_id=rec.id, user="alice")


def test_open_data_with_clean_checks_is_auto_approved(ctx: ExportContext) -> None:
    rec = submit(ctx, data=b"district_code,venues\n310101,3\n", datasets=["venues"])
    assert rec.status == ExportStatus.APPROVED and rec.reviewers_required == 0


def test_who_may_submit_and_see(ctx: ExportContext) -> None:
    with pytest.raises(NotProjectMember):
        submit(ctx, user="carol")
    with pytest.raises(AccessDenied, match="cannot request exports"):
        submit(ctx, user="tess")
    with pytest.raises(ExportRejected, match="needs a purpose"):
        submit(ctx, purpose="  ")
    with pytest.raises(AccessDenied, match="no grant"):
        submit(ctx, datasets=["hotel_stays"])
    rec = submit(ctx, datasets=["enterprise_tax"])
    assert service.show(ctx, export_id=rec.id, user="audrey").id == rec.id
    assert service.show(ctx, export_id=rec.id, user="bob").id == rec.id
    with pytest.raises(AccessDenied):
        service.show(ctx, export_id=rec.id, user="carol")
    with pytest.raises(AccessDenied):
        service.show(ctx, export_id=rec.id, user="hedy")


def test_refused_files_are_audited_and_not_stored(ctx: ExportContext) -> None:
    with pytest.raises(ExportRejected, match=r"does not accept \.exe"):
        submit(ctx, data=b"MZ", name="tool.exe")
    assert kinds(ctx)[-1] == "export.refused"
    assert not any(ctx.quarantine.root.rglob("*")) if ctx.quarantine.root.exists() else True


def test_pdf_text_is_checked_at_submission(ctx: ExportContext) -> None:
    table = ["Table 2", "| district_code | count |", "|---|---|", "| 310101 | 1523 |", "| 310104 | 2210 |"]
    paper = text_pdf([table])
    rec = submit(ctx, data=paper, name="paper.pdf", datasets=["enterprise_tax"])
    verdicts = {c.name: c.verdict.value for c in rec.checks}
    assert verdicts["identifiers"] == "pass" and verdicts["provenance"] == "pass"
    assert verdicts["human_review"] == "warn"  # the figures still need a steward
    assert rec.status == ExportStatus.UNDER_REVIEW
    assert rec.release_ids == [ctx.release_id]  # type: ignore[attr-defined]
    assert ctx.quarantine.path_for(rec.sha256).read_bytes() == paper

    leaked = submit(ctx, data=text_pdf([table, ["Contact: 11010519491231002X"]]), name="p.pdf")
    assert leaked.status == ExportStatus.REJECTED
    assert "identifiers" in (leaked.decision_reason or "")
    assert "11010519491231002X" not in json.dumps(leaked.detail(), ensure_ascii=False)

    locked = submit(ctx, data=rewrite(paper, password="s3cret"), name="locked.pdf")
    assert locked.status == ExportStatus.REJECTED
    assert "file_type" in (locked.decision_reason or "")
    file_type = next(c for c in locked.checks if c.name == "file_type")
    assert "encrypted" in file_type.reason and "without a password" in file_type.reason
    assert kinds(ctx)[-2:] == ["export.submitted", "export.checked"]


def test_tampered_quarantine_file_is_refused_at_release(ctx: ExportContext) -> None:
    rec = submit(ctx, datasets=["enterprise_tax"])
    service.review(ctx, export_id=rec.id, reviewer="tess", approve=True, reason="ok")
    path = ctx.quarantine.path_for(rec.sha256)
    os.chmod(path, 0o644)
    path.write_bytes(b"district_code,count\n310101,1\n")
    with pytest.raises(InternalError, match="no longer matches"):
        service.download(ctx, export_id=rec.id, user="alice")
    assert service.show(ctx, export_id=rec.id, user="alice").status == ExportStatus.APPROVED


def test_withdraw(ctx: ExportContext) -> None:
    rec = submit(ctx, datasets=["enterprise_tax"])
    with pytest.raises(InvalidTransition):
        service.withdraw(ctx, export_id=rec.id, user="tess")
    rec = service.withdraw(ctx, export_id=rec.id, user="alice")
    assert rec.status == ExportStatus.WITHDRAWN
    assert kinds(ctx)[-1] == "export.withdrawn"


def test_default_lineage_is_the_projects_grants(ctx: ExportContext) -> None:
    rec = submit(ctx)
    assert rec.datasets == ["enterprise_tax", "outpatient_visits", "social_insurance"]
    assert rec.reviewers_required == 2
    assert json.loads(json.dumps(rec.detail()))["tier"] == "restricted"

"""Per-dataset usage for providers (SR-29): queries, epsilon used, exports, look-ups.

Built from the ledger (``releases``: every charge, exact decimal strings) and the audit
chain (refused queries, cache hits, look-ups) and, when the export gate is installed, its
requests. Stewards see the datasets of their department ("Read audit logs": own datasets);
admins and auditors see every dataset. Epsilon sums are exact (``sandbox.ledger.values``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.audit.store import format_ts
from sandbox.control.models import AuditEntry, Grant, Project
from sandbox.errors import AccessDenied
from sandbox.governance.common import GovContext, account, now_or, reading
from sandbox.governance.models import Agreement, AgreementStatus, load
from sandbox.governance.permissions import Action, Scope, check_scopes
from sandbox.ledger.models import Release
from sandbox.ledger.values import ReleaseStatus, exact_sum, format_amount

_AUDIT_COUNTS = {"query.rejected": "rejected", "query.cache_hit": "cache_hits", "consent.used": "lookups"}


@dataclass
class DatasetUsage:
    dataset: str
    name: str
    providers: list[str]
    queries: int = 0  # committed DP releases
    failed: int = 0  # charged but failed after reservation (or abandoned: its process died)
    rejected: int = 0  # refused before any charge (audit)
    cache_hits: int = 0  # identical repeats answered at no cost (audit)
    lookups: int = 0  # record look-ups under enterprise authorisations (audit)
    epsilon: Decimal = Decimal(0)  # everything charged: reserved, committed, failed, abandoned
    projects: dict[str, dict[str, Any]] = field(default_factory=dict)
    exports: dict[str, int] = field(default_factory=dict)  # export requests by status
    active_grants: int = 0
    agreements_in_force: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "name": self.name,
            "providers": self.providers,
            "queries": self.queries,
            "failed": self.failed,
            "rejected": self.rejected,
            "cache_hits": self.cache_hits,
            "lookups": self.lookups,
            "epsilon": format_amount(self.epsilon),
            "projects": self.projects,
            "exports": self.exports,
            "active_grants": self.active_grants,
            "agreements_in_force": self.agreements_in_force,
        }


def _visible_datasets(ctx: GovContext, session: Session, user: str) -> list[str]:
    viewer = account(session, user)
    allowed = check_scopes(viewer, Action.READ_AUDIT)
    if Scope.ANY in allowed:
        return list(ctx.catalog.datasets)
    if Scope.OWN_DATA in allowed and viewer.department:
        return [d for d, ds in ctx.catalog.datasets.items() if viewer.department in ds.provider]
    raise AccessDenied(
        "Per-dataset usage is for the datasets' providers, the operator and supervisors.",
        hint="Your own queries and budget are in sb.budget() / `sandbox budget`.",
    )


def _export_counts(session: Session, datasets: set[str], since: datetime | None) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = defaultdict(Counter)
    try:
        from sandbox.export.models import ExportRequest
    except ImportError:  # export gate not installed
        return out
    query = select(ExportRequest.datasets, ExportRequest.status, ExportRequest.created_at)
    for names, status, created in session.execute(query):
        if since is not None and created < since:
            continue
        for ds in load(names) or []:
            if ds in datasets:
                out[ds][str(status)] += 1
    return out


def dataset_usage(
    ctx: GovContext, *, user: str, dataset: str | None = None, since: datetime | None = None
) -> list[DatasetUsage]:
    """Usage of each dataset ``user`` may see (or of ``dataset``), optionally since a moment."""
    now = now_or(None)
    with reading(ctx) as session:
        visible = _visible_datasets(ctx, session, user)
        if dataset is not None:
            ctx.catalog.dataset(dataset)  # UnknownDataset
            if dataset not in visible:
                raise AccessDenied(
                    f"Usage of {dataset!r} is for its providers, the operator and supervisors."
                )
            visible = [dataset]
        wanted = set(visible)
        usage = {
            d: DatasetUsage(d, ctx.catalog.dataset(d).name.zh, list(ctx.catalog.dataset(d).provider))
            for d in visible
        }
        projects = {p.id: p.name for p in session.scalars(select(Project))}
        charges: dict[str, list[str]] = defaultdict(list)
        per_project: dict[tuple[str, str], list[str]] = defaultdict(list)
        query = select(
            Release.dataset, Release.project_id, Release.status, Release.epsilon_charged, Release.created_at
        )
        for ds, project_id, status, charged, created in session.execute(query):
            if ds not in wanted or (since is not None and created < since):
                continue
            item = usage[ds]
            if status == ReleaseStatus.COMMITTED:
                item.queries += 1
            elif status in (ReleaseStatus.FAILED, ReleaseStatus.ABANDONED):
                item.failed += 1
            charges[ds].append(charged)
            name = projects.get(project_id, str(project_id))
            per_project[(ds, name)].append(charged)
            item.projects.setdefault(name, {"queries": 0, "epsilon": "0"})
            if status == ReleaseStatus.COMMITTED:
                item.projects[name]["queries"] += 1
        for ds, amounts in charges.items():
            usage[ds].epsilon = exact_sum(amounts)
        for (ds, name), amounts in per_project.items():
            usage[ds].projects[name]["epsilon"] = format_amount(exact_sum(amounts))
        audit = select(AuditEntry.kind, AuditEntry.data).where(AuditEntry.kind.in_(list(_AUDIT_COUNTS)))
        if since is not None:
            audit = audit.where(AuditEntry.ts >= format_ts(since))
        for kind, data in session.execute(audit):
            ds = load(data).get("dataset")
            if ds in wanted:
                attr = _AUDIT_COUNTS[kind]
                setattr(usage[ds], attr, getattr(usage[ds], attr) + 1)
        for ds, counts in _export_counts(session, wanted, since).items():
            usage[ds].exports = dict(sorted(counts.items()))
        for grant in session.scalars(select(Grant).where(Grant.dataset.in_(visible))):
            if grant.is_active(now):
                usage[grant.dataset].active_grants += 1
        for agreement in session.scalars(
            select(Agreement).where(Agreement.status == AgreementStatus.ACTIVE.value)
        ):
            if agreement.is_in_force(now):
                for ds in agreement.dataset_ids():
                    if ds in wanted:
                        usage[ds].agreements_in_force += 1
        return [usage[d] for d in visible]


__all__ = ["DatasetUsage", "dataset_usage"]

"""Release manifest and citation of an approved export (SR-27, DESIGN §5 step 4). Pure.

The manifest names every source (dataset in Chinese and English, provider
departments, tier, retrieval date 获取日期), the DP releases the numbers trace to
with their epsilon, the checks, the reviewers and the file's SHA-256, and carries
the citation text filled in from ``platform.yaml``'s ``citation`` template
(placeholders ``{dataset}``, ``{provider}``, ``{date}``, ``{release}``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sandbox.policy.models import Platform, Tier

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ReleaseRef:
    release_id: str
    dataset: str
    epsilon: Decimal
    created_at: datetime


@dataclass(frozen=True)
class ReviewRef:
    reviewer: str
    department: str | None
    decision: str
    at: datetime


@dataclass(frozen=True)
class SourceRef:
    dataset: str
    name_zh: str
    name_en: str
    tier: Tier
    providers: tuple[str, ...]


def citation(platform: Platform, source: SourceRef, *, date: str, releases: Sequence[str]) -> str:
    providers = "、".join(
        platform.departments[p].name.zh if p in platform.departments else p for p in source.providers
    )
    return platform.citation.format(
        dataset=source.name_zh, provider=providers, date=date, release=", ".join(releases) or "—"
    )


def build_manifest(
    *,
    platform: Platform,
    export_id: int,
    filename: str,
    sha256: str,
    size: int,
    project: str,
    requester: str,
    purpose: str,
    sources: Sequence[SourceRef],
    releases: Sequence[ReleaseRef],
    checks: Sequence[dict[str, str]],
    reviews: Sequence[ReviewRef],
    released_at: datetime,
    synthetic: bool = True,
) -> dict[str, Any]:
    """The manifest handed out with a released file (JSON-ready, decimals as exact strings)."""
    release_day = released_at.date().isoformat()
    out_sources = []
    citations = []
    for s in sources:
        used = [r for r in releases if r.dataset == s.dataset]
        retrieved = max((r.created_at for r in used), default=released_at).date().isoformat()
        out_sources.append(
            {
                "dataset": s.dataset,
                "name": {"zh": s.name_zh, "en": s.name_en},
                "tier": s.tier.value,
                "tier_name": {"zh": platform.tiers[s.tier].name.zh, "en": platform.tiers[s.tier].name.en},
                "providers": [
                    {
                        "id": p,
                        "zh": platform.departments[p].name.zh if p in platform.departments else p,
                        "en": platform.departments[p].name.en if p in platform.departments else p,
                    }
                    for p in s.providers
                ],
                "retrieved": retrieved,
                "release_ids": [r.release_id for r in used],
            }
        )
        citations.append(citation(platform, s, date=retrieved, releases=[r.release_id for r in used]))
    epsilon_by_dataset: dict[str, Decimal] = {}
    for r in releases:
        epsilon_by_dataset[r.dataset] = epsilon_by_dataset.get(r.dataset, Decimal(0)) + r.epsilon
    return {
        "manifest_version": MANIFEST_VERSION,
        "platform": {"zh": platform.name.zh, "en": platform.name.en},
        "export_id": export_id,
        "file": {"name": filename, "sha256": sha256, "size": size},
        "project": project,
        "requester": requester,
        "purpose": purpose,
        "released_at": released_at.isoformat(),
        "release_date": release_day,
        "sources": out_sources,
        "releases": [
            {
                "release_id": r.release_id,
                "dataset": r.dataset,
                "epsilon": str(r.epsilon),
                "created_at": r.created_at.isoformat(),
            }
            for r in releases
        ],
        "epsilon_by_dataset": {k: str(v) for k, v in sorted(epsilon_by_dataset.items())},
        "checks": list(checks),
        "reviewers": [
            {
                "reviewer": r.reviewer,
                "department": r.department,
                "decision": r.decision,
                "at": r.at.isoformat(),
            }
            for r in reviews
        ],
        "citation": citations,
        "synthetic": synthetic,
    }

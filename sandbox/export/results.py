"""Check verdicts and results shared by every export check (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from sandbox.policy.models import Tier


class Verdict(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    WARN = "warn"
    FAIL = "fail"


_RANK = {Verdict.PASS: 0, Verdict.WARN: 1, Verdict.FAIL: 2}
_TIER_RANK = {Tier.OPEN: 0, Tier.CONDITIONAL: 1, Tier.RESTRICTED: 2}


@dataclass(frozen=True)
class CheckResult:
    """One automatic check: its stable ``name``, a verdict, and a reason a person can read."""

    name: str
    verdict: Verdict
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "verdict": self.verdict.value, "reason": self.reason}


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The most severe verdict (``pass`` for none)."""
    out = Verdict.PASS
    for v in verdicts:
        if _RANK[v] > _RANK[out]:
            out = v
    return out


def strictest_tier(tiers: Iterable[Tier]) -> Tier:
    """Highest wins (SR-03): restricted > conditional > open; no tiers at all counts as restricted."""
    found = list(tiers)
    if not found:
        return Tier.RESTRICTED
    return max(found, key=lambda t: _TIER_RANK[t])


def merge(name: str, results: Iterable[CheckResult]) -> CheckResult | None:
    """Fold several results of one check (e.g. one per sheet) into one, worst verdict first."""
    items = [r for r in results if r.name == name]
    if not items:
        return None
    if len(items) == 1:
        return items[0]
    verdict = worst(r.verdict for r in items)
    ordered = sorted(items, key=lambda r: -_RANK[r.verdict])
    seen: list[str] = []
    for r in ordered:
        if r.reason not in seen:
            seen.append(r.reason)
    return CheckResult(name, verdict, " | ".join(seen))

"""What the checks know about an export besides its bytes: its sources, releases and thresholds. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sandbox.export.provenance import DpRelease
from sandbox.export.results import strictest_tier
from sandbox.policy.models import ExportThresholds, Tier


@dataclass(frozen=True)
class SourceDataset:
    """A dataset the file derives from (lineage, SR-25.2), as the gate needs it."""

    id: str
    tier: Tier
    columns: tuple[str, ...] = ()
    privacy_unit: str | None = None
    identifier_columns: tuple[str, ...] = ()
    unit_count: int | None = None  # number of privacy units; never shown in a reason
    providers: tuple[str, ...] = ()

    @property
    def enterprise_data(self) -> bool:
        """Privacy unit is an enterprise (a USCC column, or a keyed hash of one)."""
        return self.privacy_unit is not None and "uscc" in self.privacy_unit.lower()


@dataclass(frozen=True)
class CheckContext:
    """Project, lineage, the project's DP releases and the SDC thresholds.

    ``tiers`` adds tiers when the source datasets are not known in detail. With neither sources
    nor tiers the file counts as restricted (default deny).
    """

    project: str
    sources: Sequence[SourceDataset] = ()
    releases: Sequence[DpRelease] = ()
    thresholds: ExportThresholds = field(default_factory=ExportThresholds)
    tiers: Sequence[Tier] = ()

    @property
    def tier(self) -> Tier:
        return strictest_tier([*(s.tier for s in self.sources), *self.tiers])

    @property
    def enterprise_data(self) -> bool:
        """USCC rule (§7.2): conditional/restricted enterprise data; unknown detail counts as enterprise."""
        non_open = [s for s in self.sources if s.tier != Tier.OPEN]
        if not self.sources or any(t != Tier.OPEN for t in self.tiers):
            return True
        return any(s.enterprise_data or s.privacy_unit is None for s in non_open)

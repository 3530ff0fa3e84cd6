"""Provenance: does every number of a table trace to a DP release of this project? (SR-25.3). Pure.

A release (:class:`DpRelease`) is what the ledger keeps for one DP query: its id,
dataset, columns, rows of values and, per statistic cell, the 95% confidence
half-width. A table number *traces* when some released value, rounded to the
number of decimal places the table displays, equals it (``12.3456`` shown as
``12.3`` or ``12``), with either rounding direction at the half; a whole number written with a zero
fraction (``1523.0``, how a float column with gaps prints) also matches at 0 places. Released
statistics, their confidence half-widths and the interval ends ``value ± ci``
are all traceable: they are post-processing of the release.

Columns that hold grouping keys (a release's key columns by name, or label
columns of the table) are labels, not statistics, and need no trace.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sandbox.export.results import CheckResult, Verdict
from sandbox.export.tables import Layout, Table, infer_layout, parse_number
from sandbox.policy.models import Tier

Cell = tuple[int, str]


@dataclass(frozen=True)
class DpRelease:
    """One logged DP release (the ledger's ``releases`` row, as the gate needs it)."""

    release_id: str
    dataset: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    ci95: tuple[tuple[Any, ...], ...] | None = None  # same shape as rows; None/"" where no interval
    key_columns: tuple[str, ...] = ()
    epsilon: Decimal | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> DpRelease:
        """Accept the common shapes: rows as lists or dicts; ci as rows, dicts or ``{column: [...]}``."""
        columns = tuple(str(c) for c in data.get("columns") or ())
        raw_rows = list(data.get("rows") or data.get("cells") or ())
        if raw_rows and isinstance(raw_rows[0], Mapping):
            if not columns:
                columns = tuple(str(k) for k in raw_rows[0])
            rows = tuple(tuple(r.get(c) for c in columns) for r in raw_rows)
        else:
            rows = tuple(tuple(r) for r in raw_rows)
        ci_raw = data.get("ci95", data.get("ci"))
        ci: tuple[tuple[Any, ...], ...] | None = None
        if isinstance(ci_raw, Mapping):
            ci = tuple(
                tuple((ci_raw.get(c) or [None] * len(rows))[i] if c in ci_raw else None for c in columns)
                for i in range(len(rows))
            )
        elif ci_raw:
            ci_rows = list(ci_raw)
            if ci_rows and isinstance(ci_rows[0], Mapping):
                ci = tuple(tuple(r.get(c) for c in columns) for r in ci_rows)
            else:
                ci = tuple(tuple(r) for r in ci_rows)
        keys = tuple(str(k) for k in (data.get("key_columns") or data.get("group_by") or ()))
        eps = data.get("epsilon")
        return cls(
            release_id=str(data.get("release_id", data.get("id", ""))),
            dataset=str(data.get("dataset", "")),
            columns=columns,
            rows=rows,
            ci95=ci,
            key_columns=keys,
            epsilon=Decimal(str(eps)) if eps is not None else None,
        )

    def inferred_keys(self) -> set[str]:
        """Key columns: as declared; else, with intervals given, the columns that never have one."""
        if self.key_columns:
            return set(self.key_columns)
        keys: set[str] = set()
        for j, col in enumerate(self.columns):
            if self.ci95 is not None:
                if all(_blank(r[j]) for r in self.ci95 if j < len(r)):
                    keys.add(col)
            elif all(parse_number(r[j]) is None for r in self.rows if j < len(r)):
                keys.add(col)
        return keys

    def traceable_values(self) -> Iterable[Decimal]:
        keys = self.inferred_keys()
        for i, row in enumerate(self.rows):
            for j, col in enumerate(self.columns):
                if col in keys or j >= len(row):
                    continue
                value = parse_number(row[j])
                if value is None:
                    continue
                yield value.value
                ci = (
                    parse_number(self.ci95[i][j])
                    if self.ci95 is not None and i < len(self.ci95) and j < len(self.ci95[i])
                    else None
                )
                if ci is not None:
                    yield ci.value
                    yield value.value - ci.value
                    yield value.value + ci.value


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


@dataclass
class TraceResult:
    traced: dict[Cell, str] = field(default_factory=dict)  # cell → release id
    untraced: list[Cell] = field(default_factory=list)
    label_columns: list[str] = field(default_factory=list)

    @property
    def release_ids(self) -> list[str]:
        return sorted(set(self.traced.values()))

    @property
    def untraced_set(self) -> frozenset[Cell]:
        return frozenset(self.untraced)


class ReleaseIndex:
    """Sorted released values for fast ``rounded-equals`` look-ups."""

    def __init__(self, releases: Sequence[DpRelease]) -> None:
        pairs = sorted((v, r.release_id) for r in releases for v in r.traceable_values())
        self._values = [v for v, _ in pairs]
        self._ids = [rid for _, rid in pairs]
        self.key_columns = {k.lower() for r in releases for k in r.inferred_keys()}

    def find(self, value: Decimal, places: int) -> set[str]:
        """Ids of releases with a value that rounds (half up or half even) to ``value`` at ``places``."""
        half = Decimal(5) * Decimal(10) ** (-(places + 1))
        lo = bisect.bisect_left(self._values, value - half)
        hi = bisect.bisect_right(self._values, value + half)
        return set(self._ids[lo:hi])


def trace_table(table: Table, releases: Sequence[DpRelease], *, layout: Layout | None = None) -> TraceResult:
    """Match every number of ``table`` (outside label columns) to a released value.

    A number may round-equal values of several releases (small counts collide by chance), so cells
    are attributed to the fewest releases that explain them: greedily, the release tracing the most
    still-unattributed cells first (ties by id, so the result is deterministic). An exported release
    is thus cited alone, not with an older release that happens to share one of its counts.
    """
    layout = layout or infer_layout(table)
    index = ReleaseIndex(releases)
    result = TraceResult()
    labels = set(layout.labels)
    for col in table.columns:
        if col.lower() in index.key_columns:
            labels.add(col)
    result.label_columns = [c for c in table.columns if c in labels]
    frame = table.frame
    candidates: dict[Cell, set[str]] = {}
    for col in table.columns:
        if col in labels:
            continue
        for pos in range(len(frame)):
            n = table.number(pos, col)
            if n is None:
                continue
            ids = index.find(n.value, n.places)
            if n.places > 0 and n.value == n.value.to_integral_value():
                ids |= index.find(n.value, 0)  # "1523.0": a float column's rendering of a whole number
            if n.percent:
                ids |= index.find(n.value / 100, n.places + 2)
            if ids:
                candidates[(pos, col)] = ids
            else:
                result.untraced.append((pos, col))
    open_cells = dict(candidates)
    while open_cells:
        counts: dict[str, int] = {}
        for ids in open_cells.values():
            for rid in ids:
                counts[rid] = counts.get(rid, 0) + 1
        best = min(counts, key=lambda rid: (-counts[rid], rid))
        for cell in [c for c, ids in open_cells.items() if best in ids]:
            result.traced[cell] = best
            del open_cells[cell]
    result.traced = {cell: result.traced[cell] for cell in candidates}  # table order
    return result


def provenance_result(
    table: Table, trace: TraceResult, tier: Tier, *, releases: Sequence[DpRelease] = ()
) -> CheckResult:
    """The ``provenance`` verdict: all traced → pass; otherwise by the strictest source tier.

    open → pass (numbers need no DP trace); conditional → warn (a reviewer confirms the untraced
    numbers are derived from releases, SDC checks them too); restricted → fail (only DP aggregates
    leave 非开放 data, REQUIREMENTS §5).
    """
    total = len(trace.traced) + len(trace.untraced)
    prefix = f"{table.name}: " if table.name and table.name != "table" else ""
    if total == 0:
        return CheckResult("provenance", Verdict.PASS, f"{prefix}no numbers to trace")
    eps = {r.release_id: r.epsilon for r in releases}
    ids = trace.release_ids
    cited = ", ".join(f"{i} (ε={eps[i]})" if eps.get(i) is not None else i for i in ids)
    if not trace.untraced:
        return CheckResult(
            "provenance", Verdict.PASS, f"{prefix}all {total} numbers trace to DP release(s) {cited}"
        )
    shown = ", ".join(table.where(p, c) for p, c in trace.untraced[:5])
    more = len(trace.untraced) - 5
    listing = shown + (f" and {more} more" if more > 0 else "")
    traced_part = f"; {len(trace.traced)} trace to {cited}" if ids else ""
    base = (
        f"{prefix}{len(trace.untraced)} of {total} numbers do not trace to a DP release of this project "
        f"({listing}){traced_part}"
    )
    if tier == Tier.OPEN:
        return CheckResult("provenance", Verdict.PASS, base + "; open data only, so no DP trace is required")
    if tier == Tier.CONDITIONAL:
        return CheckResult(
            "provenance",
            Verdict.WARN,
            base + "; they went through the SDC checks, and a reviewer must confirm they are derived from "
            "released values (SR-25)",
        )
    return CheckResult(
        "provenance",
        Verdict.FAIL,
        base + "; restricted data may leave only as logged DP releases: export the released values "
        "themselves (SR-25, REQUIREMENTS §5)",
    )

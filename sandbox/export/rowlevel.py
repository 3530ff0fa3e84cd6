"""Row-level data check (SR-21, SR-25.5): no table that is really a list of units. Pure.

A table fails when it derives from a conditional/restricted dataset and

* carries an identifier column: the dataset's privacy unit or a column the policy marks as an
  identifier, or a header that suggests one (身份证, 手机, 姓名 …); or
* shares columns with that dataset and has nearly as many rows as the dataset has units
  (at least ``NEAR_FRACTION`` of them).

A table with more rows than the units could fill at ``min_cell_count`` units each is a warning.
Reasons never state the number of units (it is not public).
"""

from __future__ import annotations

from collections.abc import Sequence

from sandbox.export.context import SourceDataset
from sandbox.export.identifiers import scan_column_name
from sandbox.export.results import CheckResult, Verdict
from sandbox.export.tables import Table
from sandbox.policy.models import ExportThresholds, Tier

NEAR_FRACTION = 0.5
UNKNOWN_UNITS_ROWS = 1000


def check_row_level(
    table: Table,
    sources: Sequence[SourceDataset],
    thresholds: ExportThresholds,
    *,
    all_traced: bool = False,
) -> CheckResult:
    prefix = f"{table.name}: " if table.name and table.name != "table" else ""
    non_open = [s for s in sources if s.tier != Tier.OPEN]
    if not non_open and sources:
        return CheckResult("row_level", Verdict.PASS, f"{prefix}open data only")
    headers = {c.strip().lower(): c for c in table.columns}
    problems: list[str] = []
    for s in non_open:
        ids = {c.lower() for c in s.identifier_columns}
        if s.privacy_unit:
            ids.add(s.privacy_unit.lower())
        for key in sorted(ids & set(headers)):
            problems.append(f"column {headers[key]!r} identifies units of {s.id} ({s.tier.value})")
    suggestive = [f for c in table.columns if (f := scan_column_name(c)) is not None]
    if suggestive:
        label = "conditional/restricted data" if non_open else "data of unknown lineage"
        for f in suggestive:
            problems.append(f"column {f.masked!r} looks like an identifier ({label})")
    rows = len(table.frame)
    warnings: list[str] = []
    if not all_traced:
        for s in non_open:
            overlap = sorted({c.lower() for c in s.columns} & set(headers))
            if not overlap:
                continue
            shared = ", ".join(repr(headers[c]) for c in overlap[:5])
            if s.unit_count is None:
                if rows >= UNKNOWN_UNITS_ROWS:
                    warnings.append(
                        f"{rows} rows sharing columns {shared} with {s.id}, whose unit count is not known"
                    )
            elif rows >= NEAR_FRACTION * s.unit_count:
                problems.append(
                    f"{rows} rows sharing columns {shared} with {s.id} ({s.tier.value}): close to one row "
                    "per unit, which is row-level data"
                )
            elif rows * thresholds.min_cell_count > s.unit_count:
                warnings.append(
                    f"{rows} rows sharing columns {shared} with {s.id}: more rows than its units can fill "
                    f"with {thresholds.min_cell_count} each"
                )
    if problems:
        return CheckResult(
            "row_level",
            Verdict.FAIL,
            f"{prefix}"
            + "; ".join(problems)
            + ". Row-level data from non-open datasets never leaves (SR-21).",
        )
    if warnings:
        return CheckResult("row_level", Verdict.WARN, f"{prefix}" + "; ".join(warnings))
    return CheckResult("row_level", Verdict.PASS, f"{prefix}{rows} rows; no identifier columns")

"""Statistical disclosure control for numbers that do not trace to a DP release (SR-25.4). Pure.

Input (:class:`SdcInput`)
    * ``table``: the table as published (:class:`~sandbox.export.tables.Table`);
    * ``contributors`` (optional): per-cell contributions of each unit to a magnitude cell,
      keyed by ``(row position, column)``; when the file is a plain table this is unknown;
    * ``unit_counts`` (optional): per-cell number of units, when known beyond the table;
    * ``untraced`` (optional): the cells that provenance could not trace; ``None`` means all;
    * ``layout`` (optional): column kinds and totals; inferred from headers and values otherwise.

Rules (thresholds from :class:`~sandbox.policy.models.ExportThresholds`):
    * ``sdc_min_cell_count``: count cells, and amounts/statistics over a row's units, need at
      least ``min_cell_count`` units; zero cells are allowed.
    * ``sdc_dominance``: the largest contributor ≤ ``dominance_top1`` of a cell's total and the two
      largest ≤ ``dominance_top2``. Without contributor detail the gate infers what it can: a row
      that publishes both a maximum and a sum of one measure shows the top share (ACRO's "dominant
      max"), and a cell of one or two units is dominated by definition.
    * ``sdc_p_percent``: the units other than the two largest must add up to more than
      ``p_percent``% of the largest, or the second largest can estimate it too closely.
    * ``sdc_extreme_values``: min, max and mode (最大, 最小, 众数 …) of an untraced measure are the
      values of single units; they are refused (ACRO lets them through; "mode of 3 firms").
    * ``sdc_totals``: suppressed cells must not be recoverable from published totals by subtraction
      (ACRO's "totals after suppression"): the published totals and cells are solved as a linear
      system, and any suppressed cell it determines fails the check. Totals must be recomputed from
      the published cells, or suppressed as well.

Each reason says what was inferred and what could not be verified from the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from sandbox.export.results import CheckResult, Verdict
from sandbox.export.tables import (
    ColumnKind,
    Layout,
    ParsedNumber,
    Statistic,
    Table,
    body_columns,
    cell_text,
    infer_layout,
    is_suppressed,
)
from sandbox.policy.models import ExportThresholds, Tier

Cell = tuple[int, str]

CHECK_NAMES = (
    "sdc_min_cell_count",
    "sdc_dominance",
    "sdc_p_percent",
    "sdc_extreme_values",
    "sdc_totals",
)
_MAX_LISTED = 5


@dataclass(frozen=True)
class SdcInput:
    table: Table
    contributors: Mapping[Cell, Sequence[Decimal | int | float]] | None = None
    unit_counts: Mapping[Cell, int] | None = None
    untraced: frozenset[Cell] | None = None
    layout: Layout | None = None


def _listing(items: Sequence[str]) -> str:
    shown = "; ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f"; and {more} more" if more > 0 else "")


class _View:
    """Helpers over one input: parsed numbers, which cells are subject to SDC, row descriptions."""

    def __init__(self, inp: SdcInput) -> None:
        self.inp = inp
        self.table = inp.table
        self.frame = inp.table.frame
        self.layout = inp.layout or infer_layout(inp.table)
        counts = [c for c in self.layout.columns_of(ColumnKind.COUNT) if c != self.layout.total_column]
        self._count_column = counts[0] if len(counts) == 1 else None

    def num(self, pos: int, col: str) -> ParsedNumber | None:
        return self.table.number(pos, col)

    def subject(self, pos: int, col: str) -> bool:
        if self.num(pos, col) is None:
            return False
        return self.inp.untraced is None or (pos, col) in self.inp.untraced

    def rows(self) -> range:
        return range(len(self.frame))

    def desc(self, pos: int, col: str | None = None) -> str:
        labels = []
        for c in self.layout.labels[:2]:
            text = cell_text(self.table.cell(pos, c)).strip()
            if text:
                labels.append(f"{c}={text}")
        where = f"row {pos + 1}" + (f" ({', '.join(labels)})" if labels else "")
        if self.table.name and self.table.name != "table":
            where = f"{self.table.name}: {where}"
        return where + (f", column {col!r}" if col is not None else "")

    def row_units(self, pos: int) -> Decimal | None:
        """Units behind a row: its one count column, if the table has exactly one."""
        if self._count_column is None:
            return None
        n = self.num(pos, self._count_column)
        return n.value if n is not None else None


def _measure_cells(view: _View) -> list[Cell]:
    cols = view.layout.columns_of(ColumnKind.MAGNITUDE, ColumnKind.STATISTIC)
    return [(p, c) for c in cols for p in view.rows() if view.subject(p, c)]


# ---------------------------------------------------------------- minimum cell count


def check_min_cell_count(inp: SdcInput, thresholds: ExportThresholds) -> CheckResult:
    view = _View(inp)
    k = thresholds.min_cell_count
    problems: list[str] = []
    for col in view.layout.columns_of(ColumnKind.COUNT):
        for pos in view.rows():
            n = view.num(pos, col)
            if view.subject(pos, col) and n is not None and 0 < n.value < k:
                problems.append(f"{view.desc(pos, col)} = {n.value}")
    unverified: list[str] = []
    for pos, col in _measure_cells(view):
        units: Decimal | None = None
        if inp.unit_counts is not None and (pos, col) in inp.unit_counts:
            units = Decimal(inp.unit_counts[(pos, col)])
        elif inp.contributors is not None and (pos, col) in inp.contributors:
            units = Decimal(len(inp.contributors[(pos, col)]))
        else:
            units = view.row_units(pos)
        if units is None:
            unverified.append(col)
        elif 0 < units < k:
            problems.append(f"{view.desc(pos, col)} summarises {units} units")
    if problems:
        return CheckResult(
            "sdc_min_cell_count",
            Verdict.FAIL,
            f"{len(problems)} cell(s) rest on fewer than {k} units: {_listing(problems)}. "
            "Merge categories or suppress these cells (and recompute totals).",
        )
    if unverified:
        cols = sorted(set(unverified))
        return CheckResult(
            "sdc_min_cell_count",
            Verdict.WARN,
            f"the file gives no unit counts for {', '.join(repr(c) for c in cols)}, so the minimum of {k} "
            "units per cell could not be verified; add a count column, or a reviewer must confirm it.",
        )
    counted = len(view.layout.columns_of(ColumnKind.COUNT))
    if counted == 0:
        return CheckResult("sdc_min_cell_count", Verdict.PASS, "no untraced count or amount cells")
    return CheckResult("sdc_min_cell_count", Verdict.PASS, f"every untraced count cell is 0 or at least {k}")


# ---------------------------------------------------------------- dominance and p%


def _strip_stat(header: str) -> str:
    low = header.lower()
    for word in (
        "maximum",
        "max",
        "largest",
        "top1",
        "top",
        "最大值",
        "最大",
        "最高",
        "sum",
        "total",
        "合计",
        "总额",
        "总计",
    ):
        low = low.replace(word, "")
    return "".join(ch for ch in low if ch.isalnum())


def _max_sum_pairs(view: _View) -> list[tuple[str, str]]:
    maxes = [c for c, s in view.layout.statistics.items() if s == Statistic.MAX]
    sums = [c for c in view.layout.columns_of(ColumnKind.MAGNITUDE) if c != view.layout.total_column]
    pairs: list[tuple[str, str]] = []
    for m in maxes:
        same = [s for s in sums if _strip_stat(s) == _strip_stat(m)]
        if same:
            pairs.append((m, same[0]))
        elif len(maxes) == 1 and len(sums) == 1:
            pairs.append((m, sums[0]))
    return pairs


def _shares(values: Sequence[Decimal | int | float]) -> tuple[Fraction, Fraction, Fraction] | None:
    xs = sorted((abs(Fraction(str(v))) for v in values), reverse=True)
    total = sum(xs, Fraction(0))
    if total == 0:
        return None
    x1 = xs[0] if xs else Fraction(0)
    x2 = xs[1] if len(xs) > 1 else Fraction(0)
    return x1 / total, (x1 + x2) / total, total - x1 - x2


def check_dominance(inp: SdcInput, thresholds: ExportThresholds) -> CheckResult:
    view = _View(inp)
    top1, top2 = Fraction(str(thresholds.dominance_top1)), Fraction(str(thresholds.dominance_top2))
    magnitude = [(p, c) for p, c in _measure_cells(view) if view.layout.kinds[c] == ColumnKind.MAGNITUDE]
    if not magnitude:
        return CheckResult("sdc_dominance", Verdict.PASS, "no untraced magnitude cells")
    problems: list[str] = []
    checked: set[Cell] = set()
    for pos, col in magnitude:
        detail = inp.contributors.get((pos, col)) if inp.contributors is not None else None
        if detail is not None:
            checked.add((pos, col))
            shares = _shares(detail)
            if shares is None:
                continue
            s1, s2, _ = shares
            if s1 > top1 or s2 > top2:
                problems.append(
                    f"{view.desc(pos, col)}: largest unit holds {float(s1):.0%}, two largest {float(s2):.0%}"
                )
            continue
        units = view.row_units(pos)
        if units is not None and 0 < units <= 2:
            checked.add((pos, col))
            problems.append(f"{view.desc(pos, col)}: only {units} unit(s), so one or two hold 100%")
    for mcol, scol in _max_sum_pairs(view):
        for pos in view.rows():
            mx, total = view.num(pos, mcol), view.num(pos, scol)
            if mx is None or total is None or total.value == 0 or not view.subject(pos, scol):
                continue
            checked.add((pos, scol))
            share = mx.value / total.value
            if share > thresholds.dominance_top1:
                problems.append(
                    f"{view.desc(pos, scol)}: the published maximum {mcol!r} is {float(share):.0%} of the sum"
                )
    limits = f"(limits: top 1 ≤ {float(top1):.0%}, top 2 ≤ {float(top2):.0%})"
    return _magnitude_verdict(
        "sdc_dominance",
        problems,
        magnitude,
        checked,
        failing=f"cell(s) dominated by one or two units {limits}",
        unverifiable=f"dominance {limits} could not be verified; "
        "a reviewer must confirm no unit dominates a cell.",
        passing=f"no magnitude cell is dominated {limits}",
    )


def check_p_percent(inp: SdcInput, thresholds: ExportThresholds) -> CheckResult:
    view = _View(inp)
    p = Fraction(str(thresholds.p_percent)) / 100
    magnitude = [(pos, c) for pos, c in _measure_cells(view) if view.layout.kinds[c] == ColumnKind.MAGNITUDE]
    if not magnitude:
        return CheckResult("sdc_p_percent", Verdict.PASS, "no untraced magnitude cells")
    problems: list[str] = []
    checked: set[Cell] = set()
    for pos, col in magnitude:
        detail = inp.contributors.get((pos, col)) if inp.contributors is not None else None
        if detail is not None:
            checked.add((pos, col))
            xs = sorted((abs(Fraction(str(v))) for v in detail), reverse=True)
            if not xs or xs[0] == 0:
                continue
            rest = sum(xs[2:], Fraction(0))
            if rest < p * xs[0]:
                problems.append(
                    f"{view.desc(pos, col)}: the others besides the two largest add up to "
                    f"{float(rest / xs[0]):.1%} of the largest"
                )
            continue
        units = view.row_units(pos)
        if units is not None and 0 < units <= 2:
            checked.add((pos, col))
            problems.append(f"{view.desc(pos, col)}: {units} unit(s): each can work out the other's value")
    rule = f"p = {thresholds.p_percent}%"
    return _magnitude_verdict(
        "sdc_p_percent",
        problems,
        magnitude,
        checked,
        failing=f"magnitude cell(s) fail the p% rule ({rule})",
        unverifiable=f"the p% rule ({rule}) could not be verified.",
        passing=f"every magnitude cell passes the p% rule ({rule})",
    )


def _magnitude_verdict(
    check: str,
    problems: list[str],
    magnitude: list[Cell],
    checked: set[Cell],
    *,
    failing: str,
    unverifiable: str,
    passing: str,
) -> CheckResult:
    """FAIL listing ``problems``; else WARN naming the columns of magnitude cells left unchecked
    (no contributor detail in the file); else PASS."""
    if problems:
        return CheckResult(check, Verdict.FAIL, f"{len(problems)} {failing}: {_listing(problems)}.")
    unverified = sorted({c for pos, c in magnitude if (pos, c) not in checked})
    if unverified:
        return CheckResult(
            check,
            Verdict.WARN,
            f"no contributor detail in the file for {', '.join(repr(c) for c in unverified)}: {unverifiable}",
        )
    return CheckResult(check, Verdict.PASS, passing)


# ---------------------------------------------------------------- min / max / mode


def check_extreme_values(inp: SdcInput) -> CheckResult:
    view = _View(inp)
    extreme = (Statistic.MAX, Statistic.MIN, Statistic.MODE)
    problems: list[str] = []
    for col in view.table.columns:
        stat = view.layout.statistics.get(col)
        kind = view.layout.kinds.get(col)
        if stat not in extreme:
            continue
        if kind == ColumnKind.TEXT:
            hit = any(cell_text(v).strip() and not is_suppressed(v) for v in view.frame[col])
        else:
            hit = any(view.subject(p, col) for p in view.rows())
        if hit:
            problems.append(f"column {col!r} publishes a {stat}")
    for pos, stat in view.layout.row_statistics.items():
        cols = [c for c in view.table.columns if view.subject(pos, c)]
        if cols:
            problems.append(f"{view.desc(pos)} publishes a {stat}")
    if problems:
        return CheckResult(
            "sdc_extreme_values",
            Verdict.FAIL,
            f"{_listing(problems)}: a minimum, maximum or mode of untraced data is the value of one unit "
            "(or of a few). Publish a DP quantile or a banded range instead.",
        )
    return CheckResult("sdc_extreme_values", Verdict.PASS, "no untraced minimum, maximum or mode")


# ---------------------------------------------------------------- totals after suppression


def _tolerance(numbers: Sequence[ParsedNumber]) -> Decimal:
    places = max((n.places for n in numbers), default=0)
    return Decimal(5) * Decimal(10) ** (-(places + 1)) * max(1, len(numbers))


def _solve(
    equations: list[tuple[dict[Cell, Fraction], Fraction]], unknowns: list[Cell]
) -> dict[Cell, Fraction]:
    """Gauss–Jordan over exact fractions; returns the unknowns the system pins down."""
    index = {u: i for i, u in enumerate(unknowns)}
    rows = []
    for coeffs, const in equations:
        row = [Fraction(0)] * (len(unknowns) + 1)
        for cell, a in coeffs.items():
            row[index[cell]] += a
        row[-1] = const
        rows.append(row)
    pivot_row = 0
    pivots: list[int] = []
    for col in range(len(unknowns)):
        found = next((r for r in range(pivot_row, len(rows)) if rows[r][col] != 0), None)
        if found is None:
            continue
        rows[pivot_row], rows[found] = rows[found], rows[pivot_row]
        lead = rows[pivot_row][col]
        rows[pivot_row] = [v / lead for v in rows[pivot_row]]
        for r in range(len(rows)):
            if r != pivot_row and rows[r][col] != 0:
                factor = rows[r][col]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[pivot_row], strict=True)]
        pivots.append(col)
        pivot_row += 1
    solved: dict[Cell, Fraction] = {}
    for r, col in enumerate(pivots):
        if all(rows[r][c] == 0 for c in range(len(unknowns)) if c != col):
            solved[unknowns[col]] = rows[r][-1]
    return solved


def check_totals(inp: SdcInput, thresholds: ExportThresholds) -> CheckResult:
    view = _View(inp)
    layout = view.layout
    tc = layout.total_column
    body = body_columns(layout)
    inner_cols = [c for c in body if c != tc]
    total_rows = [p for p in layout.total_rows]
    inner_rows = [p for p in view.rows() if p not in total_rows and p not in layout.row_statistics]

    def unknown(pos: int, col: str) -> bool:
        return view.num(pos, col) is None and is_suppressed(view.table.cell(pos, col))

    grid_rows = inner_rows + total_rows
    grid_cols = inner_cols + ([tc] if tc else [])
    unknowns = [(p, c) for p in grid_rows for c in grid_cols if unknown(p, c)]
    if not unknowns:
        return CheckResult("sdc_totals", Verdict.PASS, "no suppressed cells")
    if not total_rows and tc is None:
        return CheckResult(
            "sdc_totals",
            Verdict.PASS,
            f"{len(unknowns)} suppressed cell(s) and no total row or column found",
        )
    lines: list[tuple[list[Cell], Cell, str]] = []
    for t in total_rows:
        for c in grid_cols:
            lines.append(([(p, c) for p in inner_rows], (t, c), f"column {c!r}"))
    if tc is not None:
        for p in grid_rows:
            lines.append(([(p, c) for c in inner_cols], (p, tc), view.desc(p)))
    equations: list[tuple[dict[Cell, Fraction], Fraction]] = []
    revealed: list[str] = []
    small: list[str] = []
    recomputed = 0
    k = thresholds.min_cell_count
    for members, total_cell, name in lines:
        hidden = [m for m in members if unknown(*m)]
        known = [n for m in members if (n := view.num(*m)) is not None]
        total = view.num(*total_cell)
        published = sum((n.value for n in known), Decimal(0))
        if total is not None:
            if not hidden:
                continue
            if abs(total.value - published) <= _tolerance([*known, total]):
                recomputed += 1
                continue
            rest = total.value - published
            revealed.append(f"{name}: suppressed cells sum to {rest}")
            counts = layout.kinds.get(total_cell[1]) == ColumnKind.COUNT
            if counts and 0 < rest < k:
                small.append(f"{name}: the suppressed cells together hold {rest} (< {k})")
            equations.append(({m: Fraction(1) for m in hidden}, Fraction(str(rest))))
        elif unknown(*total_cell):
            coeffs = {m: Fraction(1) for m in hidden}
            coeffs[total_cell] = Fraction(-1)
            equations.append((coeffs, -Fraction(str(published))))
    solved = _solve(equations, unknowns) if equations else {}
    recovered = [view.desc(p, c) for (p, c) in solved]
    if recovered or small:
        parts = []
        if recovered:
            parts.append(
                f"{len(recovered)} suppressed cell(s) can be recovered from the published totals by "
                f"subtraction: {_listing(recovered)}"
            )
        if small:
            parts.append(_listing(small))
        return CheckResult(
            "sdc_totals",
            Verdict.FAIL,
            "; ".join(parts) + ". Recompute totals from the published cells only, or suppress them too.",
        )
    if revealed:
        return CheckResult(
            "sdc_totals",
            Verdict.WARN,
            f"totals include suppressed values ({_listing(revealed)}); no single cell can be recovered, but "
            "recompute totals from the published cells or suppress them.",
        )
    note = f" ({recomputed} total(s) recomputed from published cells)" if recomputed else ""
    return CheckResult("sdc_totals", Verdict.PASS, f"no suppressed cell can be recovered from totals{note}")


# ---------------------------------------------------------------- entry point


def check_table(inp: SdcInput, thresholds: ExportThresholds, *, tier: Tier) -> list[CheckResult]:
    """Every SDC check on one table's untraced numbers.

    Open data only (T0): no disclosure control is required (SR-10), every check passes and says so.
    """
    if tier == Tier.OPEN:
        return [
            CheckResult(n, Verdict.PASS, "open data only: disclosure control not required (SR-10)")
            for n in CHECK_NAMES
        ]
    if inp.untraced is not None and not inp.untraced and not _has_text_extremes(inp):
        return [CheckResult(n, Verdict.PASS, "every number traces to a DP release") for n in CHECK_NAMES]
    layout = inp.layout or infer_layout(inp.table)
    inp = SdcInput(inp.table, inp.contributors, inp.unit_counts, inp.untraced, layout)
    results = [
        check_min_cell_count(inp, thresholds),
        check_dominance(inp, thresholds),
        check_p_percent(inp, thresholds),
        check_extreme_values(inp),
        check_totals(inp, thresholds),
    ]
    if layout.notes:
        note = " [inferred: " + "; ".join(layout.notes[:_MAX_LISTED]) + "]"
        results = [
            CheckResult(r.name, r.verdict, r.reason + note) if r.verdict != Verdict.PASS else r
            for r in results
        ]
    return results


def _has_text_extremes(inp: SdcInput) -> bool:
    layout = inp.layout or infer_layout(inp.table)
    return any(
        layout.kinds.get(c) == ColumnKind.TEXT
        and layout.statistics.get(c) in (Statistic.MAX, Statistic.MIN, Statistic.MODE)
        for c in inp.table.columns
    )

"""Tables as the export gate sees them: cells as published, and what each column holds.

Pure (works on in-memory values). A :class:`Table` keeps every cell as it was
written (``"1,234"``, ``"<10"``, ``"*"``, ``12.5``) so that suppression markers
and the displayed precision survive; :func:`parse_number` reads a number and
its decimal places, :func:`is_suppressed` spots a withheld cell, and
:func:`infer_layout` says which columns are labels, counts, magnitudes or
statistics, which rows and columns are totals, and *why* (the reasons end up in
check results, so a requester sees what the gate assumed).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class ParsedNumber:
    value: Decimal
    places: int  # decimal places as displayed
    percent: bool = False


_NUMBER = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][+-]?\d+)?%?$|^[+-]?\.\d+%?$")
_SUPPRESSED = re.compile(
    r"^(?:\*+|x|c|s|\.\.|-|—|–|supp(?:ressed)?|n/?a|null|none|nan|[<≤]\s*=?\s*\d+(?:\.\d+)?|"
    r"不予公开|保密|抑制|已抑制)$",
    re.IGNORECASE,
)


def cell_text(cell: Any) -> str:
    """The cell as a string, the way a reader of the file sees it."""
    if cell is None:
        return ""
    if isinstance(cell, float):
        if math.isnan(cell):
            return ""
        return repr(cell)
    return str(cell)


def parse_number(cell: Any) -> ParsedNumber | None:
    """A number as displayed (``"1,234.50"`` → 1234.50 with 2 places); ``None`` if the cell is no number."""
    if isinstance(cell, bool) or cell is None:
        return None
    if isinstance(cell, int):
        return ParsedNumber(Decimal(cell), 0)
    if isinstance(cell, float):
        if not math.isfinite(cell):
            return None
        text = repr(cell)
    elif isinstance(cell, Decimal):
        text = str(cell)
    else:
        text = str(cell).strip()
    if not text or not _NUMBER.match(text):
        return None
    percent = text.endswith("%")
    body = text.rstrip("%").replace(",", "")
    try:
        value = Decimal(body)
    except InvalidOperation:
        return None
    if "e" in body.lower():
        exponent = value.as_tuple().exponent
        places = max(0, -exponent) if isinstance(exponent, int) else 0
        if float(value).is_integer() and abs(value) < Decimal(10) ** 16:
            value = Decimal(int(value))
            places = 0
    else:
        places = len(body.split(".", 1)[1]) if "." in body else 0
    return ParsedNumber(value, places, percent)


def is_suppressed(cell: Any) -> bool:
    """An empty cell or a suppression marker (``*``, ``x``, ``c``, ``..``, ``<10``, ``suppressed`` …)."""
    text = cell_text(cell).strip()
    return text == "" or bool(_SUPPRESSED.match(text))


@dataclass(frozen=True)
class Table:
    """One table of a file: ``frame`` holds the cells as published (object dtype).

    ``cell`` / ``number`` read one cell through per-column caches (row access on a
    DataFrame is slow; the checks visit every cell several times).
    """

    frame: pd.DataFrame
    name: str = "table"
    _cells: dict[str, list[Any]] = field(default_factory=dict, compare=False, repr=False)
    _numbers: dict[str, list[ParsedNumber | None]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    def __len__(self) -> int:
        return len(self.frame)

    def cells(self, column: str) -> list[Any]:
        if column not in self._cells:
            self._cells[column] = list(self.frame[column])
        return self._cells[column]

    def numbers(self, column: str) -> list[ParsedNumber | None]:
        if column not in self._numbers:
            self._numbers[column] = [parse_number(c) for c in self.cells(column)]
        return self._numbers[column]

    def cell(self, row: int, column: str) -> Any:
        return self.cells(column)[row]

    def number(self, row: int, column: str) -> ParsedNumber | None:
        return self.numbers(column)[row]

    def header_where(self, column: str) -> str:
        prefix = f"{self.name}: " if self.name and self.name != "table" else ""
        return f"{prefix}header {column!r}"

    def where(self, row: int, column: str | None = None) -> str:
        prefix = f"{self.name}: " if self.name and self.name != "table" else ""
        col = f", column {column!r}" if column is not None else ""
        return f"{prefix}row {row + 1}{col}"


def make_table(header: Sequence[Any], rows: Sequence[Sequence[Any]], name: str = "table") -> Table:
    """Build a :class:`Table` from a header and rows (ragged rows padded; duplicate headers made unique)."""
    names: list[str] = []
    for i, h in enumerate(header):
        base = cell_text(h).strip() or f"Unnamed: {i}"
        cand, k = base, 1
        while cand in names:
            cand, k = f"{base}.{k}", k + 1
        names.append(cand)
    width = len(names)
    body = []
    for r in rows:
        row = list(r)[:width] + [None] * max(0, width - len(r))
        body.append(row)
    frame = (
        pd.DataFrame(body, columns=names, dtype=object) if body else pd.DataFrame(columns=names, dtype=object)
    )
    return Table(frame, name)


class ColumnKind(StrEnum):
    LABEL = "label"
    COUNT = "count"
    MAGNITUDE = "magnitude"
    STATISTIC = "statistic"  # mean, median, min, max, mode, share …
    TEXT = "text"


class Statistic(StrEnum):
    MAX = "max"
    MIN = "min"
    MODE = "mode"
    MEAN = "mean"
    QUANTILE = "quantile"
    SHARE = "share"
    SUM = "sum"
    COUNT = "count"


def _words(header: str) -> str:
    """Header → lower-case tokens joined by single spaces (ASCII), CJK kept as is."""
    return " " + re.sub(r"[^0-9a-z\u3400-\u9fff%]+", " ", header.lower()).strip() + " "


def _has(header: str, english: Sequence[str], chinese: Sequence[str]) -> bool:
    w = _words(header)
    return any(f" {e} " in w for e in english) or any(c in header for c in chinese)


_STAT_WORDS: dict[Statistic, tuple[tuple[str, ...], tuple[str, ...]]] = {
    Statistic.MAX: (("max", "maximum", "largest", "highest", "top", "top1"), ("最大", "最高", "峰值")),
    Statistic.MIN: (("min", "minimum", "smallest", "lowest"), ("最小", "最低")),
    Statistic.MODE: (("mode", "modal", "most common", "most frequent"), ("众数",)),
    Statistic.MEAN: (("mean", "avg", "average"), ("均值", "平均")),
    Statistic.QUANTILE: (
        ("median", "p25", "p50", "p75", "p90", "p95", "p99", "quantile", "percentile", "q1", "q3", "iqr"),
        ("中位数", "分位"),
    ),
    Statistic.SHARE: (
        ("share", "pct", "percent", "percentage", "ratio", "rate", "proportion", "%"),
        ("占比", "比例", "比率", "百分比", "率"),
    ),
    Statistic.COUNT: (
        (
            "count",
            "n",
            "num",
            "number",
            "cnt",
            "freq",
            "frequency",
            "units",
            "records",
            "rows",
            "persons",
            "people",
            "enterprises",
            "firms",
            "patients",
            "visits",
            "trips",
            "size",
            "obs",
            "nobs",
        ),
        ("人数", "户数", "家数", "个数", "数量", "频数", "计数", "次数", "笔数", "人次", "样本", "企业数"),
    ),
    Statistic.SUM: (
        (
            "sum",
            "total",
            "amount",
            "revenue",
            "value",
            "wan",
            "yuan",
            "cost",
            "fee",
            "paid",
            "tax",
            "income",
            "spend",
            "spending",
            "turnover",
            "capital",
            "balance",
        ),
        ("金额", "总额", "合计", "总计", "收入", "万元", "元", "费用", "税", "营收", "总和"),
    ),
}

_LABEL_WORDS = (
    (
        "year",
        "month",
        "day",
        "date",
        "hour",
        "week",
        "quarter",
        "age",
        "code",
        "id",
        "no",
        "index",
        "key",
        "band",
        "bin",
        "group",
        "level",
        "grade",
        "class",
        "category",
        "type",
        "district",
        "from",
        "to",
        "lower",
        "upper",
        "rank",
        "order",
        "seq",
    ),
    ("年份", "年度", "月份", "日期", "小时", "年龄", "代码", "编码", "编号", "区划", "序号", "分组"),
)
_TOTAL_LABELS = frozenset(
    {
        "total",
        "totals",
        "all",
        "overall",
        "sum",
        "grand total",
        "row total",
        "column total",
        "subtotal",
        "合计",
        "总计",
        "总数",
        "小计",
        "全部",
        "全市",
        "总和",
        "全体",
    }
)


_STAT_ORDER = (
    Statistic.MODE,
    Statistic.MAX,
    Statistic.MIN,
    Statistic.QUANTILE,
    Statistic.MEAN,
    Statistic.SHARE,
    Statistic.COUNT,
    Statistic.SUM,
)


@functools.lru_cache(maxsize=8192)
def statistic_of(header: str) -> Statistic | None:
    """Which statistic a header (or row label) names, most specific first."""
    w = _words(header)
    for stat in _STAT_ORDER:
        english, chinese = _STAT_WORDS[stat]
        if any(f" {e} " in w for e in english) or any(c in header for c in chinese):
            return stat
    return None


def is_total_label(text: str) -> bool:
    t = re.sub(r"\s+", " ", cell_text(text).strip().lower())
    return t in _TOTAL_LABELS


@dataclass
class Layout:
    """What the gate inferred about a table, with the reasons it can show."""

    kinds: dict[str, ColumnKind] = field(default_factory=dict)
    statistics: dict[str, Statistic] = field(default_factory=dict)  # statistic columns
    row_statistics: dict[int, Statistic] = field(default_factory=dict)  # rows labelled max/min/mode …
    total_rows: list[int] = field(default_factory=list)
    total_column: str | None = None
    notes: list[str] = field(default_factory=list)

    def columns_of(self, *kinds: ColumnKind) -> list[str]:
        return [c for c, k in self.kinds.items() if k in kinds]

    @property
    def labels(self) -> list[str]:
        return self.columns_of(ColumnKind.LABEL, ColumnKind.TEXT)


def _is_sequence(values: list[Decimal]) -> bool:
    return bool(values) and (
        values == [Decimal(i) for i in range(len(values))]
        or values == [Decimal(i + 1) for i in range(len(values))]
    )


def infer_layout(table: Table, overrides: Mapping[str, ColumnKind] | None = None) -> Layout:
    """Classify columns from their cells and headers; find total rows/columns; record why."""
    layout = Layout()
    overrides = overrides or {}
    for col in table.columns:
        cells = table.cells(col)
        if col in overrides:
            layout.kinds[col] = overrides[col]
            stat = statistic_of(col)
            if overrides[col] == ColumnKind.STATISTIC and stat is not None:
                layout.statistics[col] = stat
            continue
        numbers = table.numbers(col)
        non_numeric = [c for c, n in zip(cells, numbers, strict=True) if n is None and not is_suppressed(c)]
        parsed = [n for n in numbers if n is not None]
        if non_numeric or not parsed:
            layout.kinds[col] = ColumnKind.TEXT
            text_stat = statistic_of(col)
            if text_stat in (Statistic.MAX, Statistic.MIN, Statistic.MODE):
                layout.statistics[col] = text_stat  # e.g. the most common category of a few units
            continue
        stat = statistic_of(col)
        values = [n.value for n in parsed]
        if (col.startswith("Unnamed") or _has(col, ("index",), ("序号",))) and _is_sequence(values):
            layout.kinds[col] = ColumnKind.LABEL
            layout.notes.append(f"column {col!r} is a row index")
        elif stat in (
            Statistic.MAX,
            Statistic.MIN,
            Statistic.MODE,
            Statistic.MEAN,
            Statistic.QUANTILE,
            Statistic.SHARE,
        ) or any(n.percent for n in parsed):
            layout.kinds[col] = ColumnKind.STATISTIC
            layout.statistics[col] = stat if stat is not None else Statistic.SHARE
        elif stat == Statistic.COUNT:
            layout.kinds[col] = ColumnKind.COUNT
        elif stat == Statistic.SUM:
            layout.kinds[col] = ColumnKind.MAGNITUDE
        elif is_total_label(col):
            integral = all(v == v.to_integral_value() for v in values)
            layout.kinds[col] = ColumnKind.COUNT if integral else ColumnKind.MAGNITUDE
        elif _has(col, *_LABEL_WORDS):
            layout.kinds[col] = ColumnKind.LABEL
            layout.notes.append(f"numeric column {col!r} read as a label (its header names a key)")
        elif all(v == v.to_integral_value() for v in values):
            layout.kinds[col] = ColumnKind.COUNT
            layout.notes.append(
                f"column {col!r} read as counts (whole numbers, no header hint; call amounts '{col}_sum')"
            )
        else:
            layout.kinds[col] = ColumnKind.MAGNITUDE
            layout.notes.append(f"column {col!r} read as amounts (non-integer, no header hint)")
    _find_row_labels(table, layout)
    _find_totals(table, layout)
    return layout


def _find_row_labels(table: Table, layout: Layout) -> None:
    frame = table.frame
    label_cols = layout.labels
    for pos in range(len(frame)):
        for col in label_cols:
            text = cell_text(table.cell(pos, col)).strip()
            if not text:
                continue
            if is_total_label(text):
                layout.total_rows.append(pos)
                break
            stat = statistic_of(text) if len(text) <= 24 and not text[:1].isdigit() else None
            if stat in (Statistic.MAX, Statistic.MIN, Statistic.MODE):
                layout.row_statistics[pos] = stat
                break


def body_columns(layout: Layout) -> list[str]:
    return layout.columns_of(ColumnKind.COUNT, ColumnKind.MAGNITUDE)


def _find_totals(table: Table, layout: Layout) -> None:
    frame = table.frame
    body = body_columns(layout)
    labelled = [c for c in body if is_total_label(c)]
    if labelled:
        layout.total_column = labelled[0]
        layout.notes.append(f"column {labelled[0]!r} is a row total (header)")
        other_kinds = [layout.kinds[c] for c in body if c != labelled[0]]
        if other_kinds and all(k == ColumnKind.COUNT for k in other_kinds):
            layout.kinds[labelled[0]] = ColumnKind.COUNT
    elif len(body) >= 3:
        for cand in body:
            others = [c for c in body if c != cand]
            matches = 0
            consistent = True
            for pos in range(len(frame)):
                if pos in layout.total_rows:
                    continue
                nums = [table.number(pos, c) for c in [cand, *others]]
                if any(n is None for n in nums):
                    continue
                total, rest = nums[0], nums[1:]
                assert total is not None
                if total.value == sum((n.value for n in rest if n is not None), Decimal(0)):
                    matches += 1
                else:
                    consistent = False
                    break
            if consistent and matches >= 2:
                layout.total_column = cand
                layout.notes.append(f"column {cand!r} is a row total (equals the sum of the other columns)")
                break
    if not layout.total_rows and len(frame) >= 3 and body:
        last = len(frame) - 1
        agree, checked = True, 0
        for col in body:
            nums = table.numbers(col)
            if any(n is None for n in nums):
                continue
            values = [n.value for n in nums if n is not None]
            checked += 1
            if values[last] != sum(values[:last], Decimal(0)):
                agree = False
                break
        if agree and checked:
            layout.total_rows.append(last)
            layout.notes.append(f"row {last + 1} is a total row (equals the sum of the rows above)")

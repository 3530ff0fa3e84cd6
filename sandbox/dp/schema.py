"""What the DP engine reads from a dataset's policy: keys, fixed-point bounds, bins, candidates.

Pure functions of public metadata (never of rows). Fixed-point: a value ``x`` of a numeric
column with precision ``p`` is clamped to the public bounds and released as the integer
``round(x * 10**p)``. The integer bounds are tightened inwards (``ceil(lower * 10**p)``,
``floor(upper * 10**p)``) so every clamped, rounded value lies within them.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from sandbox.errors import InternalError, QueryNoBins, QueryNonPublicKey, QueryNotNumeric
from sandbox.policy.models import NUMERIC_TYPES, Budgets, Column, ColumnRole, ColumnType, Dataset

__all__ = [
    "MAX_CELLS",
    "CatalogLike",
    "FixedPoint",
    "bin_edges",
    "bin_labels",
    "fixed_point",
    "is_identifier",
    "key_values",
    "quantile_candidates",
]

#: Largest number of released cells (product of the key domains) one query may ask for.
MAX_CELLS = 10_000
#: Linear subdivisions of each declared bin when bins serve as quantile candidates.
BIN_SUBDIVISIONS = 8
#: Points of the uniform candidate grid over the bounds when a column declares no bins.
GRID_POINTS = 65


class CatalogLike(Protocol):
    """The part of ``sandbox.policy.loader.Catalog`` the DP engine uses."""

    def dataset(self, dataset_id: str) -> Dataset: ...

    def budgets(self, dataset_id: str) -> Budgets: ...


def is_identifier(dataset: Dataset, column: Column) -> bool:
    """Identifier columns (and the privacy unit) never appear in a query except COUNT(DISTINCT unit)."""
    return column.role is ColumnRole.IDENTIFIER or column.name == dataset.privacy_unit


@dataclass(frozen=True)
class FixedPoint:
    """Integer (fixed-point) view of a bounded numeric column."""

    column: str
    integer: bool
    precision: int
    lower: int
    upper: int

    @property
    def scale(self) -> int:
        return int(10**self.precision)

    @property
    def centre(self) -> int:
        """Integer midpoint of the bounds (rounded down); sums for means are centred on it."""
        return (self.lower + self.upper) // 2

    @property
    def max_abs(self) -> int:
        """Largest magnitude of one clamped value: a row's contribution to a plain sum."""
        return max(abs(self.lower), abs(self.upper))

    @property
    def half_range(self) -> int:
        """Largest magnitude of one clamped, centred value: a row's contribution to a centred sum."""
        return max(self.upper - self.centre, self.centre - self.lower)

    def value(self, fixed: int | float) -> float:
        """Back from fixed-point to the column's unit."""
        return fixed / self.scale


def fixed_point(dataset: Dataset, column: Column, use: str) -> FixedPoint:
    """The fixed-point view of ``column``; ``use`` names the clause for the error message."""
    if column.type not in NUMERIC_TYPES or column.bounds is None:
        raise QueryNotNumeric(
            f"{use}: column {column.name!r} of {dataset.id!r} is not numeric with public bounds."
        )
    precision = column.precision if column.precision is not None else 0
    scale = Decimal(10) ** precision
    lower = math.ceil(column.bounds.lower * scale)
    upper = math.floor(column.bounds.upper * scale)
    if lower > upper:
        raise InternalError(f"Policy bounds of {dataset.id}.{column.name} are empty at its precision.")
    return FixedPoint(
        column=column.name,
        integer=column.type is ColumnType.INTEGER,
        precision=precision,
        lower=lower,
        upper=upper,
    )


def bin_edges(dataset: Dataset, column: Column, use: str) -> tuple[Decimal, ...]:
    if column.type not in NUMERIC_TYPES or not column.bins or len(column.bins) < 2:
        raise QueryNoBins(f"{use}: column {column.name!r} of {dataset.id!r} declares no histogram bins.")
    return tuple(Decimal(e) for e in column.bins)


def _text(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text == "-0" else text


def bin_labels(edges: tuple[Decimal, ...]) -> tuple[str, ...]:
    """Labels of the bins ``[e0, e1)``, ``[e1, e2)``, …, ``[e(m-1), em]`` (the last is closed)."""
    labels = [f"[{_text(edges[i])}, {_text(edges[i + 1])})" for i in range(len(edges) - 2)]
    labels.append(f"[{_text(edges[-2])}, {_text(edges[-1])}]")
    return tuple(labels)


def key_values(dataset: Dataset, column: Column, binned: bool, use: str) -> tuple[object, ...]:
    """The public domain of a grouping key, in policy order (bins: their labels)."""
    if binned:
        return bin_labels(bin_edges(dataset, column, use))
    if isinstance(column.domain, list) and column.domain:
        return tuple(column.domain)
    if column.type is ColumnType.BOOLEAN and column.domain is None:
        return (False, True)
    raise QueryNonPublicKey(
        f"{use}: column {column.name!r} of {dataset.id!r} has no public domain, "
        "so it cannot be a grouping key."
    )


def quantile_candidates(dataset: Dataset, column: Column, fp: FixedPoint) -> tuple[int, ...]:
    """Public candidates (fixed-point) for quantiles of ``column``.

    Declared bins split into ``BIN_SUBDIVISIONS`` equal parts, plus the bounds; without bins a
    uniform grid of ``GRID_POINTS`` over the bounds. Rounded to the column's precision, sorted,
    de-duplicated, within the bounds.
    """
    points: set[int] = {fp.lower, fp.upper}
    scale = Decimal(fp.scale)
    if column.bins and len(column.bins) >= 2:
        edges = [Decimal(e) * scale for e in column.bins]
        for lo, hi in itertools.pairwise(edges):
            for i in range(BIN_SUBDIVISIONS + 1):
                points.add(int((lo + (hi - lo) * i / BIN_SUBDIVISIONS).to_integral_value()))
    else:
        span = Decimal(fp.upper - fp.lower)
        for i in range(GRID_POINTS):
            points.add(int((fp.lower + span * i / (GRID_POINTS - 1)).to_integral_value()))
    return tuple(sorted(p for p in points if fp.lower <= p <= fp.upper))

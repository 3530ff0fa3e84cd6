"""Building blocks shared by the generators: seeded streams, policy-driven sampling, conformance.

Every generator receives a :class:`Builder` for one dataset. The builder hands out numpy
``Generator`` streams derived from ``(seed, dataset id, stream name)`` only, so a dataset's rows
do not depend on which other datasets are generated in the same run (``--datasets`` subsets give
the same rows as a full run). Categorical values are drawn from the dataset's policy domain
(weights are hints keyed by value; values the policy adds get a small weight, values it drops are
never produced). :func:`conform` then enforces the policy on the generated columns: names and
order, numeric bounds and precision, domains, NULLs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from sandbox.catalog.warehouse import RANK_COLUMN
from sandbox.errors import ConfigError, InternalError
from sandbox.policy.loader import Catalog
from sandbox.policy.models import Column, ColumnType, Dataset, DomainValue

# Time window of generated records (REQUIREMENTS §6.1): 2017-01-01 .. 2019-09-30.
DATE_START = np.datetime64("2017-01-01", "D")
DATE_END = np.datetime64("2019-09-30", "D")
N_DAYS = int((DATE_END - DATE_START).astype(int)) + 1
N_MONTHS = 33  # 2017-01 .. 2019-09

Array = npt.NDArray[Any]
_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
Columns = dict[str, Array]


def stable_hash(text: str) -> int:
    """A 64-bit integer from ``text`` that is the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def derive_rng(seed: int, dataset_id: str, stream: str = "") -> np.random.Generator:
    """The numpy Generator for one named stream of one dataset under one run seed."""
    return np.random.default_rng(np.random.SeedSequence([seed, stable_hash(dataset_id), stable_hash(stream)]))


@dataclass
class SynthContext:
    """One generation run: the catalogue, the seed, the scale and a cache of generated tables.

    ``frame(dataset_id)`` generates (once) and returns a conformed table; generators of
    dependent tables use it to draw join keys (e.g. tax rows take ``uscc`` from the registry).
    """

    catalog: Catalog
    seed: int
    scale: int
    _frames: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    def frame(self, dataset_id: str) -> pd.DataFrame:
        if dataset_id not in self._frames:
            from sandbox.synth.generate import generate_frame  # local: generate imports this module

            self._frames[dataset_id] = generate_frame(self, dataset_id)
        return self._frames[dataset_id]

    def forget(self, dataset_id: str) -> None:
        """Drop a cached table (the runner frees fact tables once written)."""
        self._frames.pop(dataset_id, None)


@dataclass
class Builder:
    """Helpers for generating one dataset under a :class:`SynthContext`."""

    ctx: SynthContext
    dataset: Dataset
    n_rows: int

    @property
    def seed(self) -> int:
        return self.ctx.seed

    def rng(self, stream: str) -> np.random.Generator:
        return derive_rng(self.ctx.seed, self.dataset.id, stream)

    def column(self, name: str) -> Column:
        try:
            return self.dataset.column(name)
        except KeyError:
            raise ConfigError(
                f"Policy of {self.dataset.id!r} has no column {name!r}, which the generator produces.",
                hint="Column names must be exactly those of REQUIREMENTS §6; fix the policy or generator.",
            ) from None

    def parent(self, column: str, default: str) -> str:
        """The dataset a join-key column refers to (policy ``references``), else ``default``."""
        ref = self.column(column).references
        return ref.split(".", 1)[0] if ref else default

    def parent_frame(self, column: str, default: str) -> pd.DataFrame:
        return self.ctx.frame(self.parent(column, default))

    # ----------------------------------------------------------------- domains and bounds

    def domain(self, name: str) -> list[DomainValue]:
        dom = self.column(name).domain
        if not isinstance(dom, list) or not dom:
            raise ConfigError(
                f"Column {self.dataset.id}.{name} needs a resolved domain list for the generator.",
                hint="Declare `domain:` (a list or an '@shared' name) in the policy.",
            )
        return dom

    def bounds(self, name: str) -> tuple[float, float]:
        b = self.column(name).bounds
        if b is None:
            raise ConfigError(
                f"Column {self.dataset.id}.{name} has no bounds.", hint="Numeric columns need `bounds:`."
            )
        return float(b.lower), float(b.upper)

    def pick(
        self,
        name: str,
        n: int,
        rng: np.random.Generator,
        weights: Mapping[Any, float] | None = None,
        *,
        others: float | None = None,
    ) -> Array:
        """``n`` values of the column's domain, drawn with the weight hints (uniform without).

        Domain values the hints do not name get ``others`` (default: half the smallest hint).
        """
        domain = self.domain(name)
        probs = _domain_probabilities(domain, weights, others)
        idx = rng.choice(len(domain), size=n, p=probs)
        return _domain_array(domain)[idx]

    def pick_by(
        self,
        name: str,
        groups: Array,
        rng: np.random.Generator,
        weights_by_group: Mapping[Any, Mapping[Any, float]],
        default: Mapping[Any, float] | None = None,
        *,
        others: float = 0.0,
    ) -> Array:
        """Like :meth:`pick`, with weights that depend on each row's group value.

        Group weights are exclusive by default (``others=0``): a value a group does not name is
        never drawn for it (e.g. community health centres are never 三级甲等).
        """
        domain = self.domain(name)
        values = _domain_array(domain)
        out_idx = np.empty(len(groups), dtype=np.int64)
        draws = rng.random(len(groups))
        for group in _unique_in_order(groups):
            mask = groups == group
            probs = _domain_probabilities(domain, weights_by_group.get(group, default), others)
            cdf = np.cumsum(probs)
            out_idx[mask] = np.minimum(
                np.searchsorted(cdf, draws[mask] * cdf[-1], side="right"), len(cdf) - 1
            )
        return values[out_idx]


def _unique_in_order(values: Array) -> list[Any]:
    seen: dict[Any, None] = {}
    for v in pd.unique(np.asarray(values)):
        seen.setdefault(v.item() if isinstance(v, np.generic) else v, None)
    return list(seen)


def _domain_probabilities(
    domain: Sequence[DomainValue], weights: Mapping[Any, float] | None, others: float | None = None
) -> npt.NDArray[np.float64]:
    uniform = np.full(len(domain), 1.0 / len(domain))
    if not weights:
        return uniform
    known = [float(weights[v]) for v in domain if v in weights]
    if not known:
        return uniform
    # a value the hints do not know (the policy added it) gets a small, non-zero share by default
    filler = others if others is not None else min((w for w in known if w > 0), default=1.0) * 0.5
    w = np.array([float(weights.get(v, filler)) for v in domain])
    return w / w.sum() if w.sum() > 0 else uniform


def _domain_array(domain: Sequence[DomainValue]) -> Array:
    if all(isinstance(v, bool) for v in domain):
        return np.array(domain, dtype=bool)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in domain):
        return np.array(domain, dtype=np.int64)
    return np.array([str(v) for v in domain], dtype=object)


# --------------------------------------------------------------------------- building blocks


def hex_tokens(rng: np.random.Generator, n: int, nbytes: int = 16) -> npt.NDArray[np.object_]:
    """``n`` random lower-case hex tokens of ``2 * nbytes`` characters (pseudonymous ids, SR-40).

    Never ID-number shaped: every fourth character is a letter ``a``-``f``, so no run of digits
    is longer than three (a resident ID needs 17 digits in a row). The tokens are drawn at
    random, never derived from an identifier.
    """
    width = 2 * nbytes
    raw = np.frombuffer(rng.bytes(n * nbytes), dtype=np.uint8).reshape(n, nbytes)
    nibbles = np.empty((n, width), dtype=np.uint8)
    nibbles[:, 0::2] = raw >> 4
    nibbles[:, 1::2] = raw & 0x0F
    nibbles[:, 3::4] = 10 + nibbles[:, 3::4] % 6
    text = _HEX_DIGITS[nibbles].tobytes().decode("ascii")
    return np.array([text[i : i + width] for i in range(0, n * width, width)], dtype=object)


def unique_tokens(rng: np.random.Generator, n: int, nbytes: int = 16) -> npt.NDArray[np.object_]:
    """Like :func:`hex_tokens` but guaranteed distinct (a collision, astronomically rare, is redrawn)."""
    tokens = hex_tokens(rng, n, nbytes)
    while True:
        dup = pd.Series(tokens).duplicated().to_numpy()
        if not dup.any():
            return tokens
        tokens[dup] = hex_tokens(rng, int(dup.sum()), nbytes)


def sequence_ids(prefix: str, n: int, width: int) -> npt.NDArray[np.object_]:
    """``prefix`` + zero-padded 1..n, e.g. ``V00001``."""
    return np.array([f"{prefix}{i:0{width}d}" for i in range(1, n + 1)], dtype=object)


def weighted_index(rng: np.random.Generator, n: int, weights: Array) -> npt.NDArray[np.int64]:
    """``n`` indices into ``weights`` drawn proportionally to them."""
    w = np.asarray(weights, dtype=np.float64)
    cdf = np.cumsum(w)
    out: npt.NDArray[np.int64] = np.minimum(
        np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(w) - 1
    )
    return out


def lognormal(rng: np.random.Generator, n: int, median: float, sigma: float) -> npt.NDArray[np.float64]:
    return np.exp(rng.normal(np.log(median), sigma, n))


def days_to_dates(offsets: Array, start: np.datetime64 = DATE_START) -> npt.NDArray[np.datetime64]:
    return start + np.asarray(offsets, dtype=np.int64).astype("timedelta64[D]")


def random_dates(rng: np.random.Generator, n: int) -> npt.NDArray[np.datetime64]:
    """Dates uniform over the generation window."""
    return days_to_dates(rng.integers(0, N_DAYS, n))


def minutes_of_day(
    rng: np.random.Generator,
    n: int,
    peaks: Sequence[tuple[float, float, float]],
    flat: tuple[float, float] = (0.0, 24.0),
) -> Array:
    """Minute of day from a mixture of (weight, centre hour, sd hours) peaks plus a flat share.

    The flat share is uniform over the ``flat`` hours; peaks wrap around midnight.
    """
    weights = np.array([p[0] for p in peaks] + [max(0.0, 1.0 - sum(p[0] for p in peaks))])
    comp = weighted_index(rng, n, weights)
    centres = np.array([p[1] for p in peaks] + [12.0])
    sds = np.array([p[2] for p in peaks] + [0.0])
    hours = rng.normal(centres[comp], sds[comp] + 1e-9)
    is_flat = comp == len(peaks)
    hours[is_flat] = rng.uniform(flat[0], flat[1], int(is_flat.sum()))
    return np.minimum((np.mod(hours, 24.0) * 60).astype(np.int64), 24 * 60 - 1)


def timestamps(days: Array, minutes: Array) -> npt.NDArray[np.datetime64]:
    """Minute-resolution timestamps from day offsets and minutes of day."""
    base = days_to_dates(days).astype("datetime64[m]")
    out: npt.NDArray[np.datetime64] = base + np.asarray(minutes, dtype=np.int64).astype("timedelta64[m]")
    return out


def unit_counts(
    rng: np.random.Generator,
    n_rows: int,
    draw: Callable[[np.random.Generator, int], npt.NDArray[np.int64]],
    bound: int | None,
    heavy_share: float = 0.01,
) -> npt.NDArray[np.int64]:
    """Rows per privacy unit, summing exactly to ``n_rows``.

    ``draw(rng, k)`` gives typical counts (>= 1). A share of units contribute more than the
    policy's ``bound`` (``max_rows_per_unit``) so that the ``_rank <= k`` filter matters; at
    least one such unit exists whenever the table has room for it.
    """
    if n_rows <= 0:
        return np.zeros(0, dtype=np.int64)
    parts: list[npt.NDArray[np.int64]] = []
    total = 0
    while total < n_rows:
        k = max(16, n_rows // 8)
        counts = np.maximum(draw(rng, k).astype(np.int64), 1)
        if bound is not None and bound >= 1:
            heavy = rng.random(k) < heavy_share
            counts[heavy] = bound + 1 + rng.integers(0, max(1, bound), int(heavy.sum()))
        parts.append(counts)
        total += int(counts.sum())
    counts = np.concatenate(parts)
    if bound is not None and bound >= 1 and not (counts > bound).any() and n_rows >= 3 * (bound + 1):
        counts[0] = bound + 1 + bound // 2
    cum = np.cumsum(counts)
    m = int(np.searchsorted(cum, n_rows)) + 1
    counts = counts[:m].copy()
    counts[-1] -= int(cum[m - 1]) - n_rows
    if counts[-1] <= 0:  # pragma: no cover - searchsorted guarantees a positive remainder
        raise InternalError("unit_counts produced a non-positive remainder")
    return counts


def within_unit_index(counts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """0-based position of each row inside its unit, for rows laid out unit by unit."""
    n = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(n, dtype=np.int64) - starts


def pick_units(rng: np.random.Generator, population: int, m: int) -> npt.NDArray[np.int64]:
    """``m`` distinct indices into a population (with repeats only if ``m`` exceeds it)."""
    if m <= population:
        return rng.choice(population, size=m, replace=False)
    reps = -(-m // population)
    return np.concatenate([rng.permutation(population) for _ in range(reps)])[:m]


def rank_within_units(units: Array, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """1..n numbering of each unit's rows in a seeded random order (the ``_rank`` column)."""
    n = len(units)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    codes, _ = pd.factorize(pd.Series(units), sort=False)
    order = np.lexsort((rng.random(n), codes))
    sorted_codes = codes[order]
    new_group = np.empty(n, dtype=bool)
    new_group[0] = True
    new_group[1:] = sorted_codes[1:] != sorted_codes[:-1]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(n) - group_start + 1
    return ranks


# --------------------------------------------------------------------------- conformance


def conform(dataset: Dataset, columns: Columns, rng: np.random.Generator) -> pd.DataFrame:
    """The generated columns as a DataFrame that satisfies the dataset's policy.

    Columns come out in policy order; numerics are rounded to their precision and clamped
    into their bounds; categorical values are checked against their domain; ``_rank`` is
    added for datasets with a privacy unit. A mismatch between generator and policy is a
    :class:`ConfigError` that names the columns.
    """
    expected = dataset.column_names
    missing = [c for c in expected if c not in columns]
    extra = [c for c in columns if c not in expected]
    if missing or extra:
        raise ConfigError(
            f"Generator for {dataset.id!r} does not match its policy: missing {missing}, unexpected {extra}.",
            hint="Column names must be exactly those of REQUIREMENTS §6 in both places.",
        )
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise InternalError(f"Generator for {dataset.id!r} produced columns of different lengths: {lengths}")
    data: dict[str, Any] = {}
    for col in dataset.columns:
        data[col.name] = _conform_column(dataset.id, col, columns[col.name])
    frame = pd.DataFrame(data)
    if dataset.privacy_unit:
        frame[RANK_COLUMN] = rank_within_units(frame[dataset.privacy_unit].to_numpy(), rng)
    return frame


def _conform_column(dataset_id: str, col: Column, values: Array) -> Any:
    arr = np.asarray(values)
    where = f"{dataset_id}.{col.name}"
    if col.type is ColumnType.FLOAT:
        out = arr.astype(np.float64)
        if col.precision is not None:
            out = np.round(out, col.precision)
        if col.bounds is not None:
            out = np.clip(out, float(col.bounds.lower), float(col.bounds.upper))
        return out
    if col.type is ColumnType.INTEGER:
        out_i = (
            np.rint(arr.astype(np.float64)).astype(np.int64)
            if arr.dtype.kind == "f"
            else arr.astype(np.int64)
        )
        if col.bounds is not None:
            out_i = np.clip(out_i, int(col.bounds.lower), int(col.bounds.upper))
        _check_domain(where, col, out_i)
        return out_i
    if col.type is ColumnType.BOOLEAN:
        if arr.dtype != bool:
            raise InternalError(f"{where}: expected booleans, got {arr.dtype}")
        return arr
    if col.type is ColumnType.DATE:
        return arr.astype("datetime64[D]")
    if col.type is ColumnType.TIMESTAMP:
        return arr.astype("datetime64[m]")
    # string / category
    if arr.dtype.kind == "O":
        nulls = pd.isna(arr)
        if nulls.any() and not col.nullable:
            raise InternalError(f"{where}: NULL in a non-nullable column")
        _check_domain(where, col, arr[~nulls])
        return pd.array(arr, dtype="str")
    _check_domain(where, col, arr)
    return pd.array(arr.astype(object), dtype="str")


def _check_domain(where: str, col: Column, values: Array) -> None:
    if not isinstance(col.domain, list):
        return
    allowed = {str(v) for v in col.domain} if col.type is not ColumnType.INTEGER else set(col.domain)
    present = pd.unique(np.asarray(values))
    bad = [v for v in present if (str(v) if col.type is not ColumnType.INTEGER else int(v)) not in allowed]
    if bad:
        raise InternalError(
            f"{where}: generated values outside the policy domain: {sorted(map(str, bad))[:5]}"
        )

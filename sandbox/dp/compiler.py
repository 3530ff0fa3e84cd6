"""compile_query: spec + policy + budget -> CompiledQuery (statement, measurement, charge) -> Release."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import opendp.prelude as dp
import sqlalchemy as sa

from sandbox.errors import InternalError
from sandbox.policy.models import Dataset, Mechanism

from .accuracy import (
    Preview,
    describe_statistic,
    epsilon_for_plan,
    half_width,
    mean_estimate,
    preview_plan,
    quantile_rank_errors,
)
from .mechanisms import D_IN, Calibrated, Statistic, approx_dp, calibrate, check_budget_value, run
from .planner import ExactCells, Plan, mean_count_id, plan_query
from .schema import CatalogLike
from .spec import AggKind, QuerySpec

__all__ = ["CompiledQuery", "Release", "compile_query", "epsilon_for", "preview"]


@dataclass(frozen=True)
class Release:
    """Noised cells of one query: rows (dicts in output order), per-cell 95% half-widths, cost.

    ``ci95`` is ``None`` for quantile cells (no data-independent value interval exists);
    ``rank_error95`` gives, per quantile output column, the 95% half-width of the released
    value's rank error in number of the cell's values (docs/dp.md, "Accuracy"); the same
    number is in that statistic's ``statistics`` entry.
    """

    dataset: str
    columns: tuple[str, ...]
    rows: list[dict[str, Any]]
    ci95: list[dict[str, float | None]]
    epsilon: Decimal
    budget_unit: str
    delta: Decimal
    approx_dp: tuple[Decimal, Decimal] | None
    mechanism: str
    statistics: tuple[dict[str, Any], ...]
    fingerprint: str
    sql: str
    rank_error95: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "columns": list(self.columns),
            "rows": self.rows,
            "ci95": self.ci95,
            "rank_error95": dict(self.rank_error95),
            "epsilon": str(self.epsilon),
            "budget_unit": self.budget_unit,
            "delta": str(self.delta),
            "approx_dp": None if self.approx_dp is None else [str(v) for v in self.approx_dp],
            "mechanism": self.mechanism,
            "statistics": [dict(s) for s in self.statistics],
            "fingerprint": self.fingerprint,
            "sql": self.sql,
        }

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict` (budgets as decimal strings, never floats)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class CompiledQuery:
    """A validated query bound to its policy and budget: one statement, one OpenDP measurement."""

    def __init__(self, spec: QuerySpec, dataset: Dataset, delta: Decimal, epsilon: Decimal) -> None:
        self.spec = spec
        self.dataset = dataset
        self.requested = epsilon
        self.plan: Plan = plan_query(spec, dataset)
        self._calibrated: Calibrated = calibrate(self.plan, epsilon)
        self.delta = delta if dataset.mechanism is Mechanism.GAUSSIAN else Decimal(0)

    # ---------------------------------------------------------------- public surface

    @property
    def charge(self) -> Decimal:
        """Budget spent: OpenDP's privacy map at ``d_in``, exact, rounded up to 1e-12, <= the request."""
        return self._calibrated.charge

    @property
    def budget_unit(self) -> str:
        """``epsilon`` (Laplace datasets, pure DP) or ``rho`` (Gaussian datasets, zCDP)."""
        return self._calibrated.measure

    @property
    def statement(self) -> sa.Select[Any]:
        """The one push-down statement (SQLAlchemy Core, bound parameters only)."""
        return self.plan.statement

    @property
    def measurement(self) -> dp.Measurement:
        """The composed OpenDP measurement (input: :class:`ExactCells`)."""
        return self._calibrated.measurement

    @property
    def d_in(self) -> int:
        """Input distance of the measurement: one privacy unit."""
        return D_IN

    @property
    def statistics(self) -> tuple[Statistic, ...]:
        return self._calibrated.statistics

    def approx_dp(self) -> tuple[Decimal, Decimal] | None:
        """Gaussian datasets: the (epsilon, delta) equivalent at the policy's delta (None if delta is 0)."""
        if self.dataset.mechanism is not Mechanism.GAUSSIAN:
            return None
        return approx_dp(self.measurement, self.delta)

    @property
    def fingerprint(self) -> str:
        """Spec fingerprint + budget + the policy parameters that shape the result."""
        body = {
            "spec": self.spec.fingerprint(),
            "requested": str(self.requested),
            "k": self.plan.max_rows_per_unit,
            "mechanism": self.dataset.mechanism.value,
            "fixed": {c: [f.lower, f.upper, f.precision] for c, f in sorted(self.plan.fixed.items())},
            "scales": [s.scale for s in self.statistics],
        }
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def execute_exact(self, conn: sa.Connection) -> ExactCells:
        """Run the statement; exact integer cells. For tests and cross-engine checks only."""
        return self.plan.execute_exact(conn)

    def release(self, rows: Sequence[Any]) -> Release:
        """Add OpenDP noise to the statement's result rows and post-process into a Release."""
        return self.release_cells(self.plan.exact_cells(rows))

    def release_cells(self, cells: ExactCells) -> Release:
        outputs = run(self._calibrated, cells)
        noisy: dict[str, list[int]] = {}
        if len(outputs) != len(self.statistics):
            raise InternalError("The measurement returned an unexpected number of outputs.")
        for stat, out in zip(self.statistics, outputs, strict=True):
            # a vector of noisy cells; a quantile: one selection per cell (a bare index for one cell)
            values = (
                [int(out)] if stat.noise == "noisy_max" and stat.components == 1 else [int(v) for v in out]
            )
            if stat.noise == "noisy_max" and len(values) != stat.components:
                raise InternalError("The measurement returned an unexpected number of selections.")
            noisy[stat.primitive.id] = values
        rows, cis = self._rows(noisy)
        rows, cis = self._order_and_limit(rows, cis)
        return Release(
            dataset=self.dataset.id,
            columns=self.spec.outputs,
            rows=rows,
            ci95=cis,
            epsilon=self.charge,
            budget_unit=self.budget_unit,
            delta=self.delta,
            approx_dp=self.approx_dp(),
            mechanism=self.mechanism_description(),
            statistics=tuple(describe_statistic(self.plan, s) for s in self.statistics),
            fingerprint=self.spec.fingerprint(),
            sql=self.spec.to_sql(),
            rank_error95=quantile_rank_errors(self.plan, self.statistics),
        )

    def preview(self) -> Preview:
        """Expected 95% half-widths and the cost; runs nothing and spends nothing."""
        return preview_plan(self.plan, self.statistics, self.charge, self.budget_unit)

    def mechanism_description(self) -> str:
        noise = (
            "discrete Gaussian (OpenDP make_gaussian, zCDP; budget in rho)"
            if self.dataset.mechanism is Mechanism.GAUSSIAN
            else "discrete Laplace (OpenDP make_laplace, pure DP; budget in epsilon)"
        )
        parts = [
            f"{noise} on per-cell integer aggregates",
            f"privacy unit {self.dataset.privacy_unit!r}, "
            f"at most {self.plan.max_rows_per_unit} rows per unit",
            f"{len(self.statistics)} statistic(s) composed with make_composition, budget split equally",
        ]
        if any(s.noise == "noisy_max" for s in self.statistics):
            parts.append("quantiles by report-noisy-max (make_noisy_max) over public candidates")
        return "; ".join(parts) + "."

    # ---------------------------------------------------------------- post-processing

    def _rows(
        self, noisy: dict[str, list[int]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, float | None]]]:
        stats = {s.primitive.id: s for s in self.statistics}
        halves = {ident: half_width(s) for ident, s in stats.items() if s.noise != "noisy_max"}
        # the means' Bonferroni half-widths: once per statistic, not once per cell
        mean_ids = {
            ident
            for agg in self.spec.aggregates
            if agg.kind is AggKind.MEAN
            for ident in (f"csum:{agg.column}", mean_count_id(self.dataset, agg.column))
        }
        halves_975 = {ident: half_width(stats[ident], 0.025) for ident in mean_ids}
        rows: list[dict[str, Any]] = []
        cis: list[dict[str, float | None]] = []
        for c, cell in enumerate(self.plan.cells):
            values: dict[str, Any] = {key.name: cell[i] for i, key in enumerate(self.plan.keys)}
            ci: dict[str, float | None] = {}
            for agg in self.spec.aggregates:
                if agg.kind is AggKind.COUNT:
                    values[agg.name], ci[agg.name] = noisy["rows"][c], float(halves["rows"])
                elif agg.kind is AggKind.COUNT_DISTINCT:
                    values[agg.name], ci[agg.name] = noisy["distinct"][c], float(halves["distinct"])
                elif agg.kind is AggKind.SUM:
                    ident = f"sum:{agg.column}"
                    fp = self.plan.fixed[str(agg.column)]
                    values[agg.name], ci[agg.name] = fp.value(noisy[ident][c]), halves[ident] / fp.scale
                elif agg.kind is AggKind.MEAN:
                    s_id, n_id = f"csum:{agg.column}", mean_count_id(self.dataset, agg.column)
                    fp = self.plan.fixed[str(agg.column)]
                    values[agg.name], ci[agg.name] = mean_estimate(
                        noisy[s_id][c],
                        noisy[n_id][c],
                        halves_975[s_id],
                        halves_975[n_id],
                        fp,
                    )
                else:
                    ident = f"quantile:{agg.column}:{format(agg.q, 'f')}"
                    fp = self.plan.fixed[str(agg.column)]
                    candidates = self.plan.candidates[str(agg.column)]
                    values[agg.name], ci[agg.name] = fp.value(candidates[noisy[ident][c]]), None
            rows.append({name: values[name] for name in self.spec.outputs})
            cis.append({a.name: ci[a.name] for a in self.spec.aggregates})
        return rows, cis

    def _order_and_limit(
        self, rows: list[dict[str, Any]], cis: list[dict[str, float | None]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, float | None]]]:
        pairs = list(zip(rows, cis, strict=True))
        for item in reversed(self.spec.order_by):
            present = [p for p in pairs if p[0][item.name] is not None]
            missing = [p for p in pairs if p[0][item.name] is None]
            present.sort(key=lambda p: p[0][item.name], reverse=item.descending)
            pairs = present + missing
        if self.spec.limit is not None:
            pairs = pairs[: self.spec.limit]
        return [p[0] for p in pairs], [p[1] for p in pairs]


def _dataset_and_delta(spec: QuerySpec, catalog: CatalogLike) -> tuple[Dataset, Decimal]:
    dataset = catalog.dataset(spec.dataset)  # UnknownDataset if the policy went away
    return dataset, catalog.budgets(spec.dataset).delta


def compile_query(spec: QuerySpec, catalog: CatalogLike, epsilon: Decimal) -> CompiledQuery:
    """Plan ``spec`` against the policy and calibrate OpenDP noise to ``epsilon``.

    ``epsilon`` is the dataset's budget unit: epsilon for Laplace datasets, rho for Gaussian
    ones. ``CompiledQuery.charge`` never exceeds it.
    """
    dataset, delta = _dataset_and_delta(spec, catalog)
    return CompiledQuery(spec, dataset, delta, check_budget_value(epsilon))


def preview(spec: QuerySpec, catalog: CatalogLike, epsilon: Decimal) -> Preview:
    """Expected accuracy and cost of ``spec`` at ``epsilon`` without running anything."""
    return compile_query(spec, catalog, epsilon).preview()


def epsilon_for(
    spec: QuerySpec,
    catalog: CatalogLike,
    ci95: float | None = None,
    *,
    rank_error95: float | None = None,
) -> Decimal:
    """The smallest budget (4 significant digits) at which every COUNT, SUM and COUNT(DISTINCT)
    cell of ``spec`` has a 95% half-width of at most ``ci95`` (in each statistic's unit) and
    every quantile output a ``rank_error95`` of at most ``rank_error95`` (number of values).

    Give either target or both; each must apply to at least one statistic of ``spec``."""
    dataset, delta = _dataset_and_delta(spec, catalog)
    plan = plan_query(spec, dataset)
    budget = epsilon_for_plan(plan, dataset.mechanism is Mechanism.GAUSSIAN, ci95, rank_error95)
    for _ in range(20):  # the calibrated scales may be a hair wider than the closed form
        stated = CompiledQuery(spec, dataset, delta, budget).preview()
        if (ci95 is None or all(v is None or v <= ci95 for v in stated.ci95.values())) and (
            rank_error95 is None or all(v <= rank_error95 for v in stated.rank_error95.values())
        ):
            return budget
        budget = check_budget_value((budget * Decimal("1.001")).quantize(Decimal("1e-12")))
    raise InternalError("Could not find a budget for the accuracy target.")

"""What the gateway returns, as notebook objects: DP releases, previews and dataset descriptions.

Provenance travels with the data: ``QueryResult.df.attrs`` holds the release id, the
epsilon spent, the dataset and the per-cell 95% confidence half-widths (STYLE.md).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


class QueryResult:
    """A differentially private release: the noisy table, its accuracy and its provenance."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        self.payload = dict(payload)
        self.release_id: str = str(payload["release_id"])
        self.dataset: str = str(payload["dataset"])
        self.project: str | None = payload.get("project")
        self.epsilon: str = str(payload.get("epsilon_spent", ""))
        self.cached: bool = bool(payload.get("cached", False))
        self.sql: str | None = payload.get("sql")
        self.budget: dict[str, Any] = dict(payload.get("budget") or {})
        #: quantile columns: 95% rank half-width in number of values (their ci95 is None)
        self.rank_error95: dict[str, float] = {
            str(k): float(v) for k, v in dict(payload.get("rank_error95") or {}).items()
        }
        columns: list[str] = list(payload["columns"])
        self.key_columns: list[str] = list(payload.get("key_columns") or [])
        self.value_columns: list[str] = [c for c in columns if c not in self.key_columns]
        rows: Sequence[Sequence[Any]] = payload.get("rows") or []
        ci_rows: Sequence[Sequence[Any]] = payload.get("ci95") or [[None] * len(columns) for _ in rows]
        self.df = pd.DataFrame([list(r) for r in rows], columns=columns)
        ci = pd.DataFrame([list(r) for r in ci_rows], columns=columns)
        for key in self.key_columns:
            ci[key] = self.df[key]
        self.ci95 = ci[columns]
        self.df.attrs.update(
            {
                "release_id": self.release_id,
                "epsilon": self.epsilon,
                "dataset": self.dataset,
                "project": self.project,
                "ci95": {
                    c: [None if v != v else v for v in self.ci95[c].tolist()] for c in self.value_columns
                },
                "sql": self.sql,
                "rank_error95": dict(self.rank_error95),
            }
        )

    def __repr__(self) -> str:
        return (
            f"<QueryResult release={self.release_id} dataset={self.dataset} epsilon={self.epsilon} "
            f"rows={len(self.df)}>"
        )

    def provenance(self) -> str:
        """One line naming the release, dataset, project and epsilon (for captions and exports)."""
        cached = " (repeat: no new charge)" if self.cached else ""
        project = f", project {self.project}" if self.project else ""
        return (
            f"DP release {self.release_id} of {self.dataset}{project}, epsilon={self.epsilon}{cached}; "
            "± is the 95% confidence half-width."
        )

    def plot(self, x: str | None = None, y: str | None = None, ax: Axes | None = None, **kwargs: Any) -> Axes:
        """Bar chart of ``y`` by ``x`` with 95% error bars (matplotlib, imported on first use)."""
        import matplotlib.pyplot as plt

        if not self.value_columns:
            raise ValueError("This release has no value columns to plot.")
        x = x or (self.key_columns[0] if self.key_columns else None)
        y = y or self.value_columns[0]
        if y not in self.value_columns:
            raise ValueError(f"y must be one of {self.value_columns}.")
        if ax is None:
            _, ax = plt.subplots()
        labels = self.df[x].astype(str).tolist() if x else [y]
        heights = pd.to_numeric(self.df[y], errors="coerce").tolist()
        errors = pd.to_numeric(self.ci95[y], errors="coerce").tolist()
        ax.bar(labels, heights, yerr=errors, capsize=3, **kwargs)
        ax.set_xlabel(x or "")
        ax.set_ylabel(y)
        ax.set_title(f"{self.dataset}: {y} (ε={self.epsilon}, 95% CI)")
        if len(labels) > 6:
            ax.tick_params(axis="x", labelrotation=45)
        return ax

    def _repr_html_(self) -> str:
        shown = pd.DataFrame(index=self.df.index)
        for c in self.df.columns:
            if c in self.value_columns:
                shown[c] = [
                    f"{_fmt(v)} ± {_fmt(e)}" if e is not None and e == e else _fmt(v)
                    for v, e in zip(self.df[c].tolist(), self.ci95[c].tolist(), strict=True)
                ]
            else:
                shown[c] = [_fmt(v) for v in self.df[c].tolist()]
        table_html: str = shown.to_html(index=False, escape=True, border=0)
        notes = [self.provenance()]
        bare = [c for c in self.value_columns if len(self.ci95) and self.ci95[c].isna().all()]
        if bare:
            ranks = [f"{c} ±{self.rank_error95[c]:,.4g} values" for c in bare if c in self.rank_error95]
            notes.append(
                f"No ± for {', '.join(bare)}: quantiles are public candidates with no value interval; "
                + (
                    f"95% rank error (rank_error95): {', '.join(ranks)}."
                    if ranks
                    else "sb.preview(...) gives their rank error (rank_error95)."
                )
            )
        return table_html + "".join(f"<p><small>{html.escape(n)}</small></p>" for n in notes)


class PreviewResult:
    """The expected accuracy and cost of a query, computed without spending budget."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        self.payload = dict(payload)
        self.dataset: str = str(payload["dataset"])
        self.epsilon: str = str(payload.get("epsilon", ""))
        self.budget: dict[str, Any] = dict(payload.get("budget") or {})
        aggregates = list(payload.get("aggregates") or [])
        columns = ["column", "aggregate", "ci95"]
        if any(a.get("rank_error95") is not None for a in aggregates):
            columns.append("rank_error95")  # quantiles: 95% rank half-width, in number of values
        self.df = pd.DataFrame(aggregates, columns=columns)
        self.df.attrs.update({"dataset": self.dataset, "epsilon": self.epsilon, "preview": True})

    @property
    def remaining(self) -> str | None:
        value = self.budget.get("available")
        return None if value is None else str(value)

    def __repr__(self) -> str:
        return f"<PreviewResult dataset={self.dataset} epsilon={self.epsilon} remaining={self.remaining}>"

    def _repr_html_(self) -> str:
        note = (
            f"Preview of {self.dataset}: this query would cost epsilon={self.epsilon}"
            + (
                f"; at most {self.remaining} can be spent on this dataset now."
                if self.remaining is not None
                else "."
            )
            + " Nothing was spent."
        )
        if "rank_error95" in self.df.columns:
            note += (
                " Quantiles have no value interval; rank_error95: with probability >= 95% the released "
                "value's rank among the cell's values is at most this many values further from the "
                "exact quantile's rank than the best public candidate's."
            )
        table_html: str = self.df.to_html(index=False, escape=True, border=0)
        return table_html + f"<p><small>{html.escape(note)}</small></p>"


class DatasetDescription:
    """Public metadata of one dataset: names, tier, provider, columns, budgets, conditions."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        self.payload = dict(payload)
        self.id: str = str(payload["id"])
        self.tier: str = str(payload.get("tier", ""))
        self.budgets: dict[str, Any] = dict(payload.get("budgets") or {})
        self.columns = pd.DataFrame(
            [
                {
                    "name": c.get("name"),
                    "type": c.get("type"),
                    "role": c.get("role"),
                    "lower": (c.get("bounds") or {}).get("lower"),
                    "upper": (c.get("bounds") or {}).get("upper"),
                    "domain": c.get("domain"),
                    "description": c.get("description", ""),
                }
                for c in payload.get("columns") or []
            ],
            columns=["name", "type", "role", "lower", "upper", "domain", "description"],
        )

    def __getitem__(self, key: str) -> Any:
        return self.payload[key]

    def __repr__(self) -> str:
        return f"<DatasetDescription {self.id} tier={self.tier} columns={len(self.columns)}>"

    def _repr_html_(self) -> str:
        name = self.payload.get("name") or {}
        head = f"{self.id} — {name.get('zh', '')} / {name.get('en', '')} ({self.tier})"
        providers = ", ".join(self.payload.get("provider_names") or self.payload.get("provider") or [])
        budgets = ", ".join(f"{k}={v}" for k, v in self.budgets.items())
        parts = [
            f"<h4>{html.escape(head)}</h4>",
            f"<p>{html.escape(str(self.payload.get('summary', '')))}</p>",
            f"<p><b>Provider:</b> {html.escape(providers)}; <b>budgets:</b> {html.escape(budgets)}</p>",
        ]
        conditions = self.payload.get("conditions")
        if conditions:
            parts.append(f"<p><b>Conditions:</b> {html.escape(str(conditions))}</p>")
        parts.append(self.columns.to_html(index=False, escape=True, border=0))
        return "".join(parts)

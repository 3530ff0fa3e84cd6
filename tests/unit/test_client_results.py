"""Notebook objects built from gateway payloads: quantile cells (no ± interval) and their rank error."""

from __future__ import annotations

from typing import Any

from sandbox.client.results import PreviewResult, QueryResult


def release_payload() -> dict[str, Any]:
    return {
        "release_id": "r-1",
        "dataset": "enterprise_tax",
        "project": "fin-lab",
        "epsilon_spent": "1",
        "cached": False,
        "sql": "SELECT credit_grade, COUNT(*), MEDIAN(vat_paid_wan) FROM enterprise_tax GROUP BY 1",
        "columns": ["credit_grade", "count", "median_vat_paid_wan"],
        "key_columns": ["credit_grade"],
        "rows": [["A", 120.0, 35.5], ["B", 80.0, 12.25]],
        "ci95": [[None, 27.0, None], [None, 27.0, None]],
    }


def test_quantile_cells_show_no_interval_and_point_to_the_rank_error() -> None:
    result = QueryResult(release_payload())
    html = result._repr_html_()
    assert "120 ± 27" in html and "35.5 ±" not in html
    assert "No ± for median_vat_paid_wan" in html and "rank_error95" in html
    assert result.df.attrs["ci95"]["median_vat_paid_wan"] == [None, None]


def test_a_release_with_its_rank_error_shows_it() -> None:
    payload = release_payload() | {"rank_error95": {"median_vat_paid_wan": 103.0}}
    result = QueryResult(payload)
    assert result.rank_error95 == {"median_vat_paid_wan": 103.0}
    assert result.df.attrs["rank_error95"] == {"median_vat_paid_wan": 103.0}
    assert "median_vat_paid_wan ±103 values" in result._repr_html_()


def test_releases_with_intervals_everywhere_carry_no_quantile_note() -> None:
    payload = release_payload()
    payload["columns"], payload["rows"] = ["credit_grade", "count"], [["A", 120.0], ["B", 80.0]]
    payload["ci95"] = [[None, 27.0], [None, 27.0]]
    assert "No ±" not in QueryResult(payload)._repr_html_()
    payload["rows"], payload["ci95"] = [], []
    assert "No ±" not in QueryResult(payload)._repr_html_()


def preview_payload(*aggregates: dict[str, Any]) -> dict[str, Any]:
    return {"dataset": "enterprise_tax", "project": "fin-lab", "epsilon": "1", "aggregates": list(aggregates)}


def test_preview_shows_rank_error95_for_quantiles() -> None:
    preview = PreviewResult(
        preview_payload(
            {"column": "count", "aggregate": "count", "ci95": 27.0, "rank_error95": None},
            {"column": "median_vat_paid_wan", "aggregate": "quantile", "ci95": None, "rank_error95": 309.0},
        )
    )
    assert list(preview.df.columns) == ["column", "aggregate", "ci95", "rank_error95"]
    assert preview.df["rank_error95"].tolist()[1] == 309.0
    html = preview._repr_html_()
    assert "309" in html and "rank_error95" in html and "Nothing was spent" in html


def test_preview_without_quantiles_keeps_its_columns() -> None:
    older = PreviewResult(preview_payload({"column": "count", "aggregate": "count", "ci95": 27.0}))
    newer = PreviewResult(
        preview_payload({"column": "count", "aggregate": "count", "ci95": 27.0, "rank_error95": None})
    )
    for preview in (older, newer):
        assert list(preview.df.columns) == ["column", "aggregate", "ci95"]
        assert "rank_error95" not in preview._repr_html_()

"""SDC for untraced aggregates, including the cases where ACRO lets disclosure through."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sandbox.export import sdc
from sandbox.export.results import CheckResult, Verdict
from sandbox.export.tables import ColumnKind, Statistic, infer_layout, make_table
from sandbox.policy.models import ExportThresholds, Tier

TH = ExportThresholds()


def run(
    header: list[str], rows: list[list[object]], tier: Tier = Tier.CONDITIONAL, **kw: object
) -> dict[str, CheckResult]:
    table = make_table(header, rows)
    inp = sdc.SdcInput(table, **kw)  # type: ignore[arg-type]
    return {r.name: r for r in sdc.check_table(inp, TH, tier=tier)}


def verdicts(results: dict[str, CheckResult]) -> dict[str, str]:
    return {k: v.verdict.value for k, v in results.items()}


# ---------------------------------------------------------------- minimum cell count


def test_min_cell_count_fails_small_groups_and_names_the_cell() -> None:
    r = run(["district", "n"], [["黄浦", 4], ["徐汇", 25], ["长宁", 0]])
    assert r["sdc_min_cell_count"].verdict == Verdict.FAIL
    assert "row 1 (district=黄浦), column 'n' = 4" in r["sdc_min_cell_count"].reason
    assert "长宁" not in r["sdc_min_cell_count"].reason  # zero cells are allowed


def test_min_cell_count_threshold_comes_from_policy() -> None:
    table = make_table(["district", "n"], [["黄浦", 4], ["徐汇", 25]])
    strict = sdc.check_min_cell_count(sdc.SdcInput(table), ExportThresholds(min_cell_count=30))
    lax = sdc.check_min_cell_count(sdc.SdcInput(table), ExportThresholds(min_cell_count=3))
    assert strict.verdict == Verdict.FAIL and "25" in strict.reason
    assert lax.verdict == Verdict.PASS


def test_amounts_over_a_small_row_count_fail() -> None:
    r = run(["sector", "firms", "revenue_sum"], [["C", 5, 1234.5], ["F", 40, 99.0]])
    assert r["sdc_min_cell_count"].verdict == Verdict.FAIL
    assert "summarises 5 units" in r["sdc_min_cell_count"].reason


def test_amounts_without_unit_counts_cannot_be_verified_and_say_so() -> None:
    r = run(["sector", "revenue_sum"], [["C", 1234.5], ["F", 99.0]])
    assert r["sdc_min_cell_count"].verdict == Verdict.WARN
    assert "gives no unit counts" in r["sdc_min_cell_count"].reason
    assert r["sdc_dominance"].verdict == Verdict.WARN
    assert "no contributor detail" in r["sdc_dominance"].reason


def test_explicit_unit_counts_are_used() -> None:
    r = run(["sector", "revenue_sum"], [["C", 1234.5], ["F", 99.0]], unit_counts={(0, "revenue_sum"): 3})
    assert r["sdc_min_cell_count"].verdict == Verdict.FAIL


# ---------------------------------------------------------------- dominance and p%


def test_dominance_with_contributor_detail() -> None:
    contributors = {(0, "revenue_sum"): [80, 20, 10, 10, 10, 5, 5, 5, 5, 5], (1, "revenue_sum"): [10] * 12}
    r = run(["sector", "firms", "revenue_sum"], [["C", 10, 155], ["F", 12, 120]], contributors=contributors)
    assert r["sdc_dominance"].verdict == Verdict.FAIL
    assert "largest unit holds 52%" in r["sdc_dominance"].reason
    assert "row 1 (sector=C)" in r["sdc_dominance"].reason and "row 2" not in r["sdc_dominance"].reason


def test_top_two_rule() -> None:
    contributors = {(0, "amount"): [40, 40, 5, 5, 5, 5]}  # top1 40% ok, top2 80% > 67%
    r = run(["k", "firms", "amount"], [["a", 10, 100]], contributors=contributors)
    assert r["sdc_dominance"].verdict == Verdict.FAIL
    assert "two largest 80%" in r["sdc_dominance"].reason


def test_dominance_limits_are_configurable() -> None:
    table = make_table(["k", "firms", "amount"], [["a", 10, 100]])
    inp = sdc.SdcInput(table, contributors={(0, "amount"): [40, 40, 5, 5, 5, 5]})
    lax = ExportThresholds(dominance_top1=Decimal("0.5"), dominance_top2=Decimal("0.85"))
    assert sdc.check_dominance(inp, lax).verdict == Verdict.PASS


def test_acro_dominant_max_is_caught_from_max_and_sum_columns() -> None:
    """ACRO publishes max alongside sums; a max that is 90% of the sum shows one firm dominates."""
    r = run(
        ["district", "n_firms", "revenue_sum", "revenue_max"],
        [["黄浦", 12, 1000, 900], ["徐汇", 15, 2000, 500]],
    )
    assert r["sdc_dominance"].verdict == Verdict.FAIL
    assert "'revenue_max' is 90% of the sum" in r["sdc_dominance"].reason
    assert r["sdc_extreme_values"].verdict == Verdict.FAIL


def test_cells_of_one_or_two_units_are_dominated_by_definition() -> None:
    r = run(["sector", "firms", "revenue_sum"], [["C", 2, 1000.5]])
    assert r["sdc_dominance"].verdict == Verdict.FAIL
    assert r["sdc_p_percent"].verdict == Verdict.FAIL


def test_p_percent_rule() -> None:
    header, rows = ["k", "firms", "amount"], [["a", 10, 109], ["b", 10, 220]]
    contributors = {(0, "amount"): [100, 5, 1, 1, 1, 1], (1, "amount"): [50, 50, 40, 40, 40]}
    r = run(header, rows, contributors=contributors)
    assert r["sdc_p_percent"].verdict == Verdict.FAIL
    assert "row 1" in r["sdc_p_percent"].reason and "row 2" not in r["sdc_p_percent"].reason


# ---------------------------------------------------------------- min / max / mode


def test_acro_mode_of_three_firms_is_refused() -> None:
    r = run(["industry", "n", "rate_mode"], [["C", 3, 4.35], ["F", 25, 5.1]])
    assert r["sdc_extreme_values"].verdict == Verdict.FAIL
    assert "'rate_mode' publishes a mode" in r["sdc_extreme_values"].reason
    assert r["sdc_min_cell_count"].verdict == Verdict.FAIL


def test_mode_without_any_count_column_is_still_refused() -> None:
    r = run(["industry", "众数"], [["C", 4.35]])
    assert r["sdc_extreme_values"].verdict == Verdict.FAIL


@pytest.mark.parametrize("header", ["max_fee", "最大值", "fee (maximum)", "最低费用", "min"])
def test_min_and_max_headers_are_refused(header: str) -> None:
    r = run(["dept", "visits", header], [["内科", 120, 1500.5]])
    assert r["sdc_extreme_values"].verdict == Verdict.FAIL


def test_describe_style_rows_named_max_are_refused() -> None:
    r = run(["statistic", "fee"], [["count", 120], ["mean", 300.5], ["max", 19999.0]])
    assert r["sdc_extreme_values"].verdict == Verdict.FAIL
    assert "row 3" in r["sdc_extreme_values"].reason


def test_textual_mode_column_is_refused() -> None:
    r = run(["district", "n", "most common product"], [["黄浦", 40, "信用贷"]])
    assert r["sdc_extreme_values"].verdict == Verdict.FAIL


# ---------------------------------------------------------------- totals after suppression


def test_acro_totals_after_suppression_leak_the_cell() -> None:
    """Margins computed before suppression (ACRO crosstab margins=True): the cell is total − others."""
    r = run(
        ["district", "信用贷", "抵押贷", "All"],
        [["黄浦", 12, "*", 20], ["徐汇", 15, 30, 45], ["All", 27, 38, 65]],
    )
    res = r["sdc_totals"]
    assert res.verdict == Verdict.FAIL
    assert "row 1 (district=黄浦), column '抵押贷'" in res.reason
    assert "= 8" not in res.reason  # the recovered value is not repeated


def test_totals_recomputed_from_published_cells_pass() -> None:
    r = run(
        ["district", "信用贷", "抵押贷", "合计"],
        [["黄浦", 12, "*", 12], ["徐汇", 15, 30, 45], ["合计", 27, 30, 57]],
    )
    assert r["sdc_totals"].verdict == Verdict.PASS
    assert "recomputed" in r["sdc_totals"].reason


def test_suppressed_totals_pass() -> None:
    r = run(
        ["district", "信用贷", "抵押贷", "合计"],
        [["黄浦", 12, "<10", "x"], ["徐汇", 15, 30, 45], ["合计", 27, "x", "x"]],
    )
    assert r["sdc_totals"].verdict == Verdict.PASS


def test_complementary_suppression_is_not_recoverable_but_warns() -> None:
    r = run(
        ["district", "a", "b", "c", "Total"],
        [
            ["黄浦", 12, "*", "*", 40],
            ["徐汇", 15, "*", "*", 50],
            ["长宁", 20, 30, 25, 75],
            ["Total", 47, 70, 48, 165],
        ],
    )
    assert r["sdc_totals"].verdict == Verdict.WARN
    assert "no single cell can be recovered" in r["sdc_totals"].reason


def test_unlabelled_total_row_and_column_are_inferred() -> None:
    r = run(
        ["k", "a", "b", "c"],
        [["p", 12, 13, 25], ["q", 15, 16, 31], ["r", 11, "", 30], ["s", 38, 48, 86]],
    )
    layout = infer_layout(make_table(["k", "a", "b", "c"], [["p", 12, 13, 25], ["q", 15, 16, 31]]))
    assert layout.total_column == "c"
    assert r["sdc_totals"].verdict == Verdict.FAIL


def test_recovered_small_sum_of_two_suppressed_cells_fails() -> None:
    r = run(
        ["district", "a", "b", "c", "Total"],
        [["黄浦", 40, "*", "*", 45], ["徐汇", 15, 30, 25, 70]],
    )
    assert r["sdc_totals"].verdict == Verdict.FAIL
    assert "together hold 5" in r["sdc_totals"].reason


# ---------------------------------------------------------------- scope


def test_open_data_needs_no_disclosure_control() -> None:
    r = run(["district", "n"], [["黄浦", 1]], tier=Tier.OPEN)
    assert set(verdicts(r).values()) == {"pass"}
    assert "open data only" in r["sdc_min_cell_count"].reason


def test_traced_numbers_are_not_checked() -> None:
    r = run(["district", "n"], [["黄浦", 1]], untraced=frozenset())
    assert set(verdicts(r).values()) == {"pass"}


def test_only_untraced_cells_are_checked() -> None:
    r = run(["district", "n"], [["黄浦", 1], ["徐汇", 2]], untraced=frozenset({(1, "n")}))
    assert "徐汇" in r["sdc_min_cell_count"].reason and "黄浦" not in r["sdc_min_cell_count"].reason


def test_layout_inference_explains_itself() -> None:
    layout = infer_layout(
        make_table(
            ["Unnamed: 0", "year", "x", "rate_pct", "fee_mean"],
            [[0, 2018, 3, 1.5, 2.5], [1, 2019, 4, 2.5, 3.5]],
        )
    )
    assert layout.kinds["Unnamed: 0"] == ColumnKind.LABEL
    assert layout.kinds["year"] == ColumnKind.LABEL
    assert layout.kinds["x"] == ColumnKind.COUNT
    assert layout.statistics["rate_pct"] == Statistic.SHARE
    assert layout.statistics["fee_mean"] == Statistic.MEAN
    assert any("'x' read as counts" in n for n in layout.notes)

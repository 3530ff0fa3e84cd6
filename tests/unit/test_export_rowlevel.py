"""Row-level data from non-open datasets never leaves (SR-21, SR-25.5)."""

from __future__ import annotations

from sandbox.export.context import SourceDataset
from sandbox.export.results import Verdict
from sandbox.export.rowlevel import check_row_level
from sandbox.export.tables import make_table
from sandbox.policy.models import ExportThresholds, Tier

TAX = SourceDataset(
    "enterprise_tax",
    Tier.CONDITIONAL,
    columns=("uscc", "tax_year", "credit_grade", "vat_paid_wan"),
    privacy_unit="uscc",
    unit_count=2000,
)
VENUES = SourceDataset("venues", Tier.OPEN, columns=("venue_id", "name"), unit_count=500)
TH = ExportThresholds()


def table(n: int, header: tuple[str, ...] = ("credit_grade", "vat_paid_wan")) -> object:
    return make_table(list(header), [["A", i * 1.5] for i in range(n)])


def test_near_one_row_per_unit_fails_without_revealing_the_unit_count() -> None:
    res = check_row_level(table(1200), [TAX], TH)  # type: ignore[arg-type]
    assert res.verdict == Verdict.FAIL
    assert "row-level" in res.reason and "2000" not in res.reason and "2,000" not in res.reason


def test_small_aggregate_passes() -> None:
    assert check_row_level(table(5), [TAX], TH).verdict == Verdict.PASS  # type: ignore[arg-type]


def test_more_rows_than_units_can_fill_warns() -> None:
    assert check_row_level(table(300), [TAX], TH).verdict == Verdict.WARN  # type: ignore[arg-type]


def test_privacy_unit_column_fails_even_for_few_rows() -> None:
    res = check_row_level(make_table(["uscc", "n"], [["x", 1]]), [TAX], TH)
    assert res.verdict == Verdict.FAIL and "identifies units of enterprise_tax" in res.reason


def test_identifier_like_header_fails_for_non_open_sources() -> None:
    res = check_row_level(make_table(["姓名", "n"], [["x", 1]]), [TAX], TH)
    assert res.verdict == Verdict.FAIL and "looks like an identifier" in res.reason


def test_open_data_rows_may_leave() -> None:
    many = make_table(["venue_id", "name"], [[str(i), "x"] for i in range(500)])
    assert check_row_level(many, [VENUES], TH).verdict == Verdict.PASS


def test_traced_dp_tables_are_not_row_level() -> None:
    res = check_row_level(table(1200), [TAX], TH, all_traced=True)  # type: ignore[arg-type]
    assert res.verdict == Verdict.PASS


def test_unknown_unit_count_warns_for_large_tables() -> None:
    src = SourceDataset("x", Tier.RESTRICTED, columns=("credit_grade",))
    assert check_row_level(table(1500), [src], TH).verdict == Verdict.WARN  # type: ignore[arg-type]

"""Provenance: numbers trace to the project's DP releases (SR-25.3)."""

from __future__ import annotations

from decimal import Decimal

from sandbox.export.provenance import DpRelease, provenance_result, trace_table
from sandbox.export.results import Verdict
from sandbox.export.tables import make_table
from sandbox.policy.models import Tier

# As stored by the query service (releases.result): columns, key_columns, rows, ci95.
RELEASE = DpRelease.from_mapping(
    {
        "release_id": "rel-1",
        "dataset": "enterprise_tax",
        "epsilon": "0.1",
        "columns": ["district_code", "count", "avg_vat_paid_wan"],
        "key_columns": ["district_code"],
        "rows": [["310101", 1523.0, 12.3456], ["310104", 2210.0, 9.8765], ["310105", 87.0, 30.5]],
        "ci95": [[None, 39.2, 0.81], [None, 39.2, 0.55], [None, 39.2, 4.2]],
    }
)


def test_exact_values_trace() -> None:
    table = make_table(["district_code", "count", "avg_vat_paid_wan"], [["310101", "1523", "12.3456"]])
    trace = trace_table(table, [RELEASE])
    assert not trace.untraced and trace.release_ids == ["rel-1"]
    assert "district_code" in trace.label_columns


def test_values_rounded_at_displayed_precision_trace() -> None:
    table = make_table(
        ["district_code", "count", "avg"], [["310101", "1,523", "12.3"], ["310104", "2210", "10"]]
    )
    trace = trace_table(table, [RELEASE])
    assert not trace.untraced


def test_confidence_intervals_and_their_ends_trace() -> None:
    table = make_table(["k", "est", "ci95", "lower", "upper"], [["a", "12.35", "0.81", "11.54", "13.16"]])
    assert not trace_table(table, [RELEASE]).untraced


def test_numbers_not_in_any_release_are_untraced() -> None:
    table = make_table(["district_code", "count"], [["310101", "1523"], ["310104", "2300"]])
    trace = trace_table(table, [RELEASE])
    assert trace.untraced == [(1, "count")]


def test_rounding_is_not_stretched_beyond_the_displayed_precision() -> None:
    table = make_table(["k", "avg"], [["a", "12.35"]])  # 12.3456 rounds to 12.35 at 2 places: traces
    assert not trace_table(table, [RELEASE]).untraced
    table = make_table(["k", "avg"], [["a", "12.34"]])
    assert trace_table(table, [RELEASE]).untraced == [(0, "avg")]


def test_key_columns_are_inferred_from_missing_intervals() -> None:
    release = DpRelease.from_mapping(
        {"id": "r2", "columns": ["hour", "trips"], "rows": [[7, 5012.4]], "ci95": [[None, 20.1]]}
    )
    assert release.inferred_keys() == {"hour"}
    table = make_table(["hour", "trips"], [["7", "5012"]])
    trace = trace_table(table, [release])
    assert not trace.untraced and "hour" in trace.label_columns


def test_rows_as_dicts_and_ci_by_column() -> None:
    release = DpRelease.from_mapping(
        {"release_id": "r3", "rows": [{"g": "a", "n": 100.2}], "ci95": {"n": [3.1]}, "key_columns": ["g"]}
    )
    assert release.columns == ("g", "n")
    assert sorted(release.traceable_values()) == [Decimal(v) for v in ("3.1", "97.1", "100.2", "103.3")]


def test_verdicts_by_tier() -> None:
    table = make_table(["district_code", "count"], [["310101", "1523"], ["310104", "9999"]])
    trace = trace_table(table, [RELEASE])
    assert provenance_result(table, trace, Tier.OPEN).verdict == Verdict.PASS
    assert provenance_result(table, trace, Tier.CONDITIONAL).verdict == Verdict.WARN
    res = provenance_result(table, trace, Tier.RESTRICTED, releases=[RELEASE])
    assert res.verdict == Verdict.FAIL
    assert "1 of 2 numbers" in res.reason and "row 2, column 'count'" in res.reason
    assert "rel-1 (ε=0.1)" in res.reason


def test_all_traced_passes_and_cites_release_and_epsilon() -> None:
    table = make_table(["district_code", "count"], [["310101", "1523"]])
    res = provenance_result(table, trace_table(table, [RELEASE]), Tier.RESTRICTED, releases=[RELEASE])
    assert res.verdict == Verdict.PASS and "rel-1 (ε=0.1)" in res.reason


def test_releases_of_other_projects_are_not_consulted() -> None:
    table = make_table(["district_code", "count"], [["310101", "1523"]])
    assert trace_table(table, []).untraced == [(0, "count")]


def _counts(release_id: str, counts: list[int]) -> DpRelease:
    return DpRelease.from_mapping(
        {
            "release_id": release_id,
            "columns": ["grade", "n"],
            "key_columns": ["grade"],
            "rows": [[g, c] for g, c in zip("ABCDE", counts, strict=False)],
        }
    )


def test_a_chance_collision_with_an_older_release_is_not_cited() -> None:
    # "a-old" sorts first and shares one count by chance; the exported release explains every cell.
    older = _counts("a-old", [5000, 17, 4000])
    exported = _counts("b-new", [301, 17, 88, 1200])
    table = make_table(["grade", "n"], [["A", "301"], ["B", "17"], ["C", "88"], ["D", "1200"]])
    for releases in ([older, exported], [exported, older]):
        trace = trace_table(table, releases)
        assert trace.release_ids == ["b-new"]
        assert set(trace.traced.values()) == {"b-new"} and not trace.untraced


def test_cells_go_to_the_fewest_releases_that_explain_them() -> None:
    # x explains cells 1-2, y cells 2-3, z cells 1-4: z alone suffices.
    x, y, z = _counts("x", [1, 2]), _counts("y", [2, 3]), _counts("z", [1, 2, 3, 4])
    table = make_table(["grade", "n"], [["A", "1"], ["B", "2"], ["C", "3"], ["D", "4"]])
    assert trace_table(table, [x, y, z]).release_ids == ["z"]
    # Without z, two releases are needed; each cell names one that holds its value.
    three = make_table(["grade", "n"], [["A", "1"], ["B", "2"], ["C", "3"]])
    trace = trace_table(three, [x, y])
    assert len(trace.release_ids) == 2 and not trace.untraced
    values = {"x": {1, 2}, "y": {2, 3}}
    for (pos, _col), rid in trace.traced.items():
        assert pos + 1 in values[rid]

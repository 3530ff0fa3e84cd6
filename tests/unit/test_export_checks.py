"""run_checks end to end on in-memory files (CSV, XLSX, JSON, PNG, TXT, Markdown; PDF: test_export_pdf)."""

from __future__ import annotations

import io
import json
import struct
import zlib

import openpyxl
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.errors import ExportRejected
from sandbox.export.checks import (
    CHECK_ORDER,
    CheckContext,
    DpRelease,
    SourceDataset,
    overall_verdict,
    run_checks,
)
from sandbox.export.results import CheckResult, Verdict
from sandbox.policy.models import ExportThresholds, Tier

TAX = SourceDataset(
    "enterprise_tax",
    Tier.CONDITIONAL,
    columns=("uscc", "tax_year", "credit_grade", "vat_paid_wan", "district_code"),
    privacy_unit="uscc",
    unit_count=5000,
    providers=("tax",),
)
VISITS = SourceDataset("outpatient_visits", Tier.RESTRICTED, privacy_unit="patient_pseudo", unit_count=9000)
VENUES = SourceDataset("venues", Tier.OPEN, columns=("venue_id", "name", "district_code"))
RELEASE = DpRelease.from_mapping(
    {
        "release_id": "rel-7",
        "dataset": "enterprise_tax",
        "epsilon": "0.5",
        "columns": ["district_code", "count", "avg_vat_paid_wan"],
        "key_columns": ["district_code"],
        "rows": [["310101", 1523.4, 12.3456], ["310104", 2210.1, 9.8765], ["310105", None, None]],
        "ci95": [[None, 39.2, 0.81], [None, 39.2, 0.55], [None, None, None]],
    }
)


def ctx(*sources: SourceDataset, releases: tuple[DpRelease, ...] = (RELEASE,), **kw: object) -> CheckContext:
    return CheckContext("fin-lab", sources=sources, releases=releases, **kw)  # type: ignore[arg-type]


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def csv_bytes(df: pd.DataFrame, **kw: object) -> bytes:
    return df.to_csv(index=False, **kw).encode("utf-8")  # type: ignore[call-overload, no-any-return]


# ---------------------------------------------------------------- DP release as CSV


def test_dp_release_exported_as_csv_passes_every_check() -> None:
    df = pd.DataFrame(
        {
            "district_code": ["310101", "310104", "310105"],
            "count": [1523, 2210, None],
            "avg_vat_paid_wan": [12.35, 9.88, None],
        }
    )
    results = run_checks(csv_bytes(df), "by_district.csv", ctx(TAX))
    names = [r.name for r in results]
    assert names == [n for n in CHECK_ORDER if n in names]
    assert overall_verdict(results) == Verdict.PASS, [r for r in results if r.verdict != Verdict.PASS]
    prov = by_name(results)["provenance"]
    assert "rel-7 (ε=0.5)" in prov.reason


def test_dp_release_json_as_returned_by_the_cli_passes() -> None:
    doc = {
        "release_id": "rel-7",
        "dataset": "enterprise_tax",
        "epsilon_spent": "0.5",
        "columns": ["district_code", "count", "avg_vat_paid_wan"],
        "rows": [["310101", 1523.4, 12.3456], ["310104", 2210.1, 9.8765]],
    }
    results = by_name(run_checks(json.dumps(doc).encode(), "release.json", ctx(TAX)))
    assert results["provenance"].verdict == Verdict.PASS
    assert overall_verdict(results.values()) == Verdict.PASS


def test_untraced_small_counts_from_conditional_data_fail() -> None:
    df = pd.DataFrame({"credit_grade": ["A", "B", "D"], "n": [400, 120, 3]})
    results = by_name(run_checks(csv_bytes(df), "grades.csv", ctx(TAX)))
    assert results["provenance"].verdict == Verdict.WARN
    assert results["sdc_min_cell_count"].verdict == Verdict.FAIL


def test_untraced_numbers_from_restricted_data_fail_provenance() -> None:
    df = pd.DataFrame({"dept": ["内科", "外科"], "visits": [4000, 3000]})
    results = by_name(run_checks(csv_bytes(df), "visits.csv", ctx(VISITS)))
    assert results["provenance"].verdict == Verdict.FAIL


def test_open_data_tables_need_no_trace_or_sdc() -> None:
    df = pd.DataFrame({"district_code": ["310101"], "venues": [3]})
    results = run_checks(csv_bytes(df), "venues.csv", ctx(VENUES, releases=()))
    assert overall_verdict(results) == Verdict.PASS


# ---------------------------------------------------------------- identifiers in files


def test_resident_id_in_a_csv_cell_fails_and_is_masked() -> None:
    df = pd.DataFrame({"note": ["see 11010519491231002X"], "n": [20]})
    res = by_name(run_checks(csv_bytes(df), "x.csv", ctx(VENUES)))["identifiers"]
    assert res.verdict == Verdict.FAIL
    assert "11010519491231002X" not in res.reason and "110*************2X" in res.reason
    assert "row 1, column 'note'" in res.reason


def test_phone_column_fails_from_conditional_and_warns_from_open() -> None:
    df = pd.DataFrame({"联系电话": ["138 0013 8000"], "n": [20]})
    assert by_name(run_checks(csv_bytes(df), "x.csv", ctx(TAX)))["identifiers"].verdict == Verdict.FAIL
    assert by_name(run_checks(csv_bytes(df), "x.csv", ctx(VENUES)))["identifiers"].verdict == Verdict.WARN


def test_uscc_allowed_from_open_data_blocked_from_enterprise_data() -> None:
    df = pd.DataFrame({"inst_uscc": ["91310115MA1K3AB001"], "beds": [300]})
    assert by_name(run_checks(csv_bytes(df), "x.csv", ctx(VENUES)))["identifiers"].verdict == Verdict.PASS
    assert by_name(run_checks(csv_bytes(df), "x.csv", ctx(TAX)))["identifiers"].verdict == Verdict.FAIL


def test_text_file_is_scanned_with_line_numbers() -> None:
    text = "结果说明\n联系人手机：13800138000\n"
    res = by_name(run_checks(text.encode(), "notes.txt", ctx(TAX)))["identifiers"]
    assert res.verdict == Verdict.FAIL and "line 2" in res.reason


def test_markdown_pipe_tables_are_checked_as_tables() -> None:
    md = "# Result\n\n| grade | n |\n|---|---|\n| A | 400 |\n| D | 2 |\n"
    results = by_name(run_checks(md.encode(), "r.md", ctx(TAX)))
    assert results["sdc_min_cell_count"].verdict == Verdict.FAIL
    assert "table 1 (line 3)" in results["sdc_min_cell_count"].reason


def test_json_records_and_nested_documents() -> None:
    records = [{"grade": "A", "n": 400}, {"grade": "D", "n": 2}]
    assert by_name(run_checks(json.dumps(records).encode(), "r.json", ctx(TAX)))[
        "sdc_min_cell_count"
    ].verdict == (Verdict.FAIL)
    nested = {"summary": {"owner": "tel 13800138000"}, "stats": {"max_fee": 19999.5}}
    results = by_name(run_checks(json.dumps(nested, ensure_ascii=False).encode(), "n.json", ctx(VISITS)))
    assert results["identifiers"].verdict == Verdict.FAIL
    assert results["provenance"].verdict == Verdict.FAIL


# ---------------------------------------------------------------- XLSX


def xlsx(sheets: dict[str, list[list[object]]], hidden: str | None = None) -> bytes:
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for title, rows in sheets.items():
        ws = wb.create_sheet(title)
        for row in rows:
            ws.append(row)
        if title == hidden:
            ws.sheet_state = "hidden"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def test_xlsx_every_sheet_is_checked_including_hidden_ones() -> None:
    data = xlsx(
        {
            "summary": [["district_code", "count"], ["310101", 1523]],
            "raw": [["name", "phone"], ["x", 13800138000]],
        },
        hidden="raw",
    )
    results = by_name(run_checks(data, "book.xlsx", ctx(TAX)))
    assert results["file_type"].verdict == Verdict.WARN and "hidden" in results["file_type"].reason
    assert results["identifiers"].verdict == Verdict.FAIL
    assert "sheet 'raw'" in results["identifiers"].reason
    assert results["row_level"].verdict == Verdict.FAIL


def test_xlsx_title_rows_are_skipped_and_scanned() -> None:
    data = xlsx({"t": [["表1 按区统计"], [], ["district_code", "count"], ["310101", 1523]]})
    results = by_name(run_checks(data, "t.xlsx", ctx(TAX)))
    assert results["provenance"].verdict == Verdict.PASS


# ---------------------------------------------------------------- images


def png(text: str | None = None) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
    if text:
        out += chunk(b"tEXt", b"Comment\x00" + text.encode("latin-1"))
    return out + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b"")


def test_png_always_needs_a_human_and_its_text_chunks_are_scanned() -> None:
    results = by_name(run_checks(png("card 6217000000000000004"), "fig.png", ctx(TAX)))
    assert results["human_review"].verdict == Verdict.WARN
    assert "steward must look" in results["human_review"].reason
    assert results["identifiers"].verdict == Verdict.FAIL


# ---------------------------------------------------------------- rejections


@pytest.mark.parametrize(
    ("data", "name", "message", "hint"),
    [
        (b"", "a.csv", "is empty", "written"),
        (b"a,b\n1,2\n", "a.parquet", "does not accept .parquet", "CSV"),
        (b"a,b\n1,2\n", "a.exe", "does not accept .exe", "Accepted types"),
        (b"a,b\n1,2\n", "noext", "files without an extension", "Accepted types"),
        (b"not a png", "fig.png", "not a PNG file", "real type"),
        (b"%PDF-1.4", "t.csv", "holds a binary file", "real extension"),
        ("区,人数\n黄浦,12\n".encode("gbk"), "gbk.csv", "not valid UTF-8", "UTF-8"),
        (b'a,b\n"1,2\n', "bad.csv", "not well-formed CSV", "quotes"),
        (b"{not json", "x.json", "not valid JSON", "json.dump"),
        (b"PK\x03\x04garbage", "x.xlsx", "not a valid .xlsx", "Save it again"),
    ],
)
def test_unusable_files_are_rejected_with_a_hint(data: bytes, name: str, message: str, hint: str) -> None:
    with pytest.raises(ExportRejected, match=message) as info:
        run_checks(data, name, ctx(TAX))
    assert hint in info.value.hint
    assert info.value.to_dict()["error"]["code"] == "export_invalid"


def test_size_limit_comes_from_thresholds() -> None:
    with pytest.raises(ExportRejected, match="export limit is 10 bytes"):
        run_checks(b"a,b\n1,2\n3,4\n", "a.csv", ctx(TAX, thresholds=ExportThresholds(max_file_bytes=10)))


def test_unknown_lineage_counts_as_restricted() -> None:
    df = pd.DataFrame({"k": ["a"], "n": [400]})
    results = by_name(run_checks(csv_bytes(df), "a.csv", CheckContext("p")))
    assert results["lineage"].verdict == Verdict.WARN
    assert results["provenance"].verdict == Verdict.FAIL


@given(
    st.lists(
        st.lists(
            st.sampled_from(["", "*", "<10", "3", "12.5", "x", "合计", "1,234", "13800138000"]),
            min_size=3,
            max_size=3,
        ),
        max_size=8,
    )
)
@settings(max_examples=60, deadline=None)
def test_any_csv_of_plausible_cells_yields_one_result_per_check(rows: list[list[str]]) -> None:
    text = "k,a,b\n" + "\n".join(",".join(f'"{c}"' for c in r) for r in rows) + "\n"
    results = run_checks(text.encode(), "h.csv", ctx(TAX))
    names = [r.name for r in results]
    assert len(names) == len(set(names)) and names[:3] == ["file_type", "lineage", "identifiers"]

"""PDFs at the export gate: their text is read with pypdf and checked like a text file's.

Real PDFs, written in the test by matplotlib's PDF backend and pypdf (``tests/support/pdfs.py``).
Identifier fixtures are the REQUIREMENTS §7.6 vectors, 合成/SYNTHETIC (SR-40).
"""

from __future__ import annotations

import io

import pytest
from matplotlib.figure import Figure
from support.pdfs import image_pdf, rewrite, text_pdf
from test_export_checks import TAX, VISITS, by_name, ctx  # sibling module: shared fixtures

from sandbox.export import readers
from sandbox.export.checks import overall_verdict, run_checks
from sandbox.export.results import Verdict

RESIDENT_ID = "11010519491231002X"  # valid date and check character
MASKED_ID = "110*************2X"
DP_TABLE = [
    "Table 2. Enterprises by district (DP release rel-7)",
    "| district_code | count | avg_vat_paid_wan |",
    "|---|---|---|",
    "| 310101 | 1523 | 12.35 |",
    "| 310104 | 2210 | 9.88 |",
]


def test_dp_table_in_a_pdf_passes_identifiers_and_traces_to_the_release() -> None:
    results = run_checks(text_pdf([DP_TABLE]), "paper.pdf", ctx(TAX))
    checks = by_name(results)
    assert checks["file_type"].verdict == Verdict.PASS and "1 table(s)" in checks["file_type"].reason
    assert checks["identifiers"].verdict == Verdict.PASS
    assert checks["provenance"].verdict == Verdict.PASS
    assert "page 1, table 1 (line 2): all 4 numbers trace" in checks["provenance"].reason
    assert "rel-7 (ε=0.5)" in checks["provenance"].reason
    review = checks["human_review"]
    assert review.verdict == Verdict.WARN
    assert "text of the PDF was checked (1 page(s))" in review.reason
    assert "figures and images were not" in review.reason
    assert overall_verdict(results) == Verdict.WARN  # a steward still looks at the figures


def test_untraced_small_counts_in_a_pdf_table_go_through_sdc() -> None:
    table = ["| credit_grade | n |", "|---|---|", "| A | 400 |", "| D | 3 |"]
    checks = by_name(run_checks(text_pdf([["Grades"], table]), "grades.pdf", ctx(TAX)))
    assert checks["provenance"].verdict == Verdict.WARN
    assert checks["sdc_min_cell_count"].verdict == Verdict.FAIL
    assert "page 2, table 1" in checks["sdc_min_cell_count"].reason


def test_untraced_numbers_from_restricted_data_fail_in_a_pdf_too() -> None:
    table = ["| dept | visits |", "|---|---|", "| A | 4000 |", "| B | 3000 |"]
    assert by_name(run_checks(text_pdf([table]), "v.pdf", ctx(VISITS)))["provenance"].verdict == Verdict.FAIL


def test_resident_id_in_the_page_text_fails_naming_the_page() -> None:
    data = text_pdf([DP_TABLE, ["Appendix", f"Contact: {RESIDENT_ID}"]])
    res = by_name(run_checks(data, "paper.pdf", ctx(TAX)))["identifiers"]
    assert res.verdict == Verdict.FAIL
    assert f"resident ID number {MASKED_ID} at page 2" in res.reason
    assert RESIDENT_ID not in res.reason


@pytest.mark.parametrize("field", ["Author", "Title"])
def test_resident_id_in_the_document_metadata_fails(field: str) -> None:
    data = text_pdf([DP_TABLE], metadata={field: f"id {RESIDENT_ID}"})
    res = by_name(run_checks(data, "paper.pdf", ctx(TAX)))["identifiers"]
    assert res.verdict == Verdict.FAIL
    assert f"{MASKED_ID} at PDF metadata /{field}" in res.reason


def test_hidden_text_is_checked_too() -> None:
    fig = Figure(figsize=(3, 3))
    fig.text(0.1, 0.5, "Figure 1")
    fig.text(0.1, 0.3, "13800138000", color="white")  # white on white
    fig.text(-2, -2, "card 6217000000000000004")  # outside the page
    buf = io.BytesIO()
    fig.savefig(buf, format="pdf")
    res = by_name(run_checks(buf.getvalue(), "fig.pdf", ctx(TAX)))["identifiers"]
    assert res.verdict == Verdict.FAIL
    assert "mobile" in res.reason and "bank card" in res.reason


def test_phone_in_a_sticky_note_annotation_fails() -> None:
    data = rewrite(text_pdf([DP_TABLE]), note="call 13800138000")
    res = by_name(run_checks(data, "paper.pdf", ctx(TAX)))["identifiers"]
    assert res.verdict == Verdict.FAIL and "page 1, annotation" in res.reason


def test_encrypted_pdf_fails_file_type_with_what_to_do() -> None:
    data = rewrite(text_pdf([["Contact:", RESIDENT_ID]]), password="s3cret")
    results = run_checks(data, "paper.pdf", ctx(TAX))
    checks = by_name(results)
    file_type = checks["file_type"]
    assert file_type.verdict == Verdict.FAIL
    assert "encrypted" in file_type.reason and "export it again without a password" in file_type.reason
    assert checks["identifiers"].verdict == Verdict.WARN
    assert "could not read all of the file" in checks["identifiers"].reason
    assert checks["human_review"].verdict == Verdict.WARN
    assert overall_verdict(results) == Verdict.FAIL


def test_pdf_encrypted_without_an_open_password_is_read() -> None:
    data = rewrite(text_pdf([["Contact:", RESIDENT_ID]]), password="")
    checks = by_name(run_checks(data, "paper.pdf", ctx(TAX)))
    assert checks["file_type"].verdict == Verdict.WARN and "permissions only" in checks["file_type"].reason
    assert checks["identifiers"].verdict == Verdict.FAIL and "page 1" in checks["identifiers"].reason


@pytest.mark.parametrize(
    "data",
    [b"%PDF-1.7\n%...\n", text_pdf([DP_TABLE])[:700], b"%PDF-1.4\n" + bytes(range(256)) * 20],
    ids=["header-only", "truncated", "garbage"],
)
def test_pdf_pypdf_cannot_read_fails_file_type_and_never_raises(data: bytes) -> None:
    results = run_checks(data, "paper.pdf", ctx(TAX))
    file_type = by_name(results)["file_type"]
    assert file_type.verdict == Verdict.FAIL
    assert "could not be read" in file_type.reason and "save or print it again" in file_type.reason
    assert overall_verdict(results) == Verdict.FAIL


def test_image_only_pdf_needs_a_human_look() -> None:
    results = by_name(run_checks(image_pdf(), "scan.pdf", ctx(TAX)))
    review = results["human_review"]
    assert review.verdict == Verdict.WARN
    assert "no extractable text" in review.reason and "steward must read it" in review.reason
    assert results["file_type"].verdict == Verdict.WARN
    assert "no page has extractable text" in results["file_type"].reason
    assert results["identifiers"].verdict == Verdict.PASS


def test_pages_without_text_and_pages_with_images_are_named() -> None:
    data = text_pdf([DP_TABLE, []])
    results = by_name(run_checks(data, "paper.pdf", ctx(TAX)))
    assert "page(s) 2 have no extractable text" in results["file_type"].reason
    assert results["human_review"].verdict == Verdict.WARN
    assert "text of the PDF was checked (2 page(s))" in results["human_review"].reason


def test_page_cap_fails_file_type_and_still_checks_the_pages_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers, "MAX_PDF_PAGES", 2)
    data = text_pdf([[f"Contact: {RESIDENT_ID}"], DP_TABLE, ["page three"]])
    results = by_name(run_checks(data, "long.pdf", ctx(TAX)))
    assert results["file_type"].verdict == Verdict.FAIL
    assert "the PDF has 3 pages and the gate reads at most 2" in results["file_type"].reason
    assert "split it" in results["file_type"].reason
    assert results["identifiers"].verdict == Verdict.FAIL and "page 1" in results["identifiers"].reason


def test_default_page_cap() -> None:
    data = rewrite(text_pdf([DP_TABLE]), blank_pages=readers.MAX_PDF_PAGES)
    file_type = by_name(run_checks(data, "long.pdf", ctx(TAX)))["file_type"]
    assert file_type.verdict == Verdict.FAIL
    assert f"{readers.MAX_PDF_PAGES + 1} pages" in file_type.reason


def test_character_cap_fails_file_type(monkeypatch: pytest.MonkeyPatch) -> None:
    data = text_pdf([["short"], DP_TABLE])
    before_page_2 = readers.parse_file(data, "long.pdf", max_bytes=10**6).texts[:-1]  # metadata, page 1
    cap = sum(len(text) for text, _ in before_page_2) + 10
    monkeypatch.setattr(readers, "MAX_PDF_CHARS", cap)
    results = by_name(run_checks(data, "long.pdf", ctx(TAX)))
    assert results["file_type"].verdict == Verdict.FAIL
    assert (
        f"more than {cap:,} characters of text (the cap was reached at page 2)" in results["file_type"].reason
    )
    assert results["identifiers"].verdict == Verdict.WARN


def test_attached_files_fail_file_type() -> None:
    data = rewrite(text_pdf([DP_TABLE]), attachment=("rows.csv", b"uscc,vat\nU1,3\n"))
    file_type = by_name(run_checks(data, "paper.pdf", ctx(TAX)))["file_type"]
    assert file_type.verdict == Verdict.FAIL
    assert "attached files ('rows.csv')" in file_type.reason and "on its own" in file_type.reason

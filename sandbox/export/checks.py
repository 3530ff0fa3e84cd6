"""The export gate's automatic checks (DESIGN §5 step 2, SR-25). Pure: bytes in, verdicts out.

``run_checks(file_bytes, filename, context)`` returns one :class:`CheckResult` per
check name, in a fixed order:

=====================  ============================================================
``file_type``          type and size are accepted (otherwise ``ExportRejected``)
``lineage``            which datasets and tiers the file derives from (SR-25.2)
``identifiers``        ID numbers, USCC, phones, bank cards, plates, e-mail, passports,
                       identifier-like headers (REQUIREMENTS §7)
``human_review``       images, PDFs (figures; their text is checked) and embedded objects
                       always need a person (warn)
``provenance``         every number traces to a DP release of the project (SR-25.3)
``sdc_*``              disclosure control for untraced numbers (SR-25.4, see ``sdc``)
``row_level``          no row-level data from non-open datasets (SR-21, SR-25.5)
=====================  ============================================================

Table checks run for CSV, XLSX (every sheet), JSON and Markdown pipe tables (also those in
a TXT file or a PDF's page text). A PDF's text is scanned like a text file's, page by page.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sandbox.export import sdc
from sandbox.export.context import CheckContext, SourceDataset
from sandbox.export.identifiers import Finding, scan_column_name, scan_text, verdict_for
from sandbox.export.provenance import DpRelease, provenance_result, trace_table
from sandbox.export.readers import FileKind, ParsedFile, parse_file
from sandbox.export.results import CheckResult, Verdict, merge, worst
from sandbox.export.rowlevel import check_row_level
from sandbox.export.tables import Table, cell_text, infer_layout
from sandbox.policy.models import Tier

__all__ = [
    "CHECK_ORDER",
    "CheckContext",
    "CheckResult",
    "DpRelease",
    "SourceDataset",
    "Verdict",
    "overall_verdict",
    "run_checks",
]

CHECK_ORDER = (
    "file_type",
    "lineage",
    "identifiers",
    "human_review",
    "provenance",
    *sdc.CHECK_NAMES,
    "row_level",
)
_MAX_LISTED = 5
_MIN_ID_DIGITS = 10  # the shortest identifier that can be a bare number: a landline without 0


@dataclass(frozen=True)
class FileAssessment:
    """The checks of one file and the DP releases its numbers trace to (one parse, one trace)."""

    results: list[CheckResult]
    release_ids: list[str]


def run_checks(file_bytes: bytes, filename: str, context: CheckContext) -> list[CheckResult]:
    """Run every automatic check on one file; raises ``ExportRejected`` for unusable files."""
    return assess_file(file_bytes, filename, context).results


def assess_file(file_bytes: bytes, filename: str, context: CheckContext) -> FileAssessment:
    """``run_checks`` plus the ids of the releases the file's numbers trace to."""
    thresholds = context.thresholds
    parsed = parse_file(file_bytes, filename, max_bytes=thresholds.max_file_bytes)
    tier = context.tier
    results: list[CheckResult] = [
        _file_type(parsed, len(file_bytes), thresholds.max_file_bytes),
        _lineage(context),
    ]
    findings: list[Finding] = []
    for text, location in parsed.texts:
        findings.extend(scan_text(text, location=location))
    table_results: list[CheckResult] = []
    release_ids: set[str] = set()
    for table in parsed.tables:
        layout = infer_layout(table)
        trace = trace_table(table, context.releases, layout=layout)
        release_ids.update(trace.release_ids)
        findings.extend(_scan_table(table, exempt=set(trace.traced)))
        table_results.append(provenance_result(table, trace, tier, releases=context.releases))
        untraced = trace.untraced_set
        sdc_input = sdc.SdcInput(table, untraced=untraced, layout=layout)
        table_results.extend(sdc.check_table(sdc_input, thresholds, tier=tier))
        table_results.append(
            check_row_level(
                table, context.sources, thresholds, all_traced=not untraced and bool(trace.traced)
            )
        )
    identifiers = _identifiers(findings, tier, enterprise_data=context.enterprise_data)
    if parsed.problems:  # part of the file was not read: its absence of findings proves nothing
        identifiers = CheckResult(
            "identifiers",
            worst((identifiers.verdict, Verdict.WARN)),
            "the gate could not read all of the file (see file_type); in what it read: " + identifiers.reason,
        )
    results.append(identifiers)
    if parsed.needs_human_look:
        what = {FileKind.PNG: "an image", FileKind.PDF: "a PDF"}.get(parsed.kind, "embedded objects")
        reason = parsed.human_look or (
            f"the file is or contains {what}: the gate cannot read numbers in it, so a steward must look "
            "at it before release"
        )
        results.append(CheckResult("human_review", Verdict.WARN, reason))
    for name in CHECK_ORDER[4:]:
        merged = merge(name, table_results)
        if merged is not None:
            results.append(merged)
    return FileAssessment(results, sorted(release_ids))


def overall_verdict(results: Iterable[CheckResult]) -> Verdict:
    return worst(r.verdict for r in results)


def _file_type(parsed: ParsedFile, size: int, limit: int) -> CheckResult:
    what = {FileKind.TEXT: "text", FileKind.MARKDOWN: "Markdown"}.get(parsed.kind, parsed.kind.value.upper())
    tables = f", {len(parsed.tables)} table(s)" if parsed.tables else ""
    reason = f"{what} file, {size:,} bytes (limit {limit:,}){tables}"
    if parsed.problems:
        return CheckResult(
            "file_type", Verdict.FAIL, reason + "; " + "; ".join(parsed.problems + parsed.notes)
        )
    if parsed.notes:
        return CheckResult("file_type", Verdict.WARN, reason + "; " + "; ".join(parsed.notes))
    return CheckResult("file_type", Verdict.PASS, reason)


def _lineage(context: CheckContext) -> CheckResult:
    if not context.sources and not context.tiers:
        return CheckResult(
            "lineage",
            Verdict.WARN,
            f"project {context.project!r}: the source datasets are not known, so the file is treated as "
            "restricted data",
        )
    parts = [f"{s.id} ({s.tier.value})" for s in context.sources]
    parts += [f"unnamed {t.value} dataset" for t in context.tiers]
    return CheckResult(
        "lineage",
        Verdict.PASS,
        f"project {context.project!r}; derives from {', '.join(parts)}; strictest tier: {context.tier.value}",
    )


def _scan_table(table: Table, *, exempt: set[tuple[int, str]]) -> list[Finding]:
    found: list[Finding] = []
    for col in table.columns:
        header = scan_column_name(col)
        if header is not None:
            found.append(header)
        found.extend(scan_text(col, location=table.header_where(col)))
    for col in table.columns:
        numbers = table.numbers(col)
        for pos, cell in enumerate(table.cells(col)):
            if (pos, col) in exempt:
                continue
            n = numbers[pos]
            if n is not None and len(str(abs(int(n.value)))) < _MIN_ID_DIGITS:
                continue  # a plain number too short to be any identifier (decimals never are)
            text = cell_text(cell)
            if len(text) < 9 and "@" not in text and "沪" not in text:
                continue
            found.extend(scan_text(text, context=col, location=table.where(pos, col)))
    return found


def _identifiers(findings: list[Finding], tier: Tier, *, enterprise_data: bool) -> CheckResult:
    if not findings:
        return CheckResult(
            "identifiers",
            Verdict.PASS,
            "no resident ID, USCC, phone, bank card, plate, e-mail or passport numbers and no "
            "identifier-like headers",
        )
    graded = [(verdict_for(f, tier, enterprise_data=enterprise_data), f) for f in findings]
    verdict = worst(v for v, _ in graded)
    order = {Verdict.FAIL: 0, Verdict.WARN: 1, Verdict.PASS: 2}
    graded.sort(key=lambda vf: order[vf[0]])
    listed = [f"{f.reason} → {v.value}" for v, f in graded[:_MAX_LISTED]]
    more = len(graded) - _MAX_LISTED
    text = "; ".join(listed) + (f"; and {more} more" if more > 0 else "")
    rule = f"(strictest source tier: {tier.value})"
    if verdict == Verdict.PASS:
        return CheckResult(
            "identifiers", Verdict.PASS, f"only identifiers allowed from open data {rule}: {text}"
        )
    return CheckResult("identifiers", verdict, f"{len(findings)} suspected identifier(s) {rule}: {text}")

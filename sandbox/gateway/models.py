"""Wire models of the gateway API (``/api/v1/``): what goes over HTTP, nothing more.

Decimals (epsilon, budgets, bounds) travel as strings so no binary float rounding
creeps into budget arithmetic; the client keeps them as text or ``Decimal``.
Public models carry only public metadata (policy, catalogue) and the caller's own
ledger, never anything derived from private rows.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from sandbox.policy.models import Dataset, Platform


def decimal_text(value: Decimal) -> str:
    """Exact, plain decimal text without trailing zeros: 0.500 -> "0.5", 3.0 -> "3", 1E+2 -> "100"."""
    if not value.is_finite():
        return str(value)
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


# Decimals on the wire: a JSON string such as "0.5"; requests accept a string or a number.
WireDecimal = Annotated[Decimal, PlainSerializer(decimal_text, return_type=str, when_used="json")]
Scalar = str | int | float | bool | None

MAX_SQL_CHARS = 20_000


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# --------------------------------------------------------------------------- errors


class ErrorDetail(_Out):
    code: str = Field(
        description="Stable error code (see docs/gateway-api.md); the client maps it to a class."
    )
    message: str = Field(description="What happened.")
    hint: str = Field(description="What to do next.")


class ErrorResponse(_Out):
    """The one error shape of the gateway."""

    error: ErrorDetail


# --------------------------------------------------------------------------- identity


class ProjectPublic(_Out):
    name: str
    title: str = ""
    role: str = Field(description="The caller's role in the project: lead or member.")


class WhoAmI(_Out):
    name: str = Field(description="Hub user name (also the sandbox user name).")
    groups: list[str] = Field(description="Hub groups.")
    role: str = Field(description="Sandbox role: researcher, bank, enterprise, steward, admin, auditor.")
    status: str = Field(description="approved, suspended or revoked.")
    organisation: str | None = None
    projects: list[ProjectPublic]


# --------------------------------------------------------------------------- catalogue


class CatalogEntry(_Out):
    id: str
    name_zh: str
    name_en: str
    tier: str = Field(description="open, conditional or restricted.")
    source_tier: str = Field(description="T0..T3 code of the opening list.")
    provider: list[str] = Field(description="Provider department ids.")
    provider_names: list[str] = Field(description="Provider department names (Chinese).")
    focus_area: str
    summary: str
    update_frequency: str
    synthetic: bool


class CatalogPublic(_Out):
    platform: str = Field(description="Platform name (Chinese).")
    datasets: list[CatalogEntry]


class BoundsPublic(_Out):
    lower: WireDecimal
    upper: WireDecimal


class ColumnPublic(_Out):
    name: str
    type: str
    role: str = Field(description="identifier, quasi_identifier, sensitive or plain.")
    description: str
    bounds: BoundsPublic | None = None
    precision: int | None = None
    domain: list[Scalar] | None = Field(default=None, description="Public domain (grouping keys).")
    bins: list[WireDecimal] | None = None
    nullable: bool


class BudgetsPublic(_Out):
    per_query_max: WireDecimal
    per_user: WireDecimal
    per_project: WireDecimal
    global_cap: WireDecimal = Field(description="Total all projects together may spend.")
    delta: WireDecimal


class QueryWindowPublic(_Out):
    column: str = Field(description="Date or timestamp column every DP query must bound on both sides.")
    max_days: int = Field(description="Most calendar days one query may cover (first and last included).")


class DatasetPublic(_Out):
    id: str
    name_zh: str
    name_en: str
    summary: str
    tier: str
    source_tier: str
    rows_visible: bool = Field(description="Whether rows may be read (open tier).")
    dp_required: bool
    provider: list[str]
    provider_names: list[str]
    focus_area: str
    update_frequency: str
    grade: str
    conditions: str
    privacy_unit: str | None
    max_rows_per_unit: int | None
    mechanism: str
    query_window: QueryWindowPublic | None = Field(
        default=None, description="Per-query time window of the policy (docs/dp.md); None when unset."
    )
    default_epsilon: WireDecimal = Field(description="Epsilon used when a query names none.")
    budgets: BudgetsPublic | None = Field(description="None for open datasets (no DP).")
    columns: list[ColumnPublic]
    synthetic: bool


def _provider_names(platform: Platform, dataset: Dataset) -> list[str]:
    names: list[str] = []
    for dep in dataset.provider:
        department = platform.departments.get(dep)
        names.append(department.name.zh if department is not None else dep)
    return names


def catalog_entry(platform: Platform, ds: Dataset) -> CatalogEntry:
    return CatalogEntry(
        id=ds.id,
        name_zh=ds.name.zh,
        name_en=ds.name.en,
        tier=ds.tier.value,
        source_tier=ds.source_tier,
        provider=list(ds.provider),
        provider_names=_provider_names(platform, ds),
        focus_area=ds.focus_area.value,
        summary=ds.summary,
        update_frequency=ds.update_frequency,
        synthetic=ds.synthetic,
    )


def _domain(value: Any) -> list[Scalar] | None:
    if value is None or isinstance(value, str):  # '@name' is resolved by the loader
        return None
    return list(value)


def dataset_public(platform: Platform, ds: Dataset, budgets: Any) -> DatasetPublic:
    """Public metadata of a dataset; ``budgets`` is ``Catalog.budgets(id)`` (ignored for open data)."""
    rules = platform.tiers[ds.tier]
    return DatasetPublic(
        id=ds.id,
        name_zh=ds.name.zh,
        name_en=ds.name.en,
        summary=ds.summary,
        tier=ds.tier.value,
        source_tier=ds.source_tier,
        rows_visible=rules.rows_visible,
        dp_required=rules.dp_required,
        provider=list(ds.provider),
        provider_names=_provider_names(platform, ds),
        focus_area=ds.focus_area.value,
        update_frequency=ds.update_frequency,
        grade=ds.grade,
        conditions=ds.conditions,
        privacy_unit=ds.privacy_unit,
        max_rows_per_unit=ds.max_rows_per_unit,
        mechanism=ds.mechanism.value,
        query_window=(
            QueryWindowPublic(column=ds.query_window.column, max_days=ds.query_window.max_days)
            if ds.query_window is not None
            else None
        ),
        default_epsilon=platform.defaults.default_query_epsilon,
        budgets=(
            BudgetsPublic(
                per_query_max=budgets.per_query_max,
                per_user=budgets.per_user,
                per_project=budgets.per_project,
                global_cap=budgets.global_cap,
                delta=budgets.delta,
            )
            if rules.dp_required
            else None
        ),
        columns=[
            ColumnPublic(
                name=c.name,
                type=c.type.value,
                role=c.role.value,
                description=c.description,
                bounds=BoundsPublic(lower=c.bounds.lower, upper=c.bounds.upper) if c.bounds else None,
                precision=c.precision,
                domain=_domain(c.domain),
                bins=list(c.bins) if c.bins else None,
                nullable=c.nullable,
            )
            for c in ds.columns
        ],
        synthetic=ds.synthetic,
    )


# --------------------------------------------------------------------------- queries


class QueryRequest(_In):
    """A DP query: SQL text of the supported subset, epsilon and project.

    The notebook builder (``sandbox.client.builder``) renders the same SQL text, so there is
    one parser and one set of rules.
    """

    sql: str = Field(min_length=1, max_length=MAX_SQL_CHARS, description="One SELECT of the SQL subset.")
    epsilon: Decimal | None = Field(
        default=None,
        gt=0,
        le=1000,
        max_digits=30,
        description="Privacy loss to spend (exact decimal; default: the platform's default).",
    )
    project: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Project to charge; may be omitted when the caller belongs to exactly one.",
    )


class BudgetRow(_Out):
    """Budget of one project (and the caller) on one dataset; spent = cap - remaining."""

    project: str
    dataset: str
    per_query_max: WireDecimal = Field(description="Largest epsilon one query may spend.")
    per_user: WireDecimal = Field(description="The caller's cap on this dataset.")
    per_project: WireDecimal = Field(description="The project's cap on this dataset.")
    user_spent: WireDecimal
    user_remaining: WireDecimal
    project_spent: WireDecimal
    project_remaining: WireDecimal
    available: WireDecimal = Field(
        description="Most the next query may spend: the smallest of the caller's, the project's and "
        "the dataset's remaining budget."
    )


class Budgets(_Out):
    budgets: list[BudgetRow]


class Release(_Out):
    """A DP release: noisy cells, their 95% confidence half-widths and provenance."""

    release_id: str
    dataset: str
    project: str
    epsilon_spent: WireDecimal = Field(description="Charge of this release (0 for a repeated query).")
    cached: bool = Field(description="True when an identical earlier release was returned at no cost.")
    sql: str
    created_at: str | None = None
    columns: list[str]
    key_columns: list[str] = Field(description="Grouping keys (public domain values, no noise).")
    rows: list[list[Scalar]]
    ci95: list[list[float | None]] = Field(description="Per cell 95% half-width; null for key columns.")
    rank_error95: dict[str, float] = Field(
        default_factory=dict,
        description="Quantile columns (their ci95 is null): 95% rank half-width in values, from the noise "
        "alone (docs/dp.md, Accuracy).",
    )
    budget: BudgetRow | None = None


class PreviewAggregate(_Out):
    column: str
    aggregate: str
    ci95: float | None = Field(
        description="Expected 95% half-width of each cell of this column; null for means and quantiles."
    )
    rank_error95: float | None = Field(
        default=None,
        description="Quantiles only: with probability >= 95% the released value's rank among the cell's "
        "values is at most this many values further from rank q * n than the best public candidate's "
        "(noise only; see docs/dp.md, Accuracy). Null for other aggregates.",
    )


class Preview(_Out):
    dataset: str
    project: str
    epsilon: WireDecimal = Field(description="What the query would be charged.")
    aggregates: list[PreviewAggregate]
    budget: BudgetRow | None = None


# --------------------------------------------------------------------------- open rows


class RowsPage(_Out):
    dataset: str
    columns: list[str]
    rows: list[list[Scalar]]
    offset: int
    limit: int
    next_offset: int | None = Field(description="Offset of the next page; null on the last page.")
    citation: str = Field(description="Source citation to keep with the data (SR-10, SR-27).")


# --------------------------------------------------------------------------- exports


class ExportCheck(_Out):
    check: str = Field(
        description="Stable check name: file_type, lineage, identifiers, provenance, sdc_*, ..."
    )
    verdict: str = Field(description="pass, warn or fail.")
    reason: str


class ExportReviewPublic(_Out):
    reviewer: str
    department: str | None = None
    decision: str
    reason: str | None = None
    at: str | None = None


class ExportPublic(_Out):
    id: int
    status: str = Field(
        description="submitted, checked, under_review, approved, rejected, released, withdrawn."
    )
    filename: str
    sha256: str
    size: int
    project: str
    requester: str
    purpose: str
    tier: str = Field(description="Strictest tier of the sources; decides how many stewards review.")
    datasets: list[str]
    reviewers_required: int
    release_ids: list[str] = Field(description="DP releases the file's numbers were traced to.")
    decision_reason: str | None = None
    created_at: str | None = None
    checks: list[ExportCheck]
    reviews: list[ExportReviewPublic]


class Exports(_Out):
    exports: list[ExportPublic]


class CheckVerdict(_Out):
    """One automatic check as the CLI's ``--json`` prints it."""

    name: str = Field(
        description="Stable check name: file_type, lineage, identifiers, provenance, sdc_*, ..."
    )
    verdict: str = Field(description="pass, warn or fail.")
    reason: str


class ExportDryRun(_Out):
    """The automatic checks of a file that was not submitted (``POST exports/check``); nothing is stored."""

    checks: list[CheckVerdict]
    verdict: str = Field(description="The worst verdict: pass, warn or fail.")
    outcome: str = Field(
        description="What submitting this file would do: rejected (a check fails), approved (open data, "
        "every check passed) or under_review."
    )
    filename: str
    project: str
    sha256: str
    size: int
    tier: str = Field(description="Strictest tier of the sources; decides how many stewards review.")
    datasets: list[str] = Field(description="The lineage the checks assumed.")
    departments: list[str] = Field(description="Provider departments whose stewards would review.")
    reviewers_required: int
    release_ids: list[str] = Field(description="DP releases of the project the file's numbers trace to.")


class _Open(BaseModel):
    """Part of the export manifest: the documented fields, and any later additions passed through."""

    model_config = ConfigDict(extra="allow")


class BilingualName(_Open):
    zh: str
    en: str


class ManifestFile(_Open):
    name: str
    sha256: str
    size: int


class ManifestProvider(_Open):
    id: str
    zh: str
    en: str


class ManifestSource(_Open):
    dataset: str
    name: BilingualName
    tier: str
    tier_name: BilingualName
    providers: list[ManifestProvider]
    retrieved: str = Field(description="获取日期: the date the data was retrieved (ISO).")
    release_ids: list[str]


class ManifestRelease(_Open):
    release_id: str
    dataset: str
    epsilon: str = Field(description="Epsilon charged for the release, an exact decimal string.")
    created_at: str


class ManifestReviewer(_Open):
    reviewer: str
    department: str | None = None
    decision: str
    at: str


class ExportManifest(_Open):
    """The manifest of a released export (SR-27): what the file is, where it comes from, how to cite it."""

    manifest_version: int
    platform: BilingualName
    export_id: int
    file: ManifestFile
    project: str
    requester: str
    purpose: str
    released_at: str
    release_date: str
    sources: list[ManifestSource]
    releases: list[ManifestRelease]
    epsilon_by_dataset: dict[str, str]
    checks: list[dict[str, str]]
    reviewers: list[ManifestReviewer]
    citation: list[str] = Field(description="One citation per source, to show wherever the file is used.")
    synthetic: bool


def export_public(record: Any) -> ExportPublic:
    """Wire form of ``sandbox.export.service.ExportRecord``."""
    return ExportPublic(
        id=record.id,
        status=str(getattr(record.status, "value", record.status)),
        filename=record.filename,
        sha256=record.sha256,
        size=record.size,
        project=record.project,
        requester=record.requester,
        purpose=record.purpose,
        tier=str(getattr(record.tier, "value", record.tier)),
        datasets=list(record.datasets),
        reviewers_required=record.reviewers_required,
        release_ids=list(record.release_ids),
        decision_reason=record.decision_reason,
        created_at=record.created_at.isoformat() if record.created_at else None,
        checks=[
            ExportCheck(check=c.name, verdict=str(getattr(c.verdict, "value", c.verdict)), reason=c.reason)
            for c in record.checks
        ],
        reviews=[
            ExportReviewPublic(
                reviewer=str(r.get("reviewer")),
                department=r.get("department"),
                decision=str(r.get("decision")),
                reason=r.get("reason"),
                at=r.get("at"),
            )
            for r in record.reviews
        ],
    )


def export_dry_run(found: Any) -> ExportDryRun:
    """Wire form of ``sandbox.export.service.Assessment``."""
    return ExportDryRun.model_validate(found.to_dict())

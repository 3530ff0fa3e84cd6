"""Wire models of the governance API (``<prefix>api/v1/``): request bodies and public shapes.

Response models mirror the ``to_dict()`` of the service records (``ApplicationRecord``,
``ConsentRecord``, ...), so a field added on one side and not the other fails loudly
(``extra="forbid"``). Times travel as ISO 8601 text (UTC); epsilon as exact decimal text.
Lengths and numbers are bounded so no request can overflow a column.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sandbox.governance import applications, consent

Text200 = Annotated[str, Field(min_length=1, max_length=200)]
LongText = Annotated[str, Field(min_length=1, max_length=10_000)]
Name = Annotated[str, Field(min_length=1, max_length=64)]
Count = Annotated[int, Field(ge=0, le=1_000_000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConditionsPublic(_Out):
    dataset: str
    name: str
    tier: str
    source_tier: str
    providers: list[str]
    conditions: str = Field(description="Published conditions for access (SR-11).")
    budgets: dict[str, str] = Field(description="Epsilon caps per query, user and project (decimal text).")


class ApplicationCreate(_In):
    project: Name
    datasets: list[Name] = Field(min_length=1, max_length=20)
    scenario: Text200 = Field(description="Application scenario (应用场景).")
    purpose: LongText = Field(description="Purpose; a renewal keeps it word for word.")
    duration_days: int = Field(ge=1, le=applications.MAX_DURATION_DAYS)
    security_measures: LongText
    members: list[Name] = Field(default_factory=list, max_length=100)
    columns: dict[Name, list[Name]] | None = Field(
        default=None, description="Columns per dataset (default all)."
    )
    undertaking: bool = Field(description="The security undertaking (安全承诺书) is signed.")
    renews: int | None = Field(default=None, ge=1, le=2_147_483_647, description="Agreement id to renew.")
    organisation_uscc: str | None = Field(default=None, max_length=18)


class DecisionCreate(_In):
    approve: bool
    reason: LongText
    datasets: list[Name] | None = Field(
        default=None, description="Default: every pending dataset of your department."
    )


class ReasonIn(_In):
    reason: LongText


class CommitteeReferral(_Out):
    item_id: int
    status: str = Field(description="open, opinion_recorded (withdrawn referrals are not shown).")
    opinion: str | None = Field(description="approve, approve_with_conditions, reject or needs_more_info.")
    conditions: str | None
    decided_on: str | None


class ItemPublic(_Out):
    dataset: str
    departments: list[str]
    columns: list[str] | None
    status: str
    decided_by: str | None
    decided_at: str | None
    reason: str | None
    decisions: dict[str, dict[str, Any]] = Field(
        description="Per provider department: steward, approve, reason, at."
    )
    committee: CommitteeReferral | None = Field(
        default=None,
        description="The expert committee's referral of this dataset (high-risk), or null when not referred.",
    )


class AgreementPublic(_Out):
    id: int
    ref: str
    number: str
    version: int
    project: str
    scenario: str
    purpose: str
    datasets: list[str]
    term_start: str
    term_end: str
    status: str = Field(description="active, expired, withdrawn or superseded.")
    digest: str = Field(description="SHA-256 of the canonical agreement document.")
    application_id: int
    withdrawn_reason: str | None
    document: dict[str, Any]


class ApplicationPublic(_Out):
    id: int
    project: str
    applicant: str
    organisation: str | None
    scenario: str
    purpose: str
    duration_days: int
    security_measures: str
    members: list[str]
    status: str
    created_at: str
    decided_at: str | None
    renews: int | None
    datasets: list[ItemPublic]
    agreement: AgreementPublic | None


class ConsentCreate(_In):
    bank: Text200 = Field(description="Organisation of the bank (e.g. BANK_A).")
    datasets: list[Name] = Field(min_length=1, max_length=20)
    days: int = Field(ge=1, le=consent.MAX_DAYS)


class ConsentPublic(_Out):
    id: int
    enterprise: str
    uscc: str
    bank: str
    datasets: list[str]
    granted_at: str
    expires_at: str
    revoked_at: str | None
    revoked_reason: str | None
    status: str
    audit_hash: str | None


class ConsentEventPublic(_Out):
    seq: int
    ts: str
    kind: str
    actor: str | None
    data: dict[str, Any]


class LookupRequest(_In):
    dataset: Name
    uscc: str = Field(min_length=18, max_length=18, description="The enterprise's USCC.")


class LookupPublic(_Out):
    dataset: str
    uscc: str
    consent_id: int
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool


class ViolationCreate(_In):
    subject: Name = Field(description="Account the report is about.")
    description: LongText
    category: Literal["illegal_acquisition", "beyond_scenario", "infringement", "other"] = "other"
    dataset: Name | None = None
    project: Name | None = None


class ConfirmIn(_In):
    reason: LongText
    summary: str | None = Field(default=None, max_length=2000, description="Public text of the disclosure.")


class AppealIn(_In):
    grounds: LongText


class AppealDecision(_In):
    reinstate: bool
    reason: LongText


class ViolationPublic(_Out):
    id: int
    reporter: str
    subject: str
    dataset: str | None
    project: str | None
    category: str
    description: str
    status: str
    decided_by: str | None
    decided_at: str | None
    decision_reason: str | None
    actions: dict[str, Any] | None
    appeal_grounds: str | None
    appeal_reason: str | None
    created_at: str


class DisclosurePublic(_Out):
    id: int
    violation_id: int
    subject: str
    organisation: str | None
    category: str
    summary: str
    measures: str
    status: str
    note: str | None
    published_at: str
    updated_at: str | None


class DemandCreate(_In):
    title: Text200
    description: LongText
    dataset: Name | None = None
    columns: list[Name] = Field(default_factory=list, max_length=100)
    scenario: str | None = Field(default=None, max_length=2000)
    department: Name | None = None


class CorrectionCreate(_In):
    dataset: Name
    description: LongText
    columns: list[Name] = Field(default_factory=list, max_length=100)
    title: str | None = Field(default=None, max_length=200)


class ObjectionCreate(_In):
    dataset: Name
    grounds: LongText = Field(description="Why you object or complain (kept out of the audit chain).")
    title: str | None = Field(default=None, max_length=200)
    subject: Literal["lookup", "consent", "release"] | None = Field(
        default=None, description="What in the dataset it is about, if anything in particular."
    )
    subject_ref: str | None = Field(
        default=None, max_length=64, description="Its id: look-up audit seq, consent id or release id."
    )


class ResponseIn(_In):
    status: Literal[
        "answered",
        "opened",
        "refused",
        "acknowledged",
        "corrected",
        "rejected",
        "upheld",
        "partly_upheld",
    ]
    response: LongText


class RouteIn(_In):
    department: Name


class ChannelPublic(_Out):
    id: int
    kind: str
    filed_by: str
    title: str
    dataset: str | None
    columns: list[str]
    scenario: str | None
    description: str
    department: str | None
    status: str
    response: str | None
    responded_by: str | None
    responded_at: str | None
    created_at: str
    subject_kind: str | None
    subject_ref: str | None
    due_at: str = Field(description="Filing time plus the kind's SLA (channels.sla_days).")
    answered_at: str | None = Field(description="When it was first answered (the clock stopped).")
    clock: Literal["open", "overdue", "answered_on_time", "answered_late"]
    overdue: bool
    answered_late: bool


class SlaSummaryPublic(_Out):
    kind: str
    sla_days: int
    filed: int
    open: int
    overdue: int
    answered_on_time: int
    answered_late: int
    median_days_to_answer: float | None


class UsageReportCreate(_In):
    project: Name
    papers: Count = 0
    products: Count = 0
    loans_supported: Count = 0
    outputs: list[Annotated[str, Field(max_length=1000)]] = Field(default_factory=list, max_length=200)
    benefits: str = Field(default="", max_length=10_000)
    incidents: str = Field(default="", max_length=10_000)
    cites_sources: bool = True
    agreement_id: int | None = Field(default=None, ge=1, le=2_147_483_647)


class UsageReportPublic(_Out):
    id: int
    project: str
    agreement_id: int | None
    filed_by: str
    papers: int
    products: int
    loans_supported: int
    outputs: list[str]
    benefits: str
    incidents: str
    cites_sources: bool
    filed_at: str


class ReportDuePublic(_Out):
    project: str
    agreement_id: int
    agreement: str
    term_start: str
    last_report: str | None
    due: str
    overdue: bool


class DatasetUsagePublic(_Out):
    dataset: str
    name: str
    providers: list[str]
    queries: int
    failed: int
    rejected: int
    cache_hits: int
    lookups: int
    epsilon: str = Field(description="Epsilon charged in total (exact decimal text).")
    projects: dict[str, dict[str, Any]]
    exports: dict[str, int]
    active_grants: int
    agreements_in_force: int


class AuditRowPublic(_Out):
    seq: int
    ts: str
    kind: str
    actor: str | None
    data: dict[str, Any]
    hash: str


class AuditPagePublic(_Out):
    rows: list[AuditRowPublic]
    next_after: int | None
    scope: str


class ChainStatusPublic(_Out):
    ok: bool
    count: int
    head_seq: int
    head_hash: str
    first_bad: int | None
    reason: str | None

"""Policy-as-code models: the platform file and one file per dataset.

Pure: no I/O. Every model forbids unknown keys and describes every field, so
``policies/schema.json`` (generated from these models) documents the files.
Budgets are exact decimals (STYLE.md); YAML floats are converted through ``str``.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _exact_decimal(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    return value


ExactDecimal = Annotated[Decimal, BeforeValidator(_exact_decimal)]
PositiveDecimal = Annotated[ExactDecimal, Field(gt=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class Tier(StrEnum):
    OPEN = "open"
    CONDITIONAL = "conditional"
    RESTRICTED = "restricted"


class Role(StrEnum):
    RESEARCHER = "researcher"
    BANK = "bank"
    ENTERPRISE = "enterprise"
    STEWARD = "steward"
    ADMIN = "admin"
    AUDITOR = "auditor"
    EXPERT = "expert"


class FocusArea(StrEnum):
    INCLUSIVE_FINANCE = "inclusive_finance"
    TRANSPORT = "transport"
    HEALTH = "health"
    CULTURE_TOURISM = "culture_tourism"


class ColumnType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    FLOAT = "float"
    BOOLEAN = "boolean"
    DATE = "date"
    TIMESTAMP = "timestamp"
    CATEGORY = "category"


class ColumnRole(StrEnum):
    IDENTIFIER = "identifier"
    QUASI_IDENTIFIER = "quasi_identifier"
    SENSITIVE = "sensitive"
    PLAIN = "plain"


class Mechanism(StrEnum):
    LAPLACE = "laplace"
    GAUSSIAN = "gaussian"


NUMERIC_TYPES = frozenset({ColumnType.INTEGER, ColumnType.FLOAT})
#: Largest product of (domain size + 1) over a derived cube's dimensions (the +1: NULL or values
#: outside the domain, which the cube keeps as rows of their own). ``sandbox.dp.derived`` builds
#: cubes within it; ``sandbox.policy.rules`` refuses a ``cube_dimensions`` list above it.
CUBE_MAX_CELLS = 50_000
DomainValue = str | int | bool


class LocalizedName(_Model):
    zh: str = Field(min_length=1, description="Chinese name (as published in the opening list).")
    en: str = Field(min_length=1, description="English name.")


class Bounds(_Model):
    lower: ExactDecimal = Field(description="Public lower bound; values below are clamped up to it.")
    upper: ExactDecimal = Field(description="Public upper bound; values above are clamped down to it.")


class Budgets(_Model):
    """Privacy budgets in epsilon (pure DP) or rho (zCDP when the mechanism is gaussian)."""

    per_query_max: PositiveDecimal = Field(description="Largest epsilon one query may spend.")
    per_user: PositiveDecimal = Field(description="Total a single user may spend on this dataset.")
    per_project: PositiveDecimal = Field(description="Total a project may spend on this dataset (SR-18).")
    global_cap: PositiveDecimal = Field(
        alias="global", description="Total all projects together may spend on this dataset."
    )
    delta: ExactDecimal = Field(
        default=Decimal(0),
        ge=0,
        description=(
            "Delta for zCDP-to-approx-DP conversion; non-zero weakens the guarantee (audited opt-in)."
        ),
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ExportThresholds(_Model):
    """Statistical disclosure control thresholds for untraced aggregates (REQUIREMENTS §5)."""

    min_cell_count: int = Field(
        default=10, ge=1, description="Smallest unit count a published cell may have."
    )
    dominance_top1: ExactDecimal = Field(
        default=Decimal("0.5"),
        gt=0,
        le=1,
        description="Largest share of a cell total one contributor may hold.",
    )
    dominance_top2: ExactDecimal = Field(
        default=Decimal("0.67"), gt=0, le=1, description="Largest share the top two contributors may hold."
    )
    p_percent: ExactDecimal = Field(
        default=Decimal("10"),
        ge=0,
        le=100,
        description="p% rule: others' total must exceed p% of the top value.",
    )
    dp_min_noisy_count: int = Field(
        default=20, ge=0, description="DP outputs: cells whose noisy count is below this are suppressed."
    )
    max_file_bytes: int = Field(default=10_000_000, gt=0, description="Largest file the export gate accepts.")
    reviewers: int | None = Field(
        default=None, ge=0, le=3, description="Stewards needed to approve; default comes from the tier."
    )


class QueryWindowRule(_Model):
    """A time window every DP query must stay within (e.g. 31 days of trips)."""

    column: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$",
        description=(
            "Date or timestamp column a query must bound from below and above with top-level AND "
            "conditions of its WHERE (>=, >, <, <=, =, BETWEEN, IN)."
        ),
    )
    max_days: int = Field(
        ge=1,
        description=(
            "Most calendar days one query may cover, counting the first and the last day "
            "(>= '2018-01-01' AND < '2018-02-01' covers 31)."
        ),
    )


class Column(_Model):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Column name in the warehouse table.")
    type: ColumnType = Field(description="Logical type of the values.")
    role: ColumnRole = Field(
        description="Identifier role (SR-02): identifier / quasi_identifier / sensitive / plain."
    )
    description: str = Field(default="", description="Data-dictionary text (SR-09).")
    pi_category: str | None = Field(
        default=None, description="PIPL Art. 28 sensitive category when it applies (e.g. 医疗健康, 行踪轨迹)."
    )
    bounds: Bounds | None = Field(default=None, description="Public bounds; required for numeric columns.")
    precision: int | None = Field(
        default=None,
        ge=0,
        le=6,
        description="Decimal digits kept when values are converted to fixed-point integers (numerics).",
    )
    domain: list[DomainValue] | str | None = Field(
        default=None,
        description=(
            "Public domain of a categorical column: a list of values, or '@name' referring to "
            "a shared domain in platform.yaml. Only columns with a domain may be grouping keys."
        ),
    )
    bins: list[ExactDecimal] | None = Field(
        default=None, description="Public histogram bin edges (ascending) for numeric columns."
    )
    references: str | None = Field(
        default=None, description="Join key: '<dataset>.<column>' this column refers to."
    )
    nullable: bool = Field(default=False, description="Whether the column may hold NULL.")


class Dataset(_Model):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Dataset id; also the warehouse table name.")
    name: LocalizedName = Field(description="Names in the opening list.")
    summary: str = Field(default="", description="One-paragraph description (SR-01).")
    provider: list[str] = Field(min_length=1, description="Ids of provider departments (platform.yaml).")
    focus_area: FocusArea = Field(description="Focus area facet (SR-08).")
    tier: Tier = Field(description="Opening type: open / conditional / restricted.")
    source_tier: str = Field(pattern=r"^T[0-3]$", description="Tier code from REQUIREMENTS §5 (T0..T3).")
    update_frequency: str = Field(default="monthly", description="Update frequency (SR-01).")
    grade: str = Field(
        default="一般数据", description="Security grade (SR-03); core/important data is refused."
    )
    grade_level: int | None = Field(
        default=None,
        ge=1,
        le=4,
        description="Sub-level 1..4 of 一般数据 (SR-03; GB/T 43697, to be confirmed).",
    )
    conditions: str = Field(default="", description="Published conditions for access (SR-11).")
    privacy_unit: str | None = Field(
        default=None, description="Column identifying one person or enterprise; required unless tier is open."
    )
    max_rows_per_unit: int | None = Field(
        default=None, ge=1, description="Contribution bound: rows one privacy unit may contribute to a query."
    )
    mechanism: Mechanism = Field(
        default=Mechanism.LAPLACE, description="Noise: laplace (pure DP) or gaussian (zCDP)."
    )
    query_window: QueryWindowRule | None = Field(
        default=None,
        description=(
            "Optional time window: every DP query must restrict this date/timestamp column to at "
            "most max_days calendar days (the per-query window the contribution bound assumes)."
        ),
    )
    cube_dimensions: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]] | None = Field(
        default=None,
        description=(
            "Optional dimensions, in order, of the derived count/sum cube the DP engine answers "
            "counts, sums and means from (docs/dp.md, 'Derived tables'): columns with a public "
            "domain (or boolean), no identifier, no repeats, at most "
            f"{CUBE_MAX_CELLS:,} cells (the product of each domain size + 1). An empty list builds "
            "no cube; absent: public-domain columns in policy order within that limit. Only with "
            "privacy_unit."
        ),
    )
    columns: list[Column] = Field(min_length=1, description="Every column of the table.")
    budgets: Budgets | None = Field(default=None, description="Overrides of the platform's default budgets.")
    export: ExportThresholds | None = Field(
        default=None, description="Overrides of the platform's export thresholds."
    )
    synthetic: bool = Field(default=True, description="Generated data (SR-40).")

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


class TierRules(_Model):
    name: LocalizedName = Field(description="Tier name (e.g. 有条件开放).")
    rows_visible: bool = Field(description="Whether signed-in users may read rows.")
    dp_required: bool = Field(description="Whether queries go through DP.")
    needs_grant: bool = Field(description="Whether a project needs an approved application.")
    export_reviewers: int = Field(ge=0, le=3, description="Distinct stewards needed to approve an export.")


class RoleInfo(_Model):
    description: str = Field(description="What this role may do.")


class Department(_Model):
    name: LocalizedName = Field(description="Department name; configurable (SR-39).")


class PlatformDefaults(_Model):
    budgets: Budgets = Field(description="Default budgets for conditional datasets.")
    restricted_budgets: Budgets = Field(description="Default budgets for restricted datasets.")
    export: ExportThresholds = Field(description="Default export thresholds.")
    default_query_epsilon: PositiveDecimal = Field(description="Epsilon used when a query names none.")


class CommitteeRules(_Model):
    quorum: int = Field(
        default=2,
        ge=1,
        le=50,
        description=(
            "Members of the expert committee (SR-37) who must take part in an opinion, not "
            "counting the member who raised the item."
        ),
    )


class ChannelSla(_Model):
    """Days a provider has to answer each channel (SR-30 "SLA clocks run")."""

    demand: int = Field(
        default=15, ge=1, le=365, description="Days to answer a demand request (开放需求, SR-07)."
    )
    correction: int = Field(
        default=10, ge=1, le=365, description="Days to correct or reject a data-correction report (数据纠错)."
    )
    objection: int = Field(
        default=15, ge=1, le=365, description="Days to decide an objection or complaint (权益保护, SR-30)."
    )


class ChannelRules(_Model):
    sla_days: ChannelSla = Field(
        default_factory=ChannelSla,
        description="Per-channel answer deadlines in days; a request's due date is set when it is filed.",
    )


class Platform(_Model):
    name: LocalizedName = Field(description="Platform name (used in citations).")
    citation: str = Field(
        description="Citation template; {dataset}, {provider}, {date}, {release} are filled in."
    )
    tiers: dict[Tier, TierRules] = Field(description="What each tier allows.")
    roles: dict[Role, RoleInfo] = Field(description="Roles of the sandbox.")
    departments: dict[str, Department] = Field(description="Provider departments by id.")
    domains: dict[str, list[DomainValue]] = Field(
        default_factory=dict, description="Shared public domains, referred to as '@name' in columns."
    )
    defaults: PlatformDefaults = Field(description="Default budgets and thresholds.")
    committee: CommitteeRules = Field(
        default_factory=CommitteeRules, description="The expert committee's rules (SR-37)."
    )
    channels: ChannelRules = Field(
        default_factory=ChannelRules,
        description="Demand, correction and objection channels: their SLA clocks (SR-07, SR-30).",
    )

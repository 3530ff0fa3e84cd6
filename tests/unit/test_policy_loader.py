"""The committed policies load into a Catalog that matches REQUIREMENTS §5-§6."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from sandbox.config import REPO_ROOT
from sandbox.errors import PolicyError, UnknownDataset
from sandbox.policy.loader import Catalog, load_policies
from sandbox.policy.models import NUMERIC_TYPES, ColumnType, ExportThresholds, Mechanism, Tier

POLICY_DIR = REPO_ROOT / "policies"

SOURCE_TIERS = {
    "enterprise_registry": "T0",
    "enterprise_tax": "T2",
    "social_insurance": "T2",
    "penalties": "T1",
    "sme_loans": "T3",
    "transit_stations": "T0",
    "transit_trips": "T3",
    "taxi_trips": "T2",
    "road_accidents": "T1",
    "medical_institutions": "T0",
    "outpatient_visits": "T3",
    "inpatient_settlements": "T3",
    "venues": "T0",
    "venue_daily_visitors": "T0",
    "hotel_stays": "T3",
}
TIER_OF_SOURCE = {"T0": Tier.OPEN, "T1": Tier.CONDITIONAL, "T2": Tier.CONDITIONAL, "T3": Tier.RESTRICTED}

# Privacy unit and contribution bound per dataset (REQUIREMENTS §6).
UNITS = {
    "enterprise_tax": ("uscc", 3),
    "social_insurance": ("uscc", 33),
    "penalties": ("uscc", 50),
    "sme_loans": ("uscc_hmac", 5),
    "transit_trips": ("card_pseudo", 310),
    "taxi_trips": ("vehicle_pseudo", 60),
    "road_accidents": ("accident_id", 1),
    "outpatient_visits": ("patient_pseudo", 40),
    "inpatient_settlements": ("person_pseudo", 12),
    "hotel_stays": ("guest_pseudo", 30),
}

# Column names exactly as REQUIREMENTS §6 writes them (indented lines continue the one above).
_COLUMNS_TEXT = """
enterprise_registry: uscc ent_name ent_type industry_section district_code reg_capital_wan est_date
    status is_small_micro
enterprise_tax: uscc tax_year credit_grade vat_paid_wan cit_paid_wan taxable_revenue_wan filing_months
    arrears_flag
social_insurance: uscc month si_headcount si_base_total_wan si_arrears_flag hf_headcount hf_amount_wan
penalties: uscc event_type event_date amount_wan source_dept closed
sme_loans: loan_pseudo uscc_hmac bank_code product issue_date amount_wan term_months rate_pct dpd90_flag
    default_flag
transit_stations: station_id station_name mode line_id district_code lon lat open_year
transit_trips: card_pseudo card_type txn_time mode entry_station_id exit_station_id fare_yuan
    transfer_flag
taxi_trips: vehicle_pseudo pickup_time dropoff_time pickup_grid dropoff_grid pickup_district
    dropoff_district distance_km fare_yuan payment
road_accidents: accident_id date hour district_code road_class weather severity vehicles injured killed
    primary_party
medical_institutions: inst_uscc inst_name level type ownership district_code beds lon lat
outpatient_visits: patient_pseudo sex age residence_district visit_date inst_uscc dept icd10_chapter
    visit_type total_fee_yuan fund_paid_yuan insurance
inpatient_settlements: person_pseudo sex age_band residence_district admit_date los_days inst_level
    icd10_chapter total_cost_yuan fund_paid_yuan self_paid_yuan insurance_type
venues: venue_id name category a_grade district_code max_capacity lon lat
venue_daily_visitors: venue_id date visitors day_type ticket_revenue_wan
hotel_stays: guest_pseudo id_doc_type origin_region sex age hotel_id hotel_district hotel_class
    checkin_date nights
"""


def _parse_columns(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    last = ""
    for line in text.strip().splitlines():
        if line.startswith(" "):
            out[last] += line.split()
        else:
            last, _, rest = line.partition(":")
            out[last] = rest.split()
    return out


COLUMNS = _parse_columns(_COLUMNS_TEXT)

DISTRICTS = [
    "310101", "310104", "310105", "310106", "310107", "310109", "310110", "310112",
    "310113", "310114", "310115", "310116", "310117", "310118", "310120", "310151",
]  # fmt: skip


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_policies(POLICY_DIR)


def test_all_fifteen_datasets_load_one_file_each(catalog: Catalog) -> None:
    assert set(catalog.datasets) == set(SOURCE_TIERS) == set(COLUMNS)
    files = {p.stem for p in POLICY_DIR.glob("*.yaml")} - {"platform"}
    assert files == set(SOURCE_TIERS)


@pytest.mark.parametrize("dataset_id", sorted(SOURCE_TIERS))
def test_tier_follows_source_tier(catalog: Catalog, dataset_id: str) -> None:
    ds = catalog.dataset(dataset_id)
    assert ds.source_tier == SOURCE_TIERS[dataset_id]
    assert ds.tier is TIER_OF_SOURCE[ds.source_tier]


@pytest.mark.parametrize("dataset_id", sorted(COLUMNS))
def test_column_names_match_requirements(catalog: Catalog, dataset_id: str) -> None:
    assert catalog.dataset(dataset_id).column_names == COLUMNS[dataset_id]


@pytest.mark.parametrize("dataset_id", sorted(SOURCE_TIERS))
def test_privacy_unit_and_contribution_bound(catalog: Catalog, dataset_id: str) -> None:
    ds = catalog.dataset(dataset_id)
    if dataset_id in UNITS:
        assert (ds.privacy_unit, ds.max_rows_per_unit) == UNITS[dataset_id]
    else:
        assert ds.tier is Tier.OPEN
    if ds.privacy_unit is not None:
        assert ds.column(ds.privacy_unit).role.value == "identifier"


def test_every_numeric_column_has_bounds_and_precision(catalog: Catalog) -> None:
    for ds in catalog.datasets.values():
        for col in ds.columns:
            if col.type in NUMERIC_TYPES:
                assert col.bounds is not None, f"{ds.id}.{col.name}"
                assert col.bounds.lower < col.bounds.upper, f"{ds.id}.{col.name}"
                assert col.precision is not None, f"{ds.id}.{col.name}"
                if col.type is ColumnType.INTEGER:
                    assert col.precision == 0


def test_every_categorical_column_has_a_resolved_domain(catalog: Catalog) -> None:
    for ds in catalog.datasets.values():
        for col in ds.columns:
            assert not isinstance(col.domain, str), f"{ds.id}.{col.name} still refers to {col.domain}"
            if col.type is ColumnType.CATEGORY:
                assert col.domain, f"{ds.id}.{col.name}"
            if col.type in (ColumnType.DATE, ColumnType.TIMESTAMP):
                assert col.domain is None


def test_districts_domain_has_the_sixteen_codes(catalog: Catalog) -> None:
    assert catalog.domain("@districts") == DISTRICTS
    assert catalog.dataset("taxi_trips").column("pickup_district").domain == DISTRICTS
    assert catalog.dataset("outpatient_visits").column("residence_district").domain == [*DISTRICTS, "外省市"]


def test_small_integer_columns_have_integer_domains(catalog: Catalog) -> None:
    assert catalog.dataset("enterprise_tax").column("tax_year").domain == [2016, 2017, 2018]
    assert catalog.dataset("sme_loans").column("term_months").domain == [6, 12, 24, 36]
    assert catalog.dataset("road_accidents").column("hour").domain == list(range(24))


def test_references_name_existing_columns(catalog: Catalog) -> None:
    refs = {
        f"{ds.id}.{col.name}": col.references
        for ds in catalog.datasets.values()
        for col in ds.columns
        if col.references
    }
    assert refs["enterprise_tax.uscc"] == "enterprise_registry.uscc"
    assert refs["transit_trips.entry_station_id"] == "transit_stations.station_id"
    assert refs["outpatient_visits.inst_uscc"] == "medical_institutions.inst_uscc"
    assert refs["venue_daily_visitors.venue_id"] == "venues.venue_id"
    for ref in refs.values():
        target, _, column = ref.partition(".")
        catalog.dataset(target).column(column)


def test_one_restricted_dataset_uses_the_gaussian_mechanism(catalog: Catalog) -> None:
    gaussian = [ds.id for ds in catalog.datasets.values() if ds.mechanism is Mechanism.GAUSSIAN]
    assert gaussian == ["transit_trips"]
    assert catalog.dataset("transit_trips").tier is Tier.RESTRICTED


def test_cube_dimensions_are_set_where_the_default_misses_what_researchers_group_by(
    catalog: Catalog,
) -> None:
    chosen = {ds.id: ds.cube_dimensions for ds in catalog.datasets.values() if ds.cube_dimensions is not None}
    assert chosen == {
        "road_accidents": ["severity", "hour", "district_code"],
        "outpatient_visits": ["dept", "visit_type", "insurance", "icd10_chapter"],
        "hotel_stays": ["origin_region", "hotel_class", "id_doc_type"],
    }
    assert all(catalog.dataset(ds_id).privacy_unit for ds_id in chosen)


def test_non_open_datasets_publish_conditions_and_pi_categories_apply(catalog: Catalog) -> None:
    for ds in catalog.datasets.values():
        if ds.tier is not Tier.OPEN:
            assert ds.conditions.strip(), ds.id
        assert ds.grade == "一般数据"
    assert catalog.dataset("outpatient_visits").column("icd10_chapter").pi_category == "医疗健康"
    assert catalog.dataset("transit_trips").column("txn_time").pi_category == "行踪轨迹"


def test_platform_lists_roles_tiers_and_every_provider(catalog: Catalog) -> None:
    platform = catalog.platform
    assert {r.value for r in platform.roles} == {
        "researcher",
        "bank",
        "enterprise",
        "steward",
        "admin",
        "auditor",
        "expert",
    }
    assert platform.committee.quorum == 2
    assert set(platform.tiers) == set(Tier)
    assert platform.tiers[Tier.RESTRICTED].export_reviewers == 2
    assert len(platform.departments) == 15
    used = {p for ds in catalog.datasets.values() for p in ds.provider}
    assert used == set(platform.departments)
    assert catalog.department("tax_bureau").name.zh == "国家税务总局上海市税务局"
    for field in ("{dataset}", "{provider}", "{date}", "{release}"):
        assert field in platform.citation


def test_budgets_come_from_the_dataset_or_the_tier_default(catalog: Catalog) -> None:
    assert catalog.default_query_epsilon == Decimal("0.1")
    tax = catalog.budgets("enterprise_tax")
    assert (tax.per_project, tax.per_user, tax.per_query_max) == (Decimal(3), Decimal(3), Decimal(1))
    assert tax.global_cap == Decimal(30)
    hotel = catalog.budgets("hotel_stays")
    assert (hotel.per_project, hotel.per_user) == (Decimal(1), Decimal(1))
    assert catalog.budgets("transit_trips") == catalog.dataset("transit_trips").budgets
    assert catalog.budgets("transit_trips").per_query_max == Decimal("0.5")


def test_export_thresholds_merge_override_and_tier_reviewers(catalog: Catalog) -> None:
    base = catalog.export_thresholds("enterprise_tax")
    assert base.min_cell_count == 10
    assert base.dominance_top2 == Decimal("0.85")
    assert base.dp_min_noisy_count == 20
    assert base.reviewers == 1
    assert catalog.export_thresholds("hotel_stays").reviewers == 2
    assert catalog.export_thresholds("venues").reviewers == 0

    ds = catalog.dataset("enterprise_tax").model_copy(update={"export": ExportThresholds(min_cell_count=25)})
    patched = Catalog(platform=catalog.platform, datasets={**catalog.datasets, "enterprise_tax": ds})
    merged = patched.export_thresholds("enterprise_tax")
    assert merged.min_cell_count == 25
    assert merged.dominance_top2 == Decimal("0.85")  # not the model default 0.67
    assert merged.reviewers == 1


def test_unknown_dataset_raises(catalog: Catalog) -> None:
    with pytest.raises(UnknownDataset, match="nope"):
        catalog.dataset("nope")
    with pytest.raises(UnknownDataset):
        catalog.budgets("nope")


def test_default_directory_comes_from_sandbox_policy_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, copy)
    (copy / "venue_daily_visitors.yaml").unlink()
    monkeypatch.setenv("SANDBOX_POLICY_DIR", str(copy))
    loaded = load_policies()
    assert loaded.source == copy
    assert "venue_daily_visitors" not in loaded.datasets
    assert len(loaded.datasets) == 14


def test_invalid_policies_raise_policy_error_with_every_problem(tmp_path: Path) -> None:
    copy = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, copy)
    path = copy / "penalties.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("provider: [", "provider: [nobody, "), encoding="utf-8"
    )
    (copy / "venues.yaml").write_text("id: [unclosed\n", encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policies(copy)
    problems = info.value.details["problems"]
    assert any(p.startswith("penalties.yaml: provider.0: unknown department 'nobody'") for p in problems)
    assert any(p.startswith("venues.yaml: ") and "YAML syntax error" in p for p in problems)
    assert info.value.code == "policy_invalid"


def test_missing_directory_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="not found"):
        load_policies(tmp_path / "absent")


def test_policy_roles_are_the_registry_roles(catalog: Catalog) -> None:
    from sandbox.control.models import UserRole

    assert {r.value for r in catalog.platform.roles} == {r.value for r in UserRole}

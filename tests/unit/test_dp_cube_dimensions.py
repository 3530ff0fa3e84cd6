"""The derived cube's dimensions: the policy's ``cube_dimensions`` verbatim, ``[]`` for no cube,
the greedy choice when absent; and the layout fingerprint that makes a changed list stale."""

from __future__ import annotations

from typing import Any

import pytest
from support.toy import TOY

from sandbox.config import REPO_ROOT
from sandbox.dp.derived import CUBE_MAX_CELLS, cube_dimensions
from sandbox.dp.layout import fingerprint
from sandbox.policy.loader import load_policies
from sandbox.policy.models import Dataset

#: ``fingerprint`` of the toy policy as computed before ``cube_dimensions`` existed: a dataset
#: without the field keeps it, so its derived tables stay current across the upgrade.
TOY_FINGERPRINT = "12434adf219bfee0729e7d36c1b21c5a07b23d9d6550025e1efd0ee7cffb8c93"

#: The greedy choice (public-domain columns in policy order within CUBE_MAX_CELLS) per dataset.
GREEDY = {
    "enterprise_registry": ("ent_type", "industry_section", "district_code", "status"),
    "enterprise_tax": ("tax_year", "credit_grade", "filing_months", "arrears_flag"),
    "hotel_stays": ("id_doc_type", "origin_region", "sex", "hotel_district", "hotel_class"),
    "inpatient_settlements": ("sex", "age_band", "residence_district", "inst_level", "insurance_type"),
    "outpatient_visits": ("sex", "residence_district", "dept", "icd10_chapter", "visit_type"),
    "penalties": ("event_type", "source_dept", "closed"),
    "road_accidents": ("hour", "district_code", "road_class", "weather"),
    "sme_loans": ("bank_code", "product", "term_months", "dpd90_flag", "default_flag"),
    "social_insurance": ("month", "si_arrears_flag"),
    "taxi_trips": ("pickup_district", "dropoff_district", "payment"),
    "transit_trips": ("card_type", "mode", "transfer_flag"),
}


def toy(**update: Any) -> Dataset:
    return Dataset.model_validate({**TOY, **update})


def test_an_explicit_list_is_used_verbatim_in_its_order() -> None:
    assert cube_dimensions(toy(cube_dimensions=["zone", "flag", "region"])) == ("zone", "flag", "region")


def test_an_empty_list_means_no_cube() -> None:
    assert cube_dimensions(toy(cube_dimensions=[])) == ()


def test_without_the_field_the_greedy_choice_is_unchanged() -> None:
    assert cube_dimensions(toy()) == ("region", "year", "flag", "zone")
    catalog = load_policies(REPO_ROOT / "policies")
    greedy = {
        ds.id: cube_dimensions(ds.model_copy(update={"cube_dimensions": None}))
        for ds in catalog.datasets.values()
        if ds.privacy_unit
    }
    assert greedy == GREEDY
    for ds in catalog.datasets.values():  # the policies that set no list still get the greedy one
        if ds.privacy_unit and ds.cube_dimensions is None:
            assert cube_dimensions(ds) == GREEDY[ds.id]


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        (["region", "region"], "dataset 'toy': cube_dimensions: 'region' is listed twice"),
        (["pid"], "dataset 'toy': cube_dimensions: 'pid' is not a column with a public domain"),
        (["amount"], "dataset 'toy': cube_dimensions: 'amount' is not a column with a public domain"),
        (["nope"], "dataset 'toy': cube_dimensions: 'nope' is not a column with a public domain"),
    ],
)
def test_a_list_the_policy_check_would_refuse_is_refused_when_building(dims: list[str], message: str) -> None:
    """A Dataset made without the loader (no policy check) cannot build a wrong cube."""
    with pytest.raises(ValueError, match="^" + message):
        cube_dimensions(toy(cube_dimensions=dims))


def test_a_list_above_the_cell_limit_is_refused_when_building() -> None:
    columns = [
        *TOY["columns"],
        {
            "name": "big",
            "type": "category",
            "role": "plain",
            "domain": [f"b{i}" for i in range(CUBE_MAX_CELLS)],
        },
    ]
    assert cube_dimensions(toy(columns=columns)) == ("region", "year", "flag", "zone")  # greedy skips big
    with pytest.raises(ValueError, match=r"up to 50,001 cells, above 50,000"):
        cube_dimensions(toy(columns=columns, cube_dimensions=["big"]))


def test_the_fingerprint_covers_the_list_and_keeps_its_value_without_it() -> None:
    assert fingerprint(toy()) == TOY_FINGERPRINT
    prints = {
        fingerprint(toy(cube_dimensions=dims))
        for dims in (["region", "year"], ["year", "region"], ["region"], [])
    }
    assert len(prints) == 4 and TOY_FINGERPRINT not in prints
    # the greedy choice written out is still a change of policy (rebuilt once, then current)
    assert fingerprint(toy(cube_dimensions=list(cube_dimensions(toy())))) != TOY_FINGERPRINT

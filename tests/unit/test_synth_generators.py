"""Synthetic generators against the policies (REQUIREMENTS §6, SR-40), in memory.

Everything here is generated at a small scale from the repository's policies; the warehouse
round trip is in tests/integration/test_synth_warehouse.py.
"""

from __future__ import annotations

import re
from datetime import date

import numpy as np
import pandas as pd
import pytest
from support.uscc import independent_is_valid

from sandbox.catalog.warehouse import RANK_COLUMN
from sandbox.errors import ConfigError
from sandbox.policy.loader import Catalog, load_policies
from sandbox.policy.models import ColumnType
from sandbox.synth.base import SynthContext, rank_within_units, unit_counts
from sandbox.synth.finance import project_hmac_key, uscc_hmac
from sandbox.synth.generate import GENERATORS, frame_checksum, rows_for

SCALE = 3_000
SEED = 11
WINDOW = (date(2017, 1, 1), date(2019, 9, 30))
ID_NUMBER = re.compile(r"\d{4}")  # generous: an ID number needs 15 or 17 digits in a row
# Date columns outside the 2017-01 .. 2019-09 record window.
OTHER_WINDOWS = {("enterprise_registry", "est_date"): (date(1992, 1, 1), date(2019, 9, 30))}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_policies()


@pytest.fixture(scope="module")
def frames(catalog: Catalog) -> dict[str, pd.DataFrame]:
    ctx = SynthContext(catalog, SEED, SCALE)
    return {ds_id: ctx.frame(ds_id) for ds_id in catalog.datasets}


def test_every_policy_dataset_has_a_generator(catalog: Catalog) -> None:
    assert set(catalog.datasets) == set(GENERATORS)


def test_columns_are_exactly_the_policy_columns(catalog: Catalog, frames: dict[str, pd.DataFrame]) -> None:
    for ds_id, frame in frames.items():
        ds = catalog.dataset(ds_id)
        expected = ds.column_names + ([RANK_COLUMN] if ds.privacy_unit else [])
        assert list(frame.columns) == expected, ds_id
        assert len(frame) == rows_for(ds_id, SCALE), ds_id


def test_numeric_values_lie_inside_policy_bounds(catalog: Catalog, frames: dict[str, pd.DataFrame]) -> None:
    for ds_id, frame in frames.items():
        for col in catalog.dataset(ds_id).columns:
            if col.bounds is None:
                continue
            values = frame[col.name].to_numpy(dtype=np.float64)
            assert values.min() >= float(col.bounds.lower), (ds_id, col.name)
            assert values.max() <= float(col.bounds.upper), (ds_id, col.name)
            if col.type is ColumnType.FLOAT and col.precision is not None:
                assert np.allclose(values, np.round(values, col.precision)), (ds_id, col.name)


def test_categorical_values_lie_inside_policy_domains(
    catalog: Catalog, frames: dict[str, pd.DataFrame]
) -> None:
    for ds_id, frame in frames.items():
        for col in catalog.dataset(ds_id).columns:
            if not isinstance(col.domain, list):
                continue
            present = set(frame[col.name].dropna().unique().tolist())
            allowed = set(col.domain)
            if col.type in (ColumnType.STRING, ColumnType.CATEGORY):
                allowed = {str(v) for v in col.domain}
            assert present <= allowed, (ds_id, col.name, present - allowed)


def test_no_nulls_outside_nullable_columns(catalog: Catalog, frames: dict[str, pd.DataFrame]) -> None:
    for ds_id, frame in frames.items():
        for col in catalog.dataset(ds_id).columns:
            if not col.nullable:
                assert not frame[col.name].isna().any(), (ds_id, col.name)


def test_dates_lie_in_the_generation_window(catalog: Catalog, frames: dict[str, pd.DataFrame]) -> None:
    for ds_id, frame in frames.items():
        for col in catalog.dataset(ds_id).columns:
            if col.type not in (ColumnType.DATE, ColumnType.TIMESTAMP):
                continue
            lo, hi = OTHER_WINDOWS.get((ds_id, col.name), WINDOW)
            values = frame[col.name]
            assert values.min().date() >= lo and values.max().date() <= hi, (ds_id, col.name)


def test_rank_is_a_permutation_of_each_units_rows(catalog: Catalog, frames: dict[str, pd.DataFrame]) -> None:
    for ds_id, frame in frames.items():
        unit = catalog.dataset(ds_id).privacy_unit
        if not unit:
            assert RANK_COLUMN not in frame.columns
            continue
        ranks = frame.groupby(unit)[RANK_COLUMN]
        sizes = ranks.size()
        assert (ranks.min() == 1).all(), ds_id
        assert (ranks.max() == sizes).all(), ds_id
        assert (ranks.nunique() == sizes).all(), ds_id


def test_some_units_exceed_the_contribution_bound(catalog: Catalog, frames: dict[str, pd.DataFrame]) -> None:
    for ds_id, frame in frames.items():
        ds = catalog.dataset(ds_id)
        if not ds.privacy_unit or not ds.max_rows_per_unit or ds.max_rows_per_unit == 1:
            continue
        assert frame.groupby(ds.privacy_unit).size().max() > ds.max_rows_per_unit, ds_id
        assert (frame[RANK_COLUMN] <= ds.max_rows_per_unit).sum() < len(frame), ds_id


def test_rank_order_is_seeded_not_generation_order() -> None:
    units = np.repeat(np.array(["a", "b"], dtype=object), 50)
    first = rank_within_units(units, np.random.default_rng(1))
    again = rank_within_units(units, np.random.default_rng(1))
    other = rank_within_units(units, np.random.default_rng(2))
    assert (first == again).all() and not (first == other).all()
    assert not (first[:50] == np.arange(1, 51)).all()


def test_unit_counts_sum_exactly_and_include_heavy_units() -> None:
    rng = np.random.default_rng(0)
    counts = unit_counts(rng, 10_000, lambda r, k: r.geometric(0.3, k), bound=20, heavy_share=0.0)
    assert counts.sum() == 10_000 and counts.min() >= 1 and counts.max() > 20


def test_same_seed_same_bytes_different_seed_different(
    catalog: Catalog, frames: dict[str, pd.DataFrame]
) -> None:
    again = SynthContext(catalog, SEED, SCALE)
    other = SynthContext(catalog, SEED + 1, SCALE)
    for ds_id in ("enterprise_registry", "transit_trips", "outpatient_visits"):
        assert frame_checksum(again.frame(ds_id)) == frame_checksum(frames[ds_id])
        assert frame_checksum(other.frame(ds_id)) != frame_checksum(frames[ds_id])


def test_a_subset_gives_the_same_rows_as_a_full_run(
    catalog: Catalog, frames: dict[str, pd.DataFrame]
) -> None:
    for ds_id in (
        "enterprise_tax",
        "sme_loans",
        "transit_trips",
        "outpatient_visits",
        "venue_daily_visitors",
    ):
        alone = SynthContext(catalog, SEED, SCALE).frame(ds_id)
        assert frame_checksum(alone) == frame_checksum(frames[ds_id]), ds_id


def test_enterprise_codes_are_valid_and_match_type_and_district(frames: dict[str, pd.DataFrame]) -> None:
    reg = frames["enterprise_registry"]
    assert reg["uscc"].is_unique
    category = {"个体工商户": "2", "农民专业合作社": "3"}
    for code, kind, district in zip(reg["uscc"], reg["ent_type"], reg["district_code"], strict=True):
        assert independent_is_valid(code), code
        assert code[0] == "9" and code[1] == category.get(kind, "1") and code[2:8] == district


def test_institution_codes_are_valid_public_12_private_52(frames: dict[str, pd.DataFrame]) -> None:
    inst = frames["medical_institutions"]
    assert inst["inst_uscc"].is_unique
    for code, ownership, district in zip(
        inst["inst_uscc"], inst["ownership"], inst["district_code"], strict=True
    ):
        assert independent_is_valid(code), code
        assert code[:2] == ("12" if ownership == "公立" else "52") and code[2:8] == district


def test_enterprise_join_keys_come_from_the_registry(
    catalog: Catalog, frames: dict[str, pd.DataFrame]
) -> None:
    registry = set(frames["enterprise_registry"]["uscc"])
    for ds_id in ("enterprise_tax", "social_insurance", "penalties"):
        assert set(frames[ds_id]["uscc"]) <= registry, ds_id
    hmacs = set(uscc_hmac(sorted(registry), project_hmac_key(SEED)))
    assert set(frames["sme_loans"]["uscc_hmac"]) <= hmacs


def test_transit_trips_use_stations_of_their_mode(frames: dict[str, pd.DataFrame]) -> None:
    stations = frames["transit_stations"].set_index("station_id")["mode"]
    trips = frames["transit_trips"]
    assert (stations.reindex(trips["entry_station_id"]).to_numpy() == trips["mode"].to_numpy()).all()
    bus = (trips["mode"] == "公交").to_numpy()
    assert trips["exit_station_id"][bus].isna().all()
    exits = trips["exit_station_id"][~bus]
    assert exits.notna().all()
    assert (stations.reindex(exits).to_numpy() == trips["mode"][~bus].to_numpy()).all()


def test_health_and_culture_join_keys(frames: dict[str, pd.DataFrame]) -> None:
    assert set(frames["outpatient_visits"]["inst_uscc"]) <= set(frames["medical_institutions"]["inst_uscc"])
    visits = frames["venue_daily_visitors"]
    venues = frames["venues"].set_index("venue_id")
    assert set(visits["venue_id"]) <= set(venues.index)
    assert not visits.duplicated(["venue_id", "date"]).any()
    capacity = venues["max_capacity"].reindex(visits["venue_id"]).to_numpy()
    assert (visits["visitors"].to_numpy() <= 1.5 * capacity).all()


def test_pseudonyms_are_random_hex_never_id_number_shaped(
    catalog: Catalog, frames: dict[str, pd.DataFrame]
) -> None:
    for ds_id, column in [
        ("transit_trips", "card_pseudo"),
        ("taxi_trips", "vehicle_pseudo"),
        ("outpatient_visits", "patient_pseudo"),
        ("inpatient_settlements", "person_pseudo"),
        ("hotel_stays", "guest_pseudo"),
        ("sme_loans", "loan_pseudo"),
    ]:
        values = frames[ds_id][column]
        assert values.str.fullmatch(r"[0-9a-f]{32}").all(), (ds_id, column)
        assert not values.str.contains(ID_NUMBER).any(), (ds_id, column)


def test_plausible_marginals(frames: dict[str, pd.DataFrame]) -> None:
    reg = frames["enterprise_registry"]
    assert reg["district_code"].value_counts().index[0] == "310115"  # Pudong has the most enterprises
    assert 60 <= reg["reg_capital_wan"].median() <= 160  # log-normal, median about 100
    taxi = frames["taxi_trips"]
    assert (taxi["dropoff_time"] >= taxi["pickup_time"]).all()
    inpatient = frames["inpatient_settlements"]
    paid = inpatient["fund_paid_yuan"] + inpatient["self_paid_yuan"]
    assert np.allclose(paid, inpatient["total_cost_yuan"], atol=0.011)


def test_scale_rule() -> None:
    assert rows_for("taxi_trips", 20_000) == 20_000
    assert rows_for("enterprise_registry", 20_000) == 20_000
    assert rows_for("transit_stations", 20_000) == 200
    assert rows_for("transit_stations", 10_000_000) == 5_000
    assert rows_for("medical_institutions", 1_000) == 50
    assert rows_for("venues", 1_000_000) == 2_000
    with pytest.raises(ConfigError):
        rows_for("taxi_trips", 0)

"""文化旅游 generators (REQUIREMENTS §6.5): C1 venues, C2 daily visitors, C3 hotel stays.

Each venue reports daily visitor counts over one contiguous run of days, so ``(venue_id, date)``
is unique in C2, and ``visitors <= 1.5 * max_capacity``. Hotels of C3 come from a pool generated
with the dataset (hotel id, district and class are consistent across stays).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from sandbox.synth import geo
from sandbox.synth.base import (
    N_DAYS,
    Builder,
    Columns,
    days_to_dates,
    lognormal,
    random_dates,
    sequence_ids,
    unique_tokens,
    unit_counts,
    weighted_index,
)

VENUES = "venues"
SCENIC = "A级旅游景区"

_GRADE_SHARE = {"1A": 0.02, "2A": 0.15, "3A": 0.45, "4A": 0.3, "5A": 0.08}
_CAPACITY = {"博物馆": 2000.0, "美术馆": 600.0, "公共图书馆": 800.0, "剧场": 1200.0, "文化馆": 500.0}
_SCENIC_CAPACITY = {"5A": 30000.0, "4A": 12000.0, "3A": 5000.0, "2A": 2000.0, "1A": 800.0}
_SCENIC_PRICE = {"5A": 150.0, "4A": 60.0, "3A": 30.0, "2A": 15.0, "1A": 10.0}
_SUFFIX = {
    "博物馆": "博物馆",
    "美术馆": "美术馆",
    "公共图书馆": "图书馆",
    "剧场": "大剧院",
    "文化馆": "文化馆",
}
_NAME_CHARS = list("东方明珠豫园新天地朱家角枫泾世纪滨江古漪南翔醉白池嘉定佘山辰山顾村")

# Public holidays 2017-01 .. 2019-09 (approximate; adjusted working weekends are ignored).
_HOLIDAYS: list[tuple[str, int]] = [
    ("2017-01-01", 2), ("2017-01-27", 7), ("2017-04-02", 3), ("2017-04-29", 3), ("2017-05-28", 3),
    ("2017-10-01", 8), ("2017-12-30", 3), ("2018-02-15", 7), ("2018-04-05", 3), ("2018-04-29", 3),
    ("2018-06-16", 3), ("2018-09-22", 3), ("2018-10-01", 7), ("2018-12-30", 3), ("2019-02-04", 7),
    ("2019-04-05", 3), ("2019-05-01", 4), ("2019-06-07", 3), ("2019-09-13", 3),
]  # fmt: skip

_PROVINCE_SHARE: dict[str, float] = {
    "31": 0.2, "32": 0.15, "33": 0.12, "34": 0.08, "37": 0.05, "41": 0.05, "44": 0.05, "11": 0.04,
    "51": 0.04, "42": 0.04, "36": 0.03, "35": 0.03, "43": 0.03, "13": 0.02, "12": 0.02, "50": 0.02,
    "21": 0.015, "14": 0.01, "15": 0.005, "22": 0.008, "23": 0.01, "45": 0.01, "46": 0.005, "52": 0.008,
    "53": 0.008, "54": 0.001, "61": 0.01, "62": 0.005, "63": 0.002, "64": 0.002, "65": 0.005,
}  # fmt: skip
ABROAD = "境外"


def _holiday_days() -> npt.NDArray[np.int64]:
    start = np.datetime64("2017-01-01", "D")
    days = [int((np.datetime64(d, "D") - start).astype(int)) + i for d, k in _HOLIDAYS for i in range(k)]
    return np.array(sorted(set(days)), dtype=np.int64)


# --------------------------------------------------------------------------- C1


def venues(b: Builder) -> Columns:
    n = b.n_rows
    rng = b.rng("rows")
    category = b.pick(
        "category",
        n,
        rng,
        {SCENIC: 0.3, "博物馆": 0.25, "美术馆": 0.12, "公共图书馆": 0.12, "剧场": 0.1, "文化馆": 0.11},
    )
    scenic = category == SCENIC
    grade = b.pick_by(
        "a_grade", np.where(scenic, "scenic", "other"), rng, {"scenic": _GRADE_SHARE, "other": {"无": 1.0}}
    )
    district = b.pick_by(
        "district_code",
        np.where(scenic, "scenic", "other"),
        rng,
        {"scenic": geo.RESIDENT_SHARE, "other": geo.ACTIVITY_SHARE},
    )
    median = np.where(
        scenic,
        pd.Series(grade).map(_SCENIC_CAPACITY).fillna(3000.0).to_numpy(),
        pd.Series(category).map(_CAPACITY).fillna(1000.0).to_numpy(),
    )
    capacity = np.rint(median * np.exp(rng.normal(0, 0.5, n)))
    chars = np.array(_NAME_CHARS, dtype=object)
    core = chars[rng.integers(0, len(chars), n)] + chars[rng.integers(0, len(chars), n)]
    area = pd.Series(district).map(geo.NAMES).fillna("申城").to_numpy(dtype=object)
    scenic_suffix = np.array(["景区", "公园", "古镇", "森林公园"], dtype=object)[rng.integers(0, 4, n)]
    suffix = np.where(
        scenic, scenic_suffix, pd.Series(category).map(_SUFFIX).fillna("文化中心").to_numpy(dtype=object)
    )
    lon, lat = geo.locate(rng, district)
    return {
        "venue_id": sequence_ids("V", n, 5),
        "name": area + core + suffix,
        "category": category,
        "a_grade": grade,
        "district_code": district,
        "max_capacity": capacity,
        "lon": lon,
        "lat": lat,
    }


# --------------------------------------------------------------------------- C2


def venue_daily_visitors(b: Builder) -> Columns:
    ven = b.parent_frame("venue_id", VENUES)
    rng = b.rng("rows")
    n_v = len(ven)
    counts = _days_per_venue(rng, b.n_rows, n_v)
    j = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    start = np.repeat(rng.integers(0, N_DAYS - counts + 1), counts)
    day = start + j
    row_venue = np.repeat(np.arange(n_v), counts)
    n = len(day)

    dates = days_to_dates(day)
    weekday = (dates.astype("datetime64[D]").view(np.int64) - 4) % 7  # 0 = Monday (1970-01-05 was one)
    holiday = np.isin(day, _holiday_days())
    day_type = np.where(holiday, "法定节假日", np.where(weekday >= 5, "周末", "工作日"))
    factor = np.where(holiday, 1.9, np.where(weekday >= 5, 1.4, 1.0))
    season = 1 + 0.2 * np.sin(2 * np.pi * (day - 100) / 365.25)

    capacity = ven["max_capacity"].to_numpy().astype(np.float64)
    category = ven["category"].to_numpy(dtype=object)
    grade = ven["a_grade"].to_numpy(dtype=object)
    utilisation = rng.beta(2, 6, n_v)
    visitors = capacity[row_venue] * utilisation[row_venue] * factor * season * lognormal(rng, n, 1.0, 0.25)
    lo, hi = b.bounds("visitors")
    visitors = np.clip(np.rint(np.minimum(visitors, 1.5 * capacity[row_venue])), lo, hi)
    visitors = np.minimum(visitors, np.floor(1.5 * capacity[row_venue]))

    price = np.where(
        category == SCENIC,
        pd.Series(grade).map(_SCENIC_PRICE).fillna(20.0).to_numpy() * rng.uniform(0.6, 1.4, n_v),
        0.0,
    )
    price = np.where(
        category == "博物馆", np.where(rng.random(n_v) < 0.3, rng.uniform(20, 60, n_v), 0.0), price
    )
    price = np.where(
        category == "美术馆", np.where(rng.random(n_v) < 0.5, rng.uniform(20, 100, n_v), 0.0), price
    )
    price = np.where(category == "剧场", rng.uniform(80, 300, n_v), price)
    revenue = visitors * price[row_venue] * 0.7 / 10_000
    return {
        "venue_id": ven["venue_id"].to_numpy(dtype=object)[row_venue],
        "date": dates,
        "visitors": visitors,
        "day_type": day_type,
        "ticket_revenue_wan": revenue,
    }


def _days_per_venue(rng: np.random.Generator, n_rows: int, n_venues: int) -> npt.NDArray[np.int64]:
    """Reporting days per venue: uneven, at most N_DAYS each, summing to ``n_rows``."""
    if n_rows > n_venues * N_DAYS:
        raise ValueError(f"{n_rows} venue-days do not fit {n_venues} venues x {N_DAYS} days")
    share = rng.gamma(8.0, 1.0, n_venues)
    counts: npt.NDArray[np.int64] = np.minimum(
        np.floor(n_rows * share / share.sum()).astype(np.int64), N_DAYS
    )
    deficit = n_rows - int(counts.sum())
    while deficit > 0:
        slack = np.flatnonzero(counts < N_DAYS)
        add = min(deficit, len(slack))
        counts[slack[:add]] += 1
        deficit -= add
    return counts


# --------------------------------------------------------------------------- C3


def hotel_stays(b: Builder) -> Columns:
    rng = b.rng("rows")
    bound = b.dataset.max_rows_per_unit

    def draw(r: np.random.Generator, k: int) -> npt.NDArray[np.int64]:
        return r.geometric(0.5, k)

    counts = unit_counts(rng, b.n_rows, draw, bound, heavy_share=0.005)
    m = len(counts)
    n = int(counts.sum())

    n_hotels = min(max(b.n_rows // 40, 30), 20_000)
    hotel_ids = sequence_ids("H", n_hotels, 6)
    hotel_district = b.pick("hotel_district", n_hotels, rng, geo.ACTIVITY_SHARE)
    hotel_class = b.pick(
        "hotel_class", n_hotels, rng, {"经济型": 0.55, "三星": 0.2, "四星": 0.15, "五星": 0.1}
    )
    popularity = lognormal(rng, n_hotels, 1.0, 0.8)

    guests = unique_tokens(rng, m)
    doc = b.pick(
        "id_doc_type",
        m,
        rng,
        {"居民身份证": 0.9, "护照": 0.06, "港澳居民来往内地通行证": 0.03, "台湾居民来往大陆通行证": 0.01},
    )
    resident = doc == "居民身份证"
    origin = b.pick_by(
        "origin_region",
        np.where(resident, "mainland", "abroad"),
        rng,
        {"mainland": _PROVINCE_SHARE, "abroad": {ABROAD: 1.0}},
    )
    sex = b.pick("sex", m, rng, {"男": 0.55, "女": 0.45})
    age = np.rint(np.clip(rng.normal(38, 12, m), 16, 95))
    hotel = weighted_index(rng, n, popularity)
    return {
        "guest_pseudo": np.repeat(guests, counts),
        "id_doc_type": np.repeat(doc, counts),
        "origin_region": np.repeat(origin, counts),
        "sex": np.repeat(sex, counts),
        "age": np.repeat(age, counts),
        "hotel_id": hotel_ids[hotel],
        "hotel_district": hotel_district[hotel],
        "hotel_class": hotel_class[hotel],
        "checkin_date": random_dates(rng, n),
        "nights": np.minimum(rng.geometric(0.5, n), 30),
    }

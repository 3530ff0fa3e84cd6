"""交通出行 generators (REQUIREMENTS §6.3): T1 stations, T2 card trips, T3 taxi trips, T4 accidents.

Every ``entry_station_id`` / ``exit_station_id`` of a trip is a station of the trip's mode in
``transit_stations`` (``exit_station_id`` is NULL for bus trips).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from sandbox.synth import geo
from sandbox.synth.base import (
    N_DAYS,
    Array,
    Builder,
    Columns,
    days_to_dates,
    lognormal,
    minutes_of_day,
    sequence_ids,
    timestamps,
    unique_tokens,
    unit_counts,
)

STATIONS = "transit_stations"
_ROAD_CHARS = list("长江黄河淮海南京北京延安复兴中山四川西藏江苏浙江龙华曹杨金桥张江世纪陆家嘴人民天山虹桥")
_FERRY_DISTRICTS = {"310101": 1.0, "310115": 1.5, "310110": 0.6, "310109": 0.5, "310104": 0.4, "310151": 0.8}
_LON0, _LAT0 = 120.85, 30.67
_GRID_LON, _GRID_LAT = 0.01052, 0.00899  # about 1 km at 31 degrees north


# --------------------------------------------------------------------------- T1


def transit_stations(b: Builder) -> Columns:
    n = b.n_rows
    rng = b.rng("rows")
    modes = [str(m) for m in b.domain("mode")]
    shares = {"地铁": 0.2, "轮渡": 0.03, "磁浮": 0.0}
    counts: dict[str, int] = {}
    for name in modes:
        if name == "磁浮":
            counts[name] = 2 if n >= 20 else 0
        elif name in shares:
            counts[name] = max(2, round(n * shares[name]))
    rest = [m for m in modes if m not in counts]
    remaining = n - sum(counts.values())
    for i, name in enumerate(rest):
        counts[name] = remaining // len(rest) + (1 if i < remaining % len(rest) else 0)
    mode = np.concatenate([np.full(counts[m], m) for m in modes if counts[m] > 0])

    prefix = {"地铁": "M", "公交": "B", "轮渡": "F", "磁浮": "L"}
    station_id = np.empty(n, dtype=object)
    line_id = np.empty(n, dtype=object)
    names = np.empty(n, dtype=object)
    open_year = np.empty(n, dtype=np.int64)
    district = b.pick_by(
        "district_code",
        mode,
        rng,
        {
            "地铁": geo.ACTIVITY_SHARE,
            "公交": geo.RESIDENT_SHARE,
            "轮渡": _FERRY_DISTRICTS,
            "磁浮": {"310115": 1.0},
        },
        default=geo.RESIDENT_SHARE,
    )
    roads = np.array(_ROAD_CHARS, dtype=object)
    road_a = roads[rng.integers(0, len(roads), n)] + roads[rng.integers(0, len(roads), n)]
    road_b = roads[rng.integers(0, len(roads), n)] + roads[rng.integers(0, len(roads), n)]
    for m in modes:
        mask = mode == m
        k = int(mask.sum())
        if k == 0:
            continue
        station_id[mask] = sequence_ids(prefix.get(m, "S"), k, 5)
        if m == "地铁":
            line_id[mask] = np.char.add("L", np.char.zfill(rng.integers(1, 19, k).astype("U"), 2))
            names[mask] = road_a[mask] + "路站"
            open_year[mask] = 1993 + (rng.beta(2.0, 1.0, k) * 27).astype(np.int64)
        elif m == "轮渡":
            line_id[mask] = np.char.add("F", np.char.zfill(rng.integers(1, 18, k).astype("U"), 2))
            names[mask] = road_a[mask] + "路轮渡站"
            open_year[mask] = 1993 + (rng.beta(1.0, 3.0, k) * 27).astype(np.int64)
        elif m == "磁浮":
            line_id[mask] = "MAGLEV"
            names[mask] = np.array(["龙阳路站", "浦东国际机场站"] * k, dtype=object)[:k]
            open_year[mask] = 2004
        else:
            line_id[mask] = np.char.add("B", np.char.zfill(rng.integers(1, 1500, k).astype("U"), 4))
            names[mask] = road_a[mask] + "路" + road_b[mask] + "路"
            open_year[mask] = rng.integers(1993, 2020, k)
    lon, lat = geo.locate(rng, district)
    return {
        "station_id": station_id,
        "station_name": names,
        "mode": mode,
        "line_id": line_id,
        "district_code": district,
        "lon": lon,
        "lat": lat,
        "open_year": open_year,
    }


# --------------------------------------------------------------------------- T2


def transit_trips(b: Builder) -> Columns:
    stations = b.parent_frame("entry_station_id", STATIONS)
    rng = b.rng("rows")
    bound = b.dataset.max_rows_per_unit

    def draw(r: np.random.Generator, k: int) -> npt.NDArray[np.int64]:
        return r.geometric(1 / 40, k)

    counts = unit_counts(rng, b.n_rows, draw, bound, heavy_share=0.01)
    m = len(counts)
    n = int(counts.sum())
    cards = unique_tokens(rng, m)
    card_type = b.pick("card_type", m, rng, {"普通卡": 0.8, "学生卡": 0.08, "敬老卡": 0.12})
    window = 90
    start = rng.integers(0, max(1, N_DAYS - window), m)
    day = np.repeat(start, counts) + rng.integers(0, window, n)
    minute = minutes_of_day(rng, n, [(0.3, 8.0, 1.0), (0.3, 18.0, 1.2)], flat=(6.0, 22.5))
    mode = b.pick("mode", n, rng, {"地铁": 0.55, "公交": 0.43, "轮渡": 0.02})

    st_mode = stations["mode"].to_numpy(dtype=object)
    st_id = stations["station_id"].to_numpy(dtype=object)
    st_lon = stations["lon"].to_numpy()
    st_lat = stations["lat"].to_numpy()
    entry = np.empty(n, dtype=np.int64)
    exit_ = np.full(n, -1, dtype=np.int64)
    for m_value in pd.unique(mode):
        rows = np.flatnonzero(mode == m_value)
        pool = np.flatnonzero(st_mode == m_value)
        if len(pool) == 0:
            pool = np.arange(len(st_id))
        entry[rows] = pool[rng.integers(0, len(pool), len(rows))]
        if m_value != "公交":
            exit_[rows] = pool[rng.integers(0, len(pool), len(rows))]
    has_exit = exit_ >= 0
    dist = np.zeros(n)
    dist[has_exit] = _km(
        st_lon[entry[has_exit]], st_lat[entry[has_exit]], st_lon[exit_[has_exit]], st_lat[exit_[has_exit]]
    )
    fare = np.where(mode == "地铁", 3 + np.ceil(np.maximum(dist - 6, 0) / 10), 2.0)
    fare = np.where(mode == "公交", rng.choice([1.0, 2.0, 3.0], size=n, p=[0.1, 0.8, 0.1]), fare)
    transfer = (mode != "轮渡") & (rng.random(n) < 0.15)
    fare = np.maximum(fare - transfer * 1.0, 0)
    exit_ids = np.full(n, None, dtype=object)
    exit_ids[has_exit] = st_id[exit_[has_exit]]
    return {
        "card_pseudo": np.repeat(cards, counts),
        "card_type": np.repeat(card_type, counts),
        "txn_time": timestamps(np.minimum(day, N_DAYS - 1), minute),
        "mode": mode,
        "entry_station_id": st_id[entry],
        "exit_station_id": exit_ids,
        "fare_yuan": fare,
        "transfer_flag": transfer,
    }


def _km(
    lon1: npt.NDArray[np.float64],
    lat1: npt.NDArray[np.float64],
    lon2: npt.NDArray[np.float64],
    lat2: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    return np.sqrt(((lon2 - lon1) * 95.0) ** 2 + ((lat2 - lat1) * 111.0) ** 2)


# --------------------------------------------------------------------------- T3


def taxi_trips(b: Builder) -> Columns:
    rng = b.rng("rows")
    bound = b.dataset.max_rows_per_unit

    def draw(r: np.random.Generator, k: int) -> npt.NDArray[np.int64]:
        return r.geometric(1 / 25, k)

    counts = unit_counts(rng, b.n_rows, draw, bound, heavy_share=0.01)
    m = len(counts)
    n = int(counts.sum())
    vehicles = unique_tokens(rng, m)
    window = 30
    start = rng.integers(0, max(1, N_DAYS - window), m)
    day = np.minimum(np.repeat(start, counts) + rng.integers(0, window, n), N_DAYS - 1)
    minute = minutes_of_day(rng, n, [(0.2, 8.5, 1.0), (0.25, 18.5, 1.5), (0.1, 22.0, 1.0)])
    pickup = timestamps(day, minute)

    pick_d = b.pick("pickup_district", n, rng, geo.ACTIVITY_SHARE)
    other_d = b.pick("dropoff_district", n, rng, geo.ACTIVITY_SHARE)
    same = rng.random(n) < 0.6
    drop_d = np.where(same, pick_d, other_d)
    p_lon, p_lat = geo.locate(rng, pick_d)
    o_lon, o_lat = geo.locate(rng, drop_d)
    distance = np.where(pick_d == drop_d, lognormal(rng, n, 3.5, 0.6), lognormal(rng, n, 12.0, 0.6))
    airport = rng.random(n) < 0.02  # trips to and from the airports are long
    distance = np.where(airport, rng.uniform(25, 70, n), distance)
    angle = rng.uniform(0, 2 * np.pi, n)
    d_lon = np.where(same, p_lon + np.cos(angle) * distance / 1.3 / 95.0, o_lon)
    d_lat = np.where(same, p_lat + np.sin(angle) * distance / 1.3 / 111.0, o_lat)
    speed = np.clip(rng.normal(22, 5, n), 8, 60)
    duration = np.rint(distance / speed * 60 + 2).astype(np.int64)
    hour = minute // 60
    night = (hour >= 23) | (hour < 5)
    d = np.clip(distance, 0.1, 120)
    fare_day = 14 + 2.5 * np.clip(d - 3, 0, 12) + 3.6 * np.maximum(d - 15, 0)
    fare_night = 18 + 3.1 * np.clip(d - 3, 0, 12) + 4.7 * np.maximum(d - 15, 0)
    fare = np.rint(np.where(night, fare_night, fare_day) + rng.uniform(0, 4, n))
    year = day // 365
    payment = b.pick_by(
        "payment",
        year,
        rng,
        {
            0: {"现金": 0.3, "交通卡": 0.35, "移动支付": 0.35},
            1: {"现金": 0.18, "交通卡": 0.3, "移动支付": 0.52},
            2: {"现金": 0.08, "交通卡": 0.22, "移动支付": 0.7},
        },
    )
    return {
        "vehicle_pseudo": np.repeat(vehicles, counts),
        "pickup_time": pickup,
        "dropoff_time": pickup + duration.astype("timedelta64[m]"),
        "pickup_grid": _grid(p_lon, p_lat),
        "dropoff_grid": _grid(d_lon, d_lat),
        "pickup_district": pick_d,
        "dropoff_district": drop_d,
        "distance_km": distance,
        "fare_yuan": fare,
        "payment": payment,
    }


def _grid(lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64]) -> Array:
    """1 km grid cell ``Gxxx-yyy`` counted from the south-west corner of the Shanghai bounds."""
    gx = np.clip(((lon - _LON0) / _GRID_LON).astype(np.int64), 0, 999)
    gy = np.clip(((lat - _LAT0) / _GRID_LAT).astype(np.int64), 0, 999)
    cell = gx * 1000 + gy
    codes, uniques = pd.factorize(cell)
    labels = np.array([f"G{c // 1000:03d}-{c % 1000:03d}" for c in uniques], dtype=object)
    out: Array = labels[codes]
    return out


# --------------------------------------------------------------------------- T4


def road_accidents(b: Builder) -> Columns:
    n = b.n_rows
    rng = b.rng("rows")
    day = np.sort(rng.integers(0, N_DAYS, n))
    hour_weights = {
        h: w
        for h, w in enumerate(
            [1, 0.7, 0.5, 0.5, 0.6, 1, 2, 4, 5, 4, 3, 3, 3, 3, 3, 3.5, 4, 5, 5, 4, 3, 2.5, 2, 1.5]
        )
    }
    hour = b.pick("hour", n, rng, hour_weights)
    severity = b.pick("severity", n, rng, {"财产损失": 0.72, "轻伤": 0.18, "重伤": 0.07, "死亡": 0.03})
    injured = np.select(
        [severity == "轻伤", severity == "重伤", severity == "死亡"],
        [1 + rng.poisson(0.3, n), 1 + rng.poisson(0.6, n), rng.poisson(0.5, n)],
        default=0,
    )
    killed = np.where(severity == "死亡", 1 + rng.poisson(0.1, n), 0)
    columns: Columns = {
        "date": days_to_dates(day),
        "hour": hour,
        "district_code": b.pick("district_code", n, rng, geo.RESIDENT_SHARE),
        "road_class": b.pick(
            "road_class", n, rng, {"快速路": 0.12, "主干路": 0.3, "次干路": 0.25, "支路": 0.2, "公路": 0.13}
        ),
        "weather": b.pick("weather", n, rng, {"晴": 0.5, "阴": 0.28, "雨": 0.19, "雾": 0.02, "雪": 0.01}),
        "severity": severity,
        "vehicles": 1 + rng.poisson(0.8, n),
        "injured": injured,
        "killed": killed,
        "primary_party": b.pick("primary_party", n, rng, {"机动车": 0.68, "非机动车": 0.24, "行人": 0.08}),
    }
    # rows in time order, numbered in that order
    order = np.lexsort((hour, day))
    out = {k: np.asarray(v)[order] for k, v in columns.items()}
    return {"accident_id": sequence_ids("ACC", n, 8), **out}

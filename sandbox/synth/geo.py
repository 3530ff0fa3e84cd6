"""Shanghai's 16 districts for the generators: plausible shares and rough locations.

Shares are invented to look plausible (Pudong the largest everywhere, central districts busy for
taxis, suburbs strong in registrations), with no claim to be real statistics (REQUIREMENTS §6).
Centres and spreads are rough, so generated points fall in or near the right district; every
point is clamped to the policy's lon/lat bounds.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

# code: (lon, lat, spread in degrees)
CENTRES: dict[str, tuple[float, float, float]] = {
    "310101": (121.490, 31.225, 0.012),  # 黄浦
    "310104": (121.437, 31.180, 0.020),  # 徐汇
    "310105": (121.400, 31.210, 0.020),  # 长宁
    "310106": (121.455, 31.250, 0.018),  # 静安
    "310107": (121.400, 31.255, 0.018),  # 普陀
    "310109": (121.490, 31.270, 0.013),  # 虹口
    "310110": (121.530, 31.280, 0.020),  # 杨浦
    "310112": (121.400, 31.100, 0.045),  # 闵行
    "310113": (121.430, 31.380, 0.045),  # 宝山
    "310114": (121.250, 31.360, 0.050),  # 嘉定
    "310115": (121.650, 31.150, 0.110),  # 浦东新区
    "310116": (121.250, 30.800, 0.060),  # 金山
    "310117": (121.220, 31.030, 0.060),  # 松江
    "310118": (121.080, 31.130, 0.070),  # 青浦
    "310120": (121.520, 30.920, 0.070),  # 奉贤
    "310151": (121.550, 31.620, 0.120),  # 崇明
}

NAMES: dict[str, str] = {
    "310101": "黄浦",
    "310104": "徐汇",
    "310105": "长宁",
    "310106": "静安",
    "310107": "普陀",
    "310109": "虹口",
    "310110": "杨浦",
    "310112": "闵行",
    "310113": "宝山",
    "310114": "嘉定",
    "310115": "浦东",
    "310116": "金山",
    "310117": "松江",
    "310118": "青浦",
    "310120": "奉贤",
    "310151": "崇明",
}

# Where enterprises register: Pudong first; suburban districts with registration parks are strong.
ENTERPRISE_SHARE: dict[str, float] = {
    "310115": 0.18,
    "310151": 0.08,
    "310120": 0.08,
    "310114": 0.08,
    "310112": 0.08,
    "310117": 0.07,
    "310118": 0.07,
    "310113": 0.06,
    "310116": 0.05,
    "310104": 0.04,
    "310106": 0.04,
    "310101": 0.03,
    "310105": 0.03,
    "310107": 0.03,
    "310109": 0.03,
    "310110": 0.03,
}

# Where people live.
RESIDENT_SHARE: dict[str, float] = {
    "310115": 0.23,
    "310112": 0.10,
    "310113": 0.085,
    "310117": 0.07,
    "310114": 0.065,
    "310107": 0.05,
    "310110": 0.05,
    "310118": 0.05,
    "310120": 0.05,
    "310104": 0.045,
    "310106": 0.04,
    "310109": 0.032,
    "310116": 0.032,
    "310105": 0.028,
    "310151": 0.028,
    "310101": 0.027,
}

# Where activity happens (taxi pick-ups, hotels, venues): central districts weigh more.
ACTIVITY_SHARE: dict[str, float] = {
    "310115": 0.20,
    "310101": 0.09,
    "310106": 0.09,
    "310104": 0.08,
    "310112": 0.08,
    "310105": 0.06,
    "310110": 0.06,
    "310107": 0.05,
    "310109": 0.05,
    "310113": 0.05,
    "310114": 0.04,
    "310117": 0.04,
    "310118": 0.03,
    "310120": 0.02,
    "310116": 0.01,
    "310151": 0.01,
}

OTHER_PROVINCES = "外省市"
_CITY_CENTRE = (121.47, 31.23, 0.1)


def locate(
    rng: np.random.Generator, districts: npt.NDArray[np.str_]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Longitude and latitude scattered around each row's district centre."""
    codes, uniques = pd.factorize(np.asarray(districts))
    table = np.array([CENTRES.get(str(d), _CITY_CENTRE) for d in uniques]).reshape(-1, 3)
    lon0, lat0, spread = table[codes, 0], table[codes, 1], table[codes, 2]
    n = len(districts)
    return lon0 + rng.normal(0, 1, n) * spread, lat0 + rng.normal(0, 1, n) * spread * 0.8


def short_name(code: str) -> str:
    return NAMES.get(str(code), "申城")

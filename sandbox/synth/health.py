"""医疗健康 generators (REQUIREMENTS §6.4): H1 institutions, H2 outpatient visits, H3 inpatient settlements.

Institutions get GB 32100-valid codes: ``12`` + district for public institutions (事业单位),
``52`` + district for private non-enterprise units (民办非企业单位). Every ``inst_uscc`` of an
outpatient visit is an institution of H1.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pandas as pd

from sandbox.synth import geo
from sandbox.synth.base import (
    Array,
    Builder,
    Columns,
    lognormal,
    random_dates,
    unique_tokens,
    unit_counts,
    weighted_index,
)
from sandbox.synth.uscc import make_codes

INSTITUTIONS = "medical_institutions"

_LEVELS_PUBLIC: dict[str, dict[str, float]] = {
    "综合医院": {
        "三级甲等": 0.25,
        "三级乙等": 0.1,
        "二级甲等": 0.35,
        "二级乙等": 0.15,
        "一级": 0.1,
        "未定级": 0.05,
    },
    "专科医院": {
        "三级甲等": 0.2,
        "三级乙等": 0.1,
        "二级甲等": 0.3,
        "二级乙等": 0.2,
        "一级": 0.1,
        "未定级": 0.1,
    },
    "中医医院": {"三级甲等": 0.25, "二级甲等": 0.5, "二级乙等": 0.15, "一级": 0.1},
    "妇幼保健院": {"三级甲等": 0.1, "二级甲等": 0.6, "二级乙等": 0.2, "一级": 0.1},
    "社区卫生服务中心": {"一级": 0.9, "未定级": 0.1},
}
_LEVELS_PRIVATE = {"二级甲等": 0.05, "二级乙等": 0.15, "一级": 0.4, "未定级": 0.4}
_BEDS = {
    "三级甲等": (1400.0, 0.35),
    "三级乙等": (700.0, 0.3),
    "二级甲等": (500.0, 0.35),
    "二级乙等": (250.0, 0.35),
    "一级": (60.0, 0.5),
    "未定级": (30.0, 0.8),
}
_LEVEL_SHARE = {
    "三级甲等": 0.45,
    "三级乙等": 0.1,
    "二级甲等": 0.3,
    "二级乙等": 0.08,
    "一级": 0.05,
    "未定级": 0.02,
}
_SPECIALTIES = ["眼科", "口腔", "骨科", "精神卫生", "肿瘤", "儿童", "康复", "胸科"]
_NAME_CHARS = list("仁济华山瑞金中山长征长海新华同仁曙光岳阳龙华东方同济市北宝钢")

_DEPT_BY_GROUP: dict[str, dict[str, float]] = {
    "emergency": {"急诊科": 0.85, "儿科": 0.1, "内科": 0.05},
    "child": {"儿科": 0.6, "耳鼻喉科": 0.1, "口腔科": 0.08, "眼科": 0.08, "皮肤科": 0.06, "外科": 0.05,
              "中医科": 0.03},
    "woman": {"内科": 0.3, "妇产科": 0.2, "外科": 0.1, "眼科": 0.07, "耳鼻喉科": 0.07, "口腔科": 0.08,
              "皮肤科": 0.07, "中医科": 0.11},
    "man": {"内科": 0.38, "外科": 0.15, "眼科": 0.08, "耳鼻喉科": 0.08, "口腔科": 0.1, "皮肤科": 0.08,
            "中医科": 0.13},
    "elderly": {"内科": 0.55, "外科": 0.1, "眼科": 0.12, "中医科": 0.13, "耳鼻喉科": 0.04, "口腔科": 0.04,
                "皮肤科": 0.02},
}  # fmt: skip
_ICD_BASE: dict[str, float] = {
    "I": 0.02, "II": 0.03, "III": 0.01, "IV": 0.07, "V": 0.03, "VI": 0.03, "VII": 0.04, "VIII": 0.03,
    "IX": 0.12, "X": 0.2, "XI": 0.1, "XII": 0.04, "XIII": 0.08, "XIV": 0.05, "XV": 0.02, "XVI": 0.005,
    "XVII": 0.005, "XVIII": 0.06, "XIX": 0.04, "XX": 0.01, "XXI": 0.03, "XXII": 0.005,
}  # fmt: skip
_ICD_BY_DEPT: dict[str, dict[str, float]] = {
    "妇产科": {"XV": 0.5, "XIV": 0.3, "XXI": 0.1, "II": 0.05, "XVIII": 0.05},
    "眼科": {"VII": 0.9, "XIX": 0.05, "XXI": 0.05},
    "耳鼻喉科": {"VIII": 0.5, "X": 0.4, "XVIII": 0.1},
    "口腔科": {"XI": 0.9, "XIX": 0.05, "XXI": 0.05},
    "皮肤科": {"XII": 0.85, "I": 0.1, "XVIII": 0.05},
    "儿科": {"X": 0.5, "I": 0.1, "XI": 0.1, "XVIII": 0.1, "XVI": 0.05, "XVII": 0.05, "XII": 0.05, "IV": 0.05},
    "急诊科": {"XIX": 0.3, "X": 0.2, "IX": 0.15, "XVIII": 0.2, "XI": 0.1, "XX": 0.05},
    "外科": {"XIX": 0.35, "XIII": 0.3, "XI": 0.15, "II": 0.1, "XIV": 0.1},
}
_ICD_INPATIENT = {**_ICD_BASE, "II": 0.15, "IX": 0.2, "X": 0.1, "XI": 0.12, "XV": 0.06, "XIX": 0.08}


def _with_other(shares: Mapping[str, float], other_share: float) -> dict[str, float]:
    total = sum(shares.values())
    return {**shares, geo.OTHER_PROVINCES: total * other_share / (1 - other_share)}


# --------------------------------------------------------------------------- H1


def medical_institutions(b: Builder) -> Columns:
    n = b.n_rows
    rng = b.rng("rows")
    kind = b.pick(
        "type",
        n,
        rng,
        {"综合医院": 0.25, "专科医院": 0.2, "中医医院": 0.08, "妇幼保健院": 0.05, "社区卫生服务中心": 0.42},
    )
    p_public = pd.Series(kind).map({"社区卫生服务中心": 1.0, "妇幼保健院": 1.0, "中医医院": 0.8}).fillna(0.55)
    public = rng.random(n) < p_public.to_numpy()
    ownership_values = {str(v) for v in b.domain("ownership")}
    ownership = np.where(public, "公立", "民营")
    if not set(pd.unique(ownership)) <= ownership_values:  # policy renamed the values: draw from it
        ownership = b.pick("ownership", n, rng)
    group = np.where(public, kind, "民营")
    level = b.pick_by("level", group, rng, {**_LEVELS_PUBLIC, "民营": _LEVELS_PRIVATE})
    district = b.pick("district_code", n, rng, geo.RESIDENT_SHARE)
    org = rng.choice(31**6, size=n, replace=False)
    codes = make_codes(np.where(public, "12", "52"), district.astype("U6"), org, "42").astype(object)
    med = pd.Series(level).map({k: v[0] for k, v in _BEDS.items()}).fillna(100.0).to_numpy()
    sig = pd.Series(level).map({k: v[1] for k, v in _BEDS.items()}).fillna(0.5).to_numpy()
    beds = np.rint(med * np.exp(rng.normal(0, 1, n) * sig))
    lon, lat = geo.locate(rng, district)
    return {
        "inst_uscc": codes,
        "inst_name": _institution_names(rng, kind, district),
        "level": level,
        "type": kind,
        "ownership": ownership,
        "district_code": district,
        "beds": beds,
        "lon": lon,
        "lat": lat,
    }


def _institution_names(
    rng: np.random.Generator, kind: npt.NDArray[np.str_], district: npt.NDArray[np.str_]
) -> npt.NDArray[np.str_]:
    n = len(kind)
    chars = np.array(_NAME_CHARS, dtype=object)
    core = chars[rng.integers(0, len(chars), n)] + chars[rng.integers(0, len(chars), n)]
    area = pd.Series(district).map(geo.NAMES).fillna("申城").to_numpy(dtype=object)
    specialty = np.array(_SPECIALTIES, dtype=object)[rng.integers(0, len(_SPECIALTIES), n)]
    suffix = pd.Series(kind).map(
        {
            "综合医院": "医院",
            "中医医院": "中医医院",
            "妇幼保健院": "妇幼保健院",
            "社区卫生服务中心": "社区卫生服务中心",
        }
    )
    names = "上海市" + area + core + suffix.fillna("医院").to_numpy(dtype=object)
    special = kind == "专科医院"
    names[special] = "上海市" + area[special] + core[special] + specialty[special] + "医院"
    out: Array = names
    return out


# --------------------------------------------------------------------------- H2


def outpatient_visits(b: Builder) -> Columns:
    inst = b.parent_frame("inst_uscc", INSTITUTIONS)
    rng = b.rng("rows")
    bound = b.dataset.max_rows_per_unit

    def draw(r: np.random.Generator, k: int) -> npt.NDArray[np.int64]:
        return r.geometric(1 / 6, k)

    counts = unit_counts(rng, b.n_rows, draw, bound, heavy_share=0.01)
    m = len(counts)
    n = int(counts.sum())
    patients = unique_tokens(rng, m)
    sex = b.pick("sex", m, rng, {"男": 0.49, "女": 0.51})
    age_group = weighted_index(rng, m, np.array([0.15, 0.6, 0.25]))
    age = np.select(
        [age_group == 0, age_group == 1],
        [rng.integers(0, 15, m), rng.integers(15, 65, m)],
        default=np.minimum(65 + rng.exponential(9, m), 100),
    )
    residence = b.pick("residence_district", m, rng, _with_other(geo.RESIDENT_SHARE, 0.1))
    elsewhere = residence == geo.OTHER_PROVINCES
    insurance_group = np.where(elsewhere, 3, age_group)
    insurance = b.pick_by(
        "insurance",
        insurance_group,
        rng,
        {
            0: {"职工医保": 0.0001, "居民医保": 0.85, "自费": 0.1, "商业保险": 0.05},
            1: {"职工医保": 0.72, "居民医保": 0.1, "自费": 0.15, "商业保险": 0.03},
            2: {"职工医保": 0.6, "居民医保": 0.35, "自费": 0.04, "商业保险": 0.01},
            3: {"职工医保": 0.3, "居民医保": 0.05, "自费": 0.6, "商业保险": 0.05},
        },
    )

    r_residence = np.repeat(residence, counts)
    r_age = np.repeat(age, counts)
    r_sex = np.repeat(sex, counts)
    r_insurance = np.repeat(insurance, counts)
    visit_type = b.pick("visit_type", n, rng, {"门诊": 0.88, "急诊": 0.12})
    emergency = visit_type == "急诊"
    dept_group = np.where(
        emergency,
        "emergency",
        np.where(
            r_age < 15, "child", np.where(r_age >= 65, "elderly", np.where(r_sex == "女", "woman", "man"))
        ),
    )
    dept = b.pick_by("dept", dept_group, rng, _DEPT_BY_GROUP)
    icd = b.pick_by("icd10_chapter", dept, rng, _ICD_BY_DEPT, default=_ICD_BASE)
    raw_fee = lognormal(rng, n, 220.0, 0.9) * np.where(emergency, 1.6, 1.0) * np.where(r_age >= 65, 1.3, 1.0)
    ratio = np.select(
        [r_insurance == "职工医保", r_insurance == "居民医保"],
        [rng.uniform(0.6, 0.85, n), rng.uniform(0.4, 0.65, n)],
        default=0.0,
    ).astype(np.float64)
    fee = np.round(np.clip(raw_fee, 0, b.bounds("total_fee_yuan")[1]), 2)
    return {
        "patient_pseudo": np.repeat(patients, counts),
        "sex": r_sex,
        "age": r_age,
        "residence_district": r_residence,
        "visit_date": random_dates(rng, n),
        "inst_uscc": _institutions_for(rng, inst, r_residence),
        "dept": dept,
        "icd10_chapter": icd,
        "visit_type": visit_type,
        "total_fee_yuan": fee,
        "fund_paid_yuan": np.round(fee * ratio, 2),
        "insurance": r_insurance,
    }


def _institutions_for(
    rng: np.random.Generator, inst: pd.DataFrame, residence: npt.NDArray[np.str_]
) -> npt.NDArray[np.str_]:
    """An institution per visit: 65% in the patient's district when it has one, weighted by beds."""
    codes = inst["inst_uscc"].to_numpy(dtype=object)
    weight = inst["beds"].to_numpy().astype(np.float64) + 20.0
    inst_district = inst["district_code"].to_numpy(dtype=object)
    n = len(residence)
    chosen = weighted_index(rng, n, weight)
    local = rng.random(n) < 0.65
    for district in pd.unique(residence):
        pool = np.flatnonzero(inst_district == district)
        rows = np.flatnonzero(local & (residence == district))
        if len(pool) and len(rows):
            chosen[rows] = pool[weighted_index(rng, len(rows), weight[pool])]
    out: Array = codes[chosen]
    return out


# --------------------------------------------------------------------------- H3


def inpatient_settlements(b: Builder) -> Columns:
    rng = b.rng("rows")
    bound = b.dataset.max_rows_per_unit

    def draw(r: np.random.Generator, k: int) -> npt.NDArray[np.int64]:
        return r.geometric(0.6, k)

    counts = unit_counts(rng, b.n_rows, draw, bound, heavy_share=0.005)
    m = len(counts)
    n = int(counts.sum())
    persons = unique_tokens(rng, m)
    bands = b.domain("age_band")
    k = len(bands)
    band_weights = {band: 0.02 + 0.1 * (i / max(k - 1, 1)) ** 1.5 for i, band in enumerate(bands)}
    if k > 1:
        band_weights[bands[0]] *= 2.5  # infants are admitted more than older children
        band_weights[bands[-1]] *= 0.5
    sex = b.pick("sex", m, rng, {"男": 0.5, "女": 0.5})
    age_band = b.pick("age_band", m, rng, band_weights)
    residence = b.pick("residence_district", m, rng, _with_other(geo.RESIDENT_SHARE, 0.15))
    insurance = b.pick("insurance_type", m, rng, {"职工医保": 0.7, "居民医保": 0.3})
    r_insurance = np.repeat(insurance, counts)

    los = np.rint(lognormal(rng, n, 7.0, 0.8))
    level = b.pick("inst_level", n, rng, _LEVEL_SHARE)
    factor = pd.Series(level).map(
        {"三级甲等": 1.6, "三级乙等": 1.3, "二级甲等": 1.0, "二级乙等": 0.85, "一级": 0.6, "未定级": 0.7}
    )
    lo, hi = b.bounds("total_cost_yuan")
    los_clipped = np.clip(los, *b.bounds("los_days"))
    total = 1800 * los_clipped**0.85 * factor.fillna(1.0).to_numpy() * lognormal(rng, n, 1.0, 0.5)
    total = np.round(np.clip(total, lo, hi), 2)
    ratio = np.where(r_insurance == "职工医保", rng.uniform(0.7, 0.9, n), rng.uniform(0.5, 0.72, n))
    fund = np.round(total * ratio, 2)
    return {
        "person_pseudo": np.repeat(persons, counts),
        "sex": np.repeat(sex, counts),
        "age_band": np.repeat(age_band, counts),
        "residence_district": np.repeat(residence, counts),
        "admit_date": random_dates(rng, n),
        "los_days": los_clipped,
        "inst_level": level,
        "icd10_chapter": b.pick("icd10_chapter", n, rng, _ICD_INPATIENT),
        "total_cost_yuan": total,
        "fund_paid_yuan": fund,
        "self_paid_yuan": np.round(total - fund, 2),
        "insurance_type": r_insurance,
    }

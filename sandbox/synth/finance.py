"""普惠金融 generators (REQUIREMENTS §6.2): F1 registry, F2 tax, F3 social insurance, F4 penalties, F5 loans.

The registry is the master list: every ``uscc`` in F2-F4 is a registry code, and every
``uscc_hmac`` in F5 is the project-keyed HMAC-SHA256 of a registry code of a small or micro
enterprise (:func:`uscc_hmac`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
import pandas as pd

from sandbox.synth import geo
from sandbox.synth.base import (
    N_DAYS,
    N_MONTHS,
    Builder,
    Columns,
    days_to_dates,
    lognormal,
    pick_units,
    random_dates,
    unique_tokens,
    unit_counts,
    within_unit_index,
)
from sandbox.synth.uscc import make_codes

REGISTRY = "enterprise_registry"
REGISTRY_START = np.datetime64("1992-01-01", "D")

_NAME_CHARS = list("华锦盛瑞恒嘉宏信达鑫泰丰润卓远联创智博源辰晟弘昊峰海通和亿佳融汇启明德诚祥荣兴旺隆凯")
_INDUSTRY_WORDS: dict[str, list[str]] = {
    "A": ["农业发展", "果蔬种植", "花卉园艺"],
    "B": ["矿产"],
    "C": ["机械制造", "电子科技", "服饰", "食品", "新材料"],
    "D": ["能源", "燃气"],
    "E": ["建筑工程", "装饰工程", "建设"],
    "F": ["贸易", "商贸", "进出口", "供应链"],
    "G": ["物流", "运输", "货运代理"],
    "H": ["餐饮管理", "酒店管理"],
    "I": ["信息技术", "网络科技", "软件"],
    "J": ["投资管理", "资产管理"],
    "K": ["置业", "房地产开发", "物业管理"],
    "L": ["企业管理咨询", "商务咨询", "广告"],
    "M": ["科技", "检测技术", "设计"],
    "N": ["环境工程", "园林绿化"],
    "O": ["家政服务", "美容美发", "汽车维修"],
    "P": ["教育科技", "培训"],
    "Q": ["健康管理", "医疗科技"],
    "R": ["文化传播", "体育发展", "影视"],
    "S": ["社会服务"],
    "T": ["国际事务咨询"],
}
_SHOP_WORDS = ["便利店", "小吃店", "五金店", "服装店", "理发店", "水果店", "百货商店", "维修部"]
_COOP_WORDS = ["果蔬专业合作社", "水稻专业合作社", "花卉专业合作社", "农机专业合作社"]
_SUFFIX = {
    "有限责任公司": "有限公司",
    "股份有限公司": "股份有限公司",
    "个人独资企业": "商行",
    "合伙企业": "合伙企业（有限合伙）",
    "外商投资企业": "有限公司",
}


def project_hmac_key(seed: int) -> bytes:
    """The synthetic joint-lab project key for ``sme_loans.uscc_hmac`` under a run seed.

    A deployment's bank and lab hold a real secret instead; the synthetic key is derived from
    the seed so that join tests can recompute it.
    """
    return hashlib.sha256(f"sandbox synthetic joint-lab project key|{seed}".encode()).digest()


def uscc_hmac(codes: Iterable[str], key: bytes) -> npt.NDArray[np.object_]:
    """HMAC-SHA256 (hex) of each code under the project key: the join key of F5 (SR-17)."""
    return np.array([hmac.digest(key, c.encode("ascii"), "sha256").hex() for c in codes], dtype=object)


# --------------------------------------------------------------------------- F1


def enterprise_registry(b: Builder) -> Columns:
    n = b.n_rows
    rng = b.rng("rows")
    district = b.pick("district_code", n, rng, geo.ENTERPRISE_SHARE)
    ent_type = b.pick(
        "ent_type",
        n,
        rng,
        {
            "有限责任公司": 0.55,
            "股份有限公司": 0.02,
            "个人独资企业": 0.04,
            "合伙企业": 0.03,
            "外商投资企业": 0.03,
            "个体工商户": 0.32,
            "农民专业合作社": 0.01,
        },
    )
    prefix = np.where(ent_type == "个体工商户", "92", np.where(ent_type == "农民专业合作社", "93", "91"))
    uscc = make_codes(prefix, district.astype("U6"), rng.choice(31**6, size=n, replace=False)).astype(object)
    industry = b.pick(
        "industry_section",
        n,
        rng,
        {
            "A": 0.01,
            "B": 0.0005,
            "C": 0.08,
            "D": 0.003,
            "E": 0.06,
            "F": 0.35,
            "G": 0.04,
            "H": 0.06,
            "I": 0.07,
            "J": 0.02,
            "K": 0.03,
            "L": 0.12,
            "M": 0.08,
            "N": 0.01,
            "O": 0.03,
            "P": 0.01,
            "Q": 0.005,
            "R": 0.02,
            "S": 0.001,
            "T": 0.0001,
        },
    )
    medians = {
        "有限责任公司": 200.0,
        "股份有限公司": 3000.0,
        "个人独资企业": 50.0,
        "合伙企业": 500.0,
        "外商投资企业": 800.0,
        "个体工商户": 20.0,
        "农民专业合作社": 60.0,
    }
    median = pd.Series(ent_type).map(medians).fillna(100.0).to_numpy(dtype=np.float64)
    capital = lognormal(rng, n, 1.0, 1.3) * median
    span = int((np.datetime64("2019-09-30") - REGISTRY_START).astype(int))
    est_offset = (rng.beta(2.2, 1.0, n) * span).astype(np.int64)
    est_date = days_to_dates(est_offset, REGISTRY_START)
    age_group = np.where(est_offset < span * 0.45, "old", "new")
    status = b.pick_by(
        "status",
        age_group,
        rng,
        {
            "old": {"存续": 0.45, "在业": 0.15, "吊销": 0.15, "注销": 0.22, "迁出": 0.03},
            "new": {"存续": 0.65, "在业": 0.2, "吊销": 0.03, "注销": 0.1, "迁出": 0.02},
        },
    )
    p_small = np.where(capital < 500, 0.95, np.where(capital < 5000, 0.7, 0.15))
    is_small = (rng.random(n) < p_small) | (ent_type == "个体工商户")
    return {
        "uscc": uscc,
        "ent_name": _enterprise_names(rng, ent_type, industry, district),
        "ent_type": ent_type,
        "industry_section": industry,
        "district_code": district,
        "reg_capital_wan": capital,
        "est_date": est_date,
        "status": status,
        "is_small_micro": is_small,
    }


def _enterprise_names(
    rng: np.random.Generator,
    ent_type: npt.NDArray[np.str_],
    industry: npt.NDArray[np.str_],
    district: npt.NDArray[np.str_],
) -> npt.NDArray[np.object_]:
    n = len(ent_type)
    chars = np.array(_NAME_CHARS, dtype=object)
    core = chars[rng.integers(0, len(chars), n)] + chars[rng.integers(0, len(chars), n)]
    pick = rng.random(n)
    words = np.empty(n, dtype=object)
    for section in pd.unique(industry):
        mask = industry == section
        options = np.array(_INDUSTRY_WORDS.get(str(section), ["实业"]), dtype=object)
        words[mask] = options[(pick[mask] * len(options)).astype(np.int64)]
    suffix = pd.Series(ent_type).map(_SUFFIX).fillna("有限公司").to_numpy(dtype=object)
    names = "上海" + core + words + suffix
    shop = ent_type == "个体工商户"
    coop = ent_type == "农民专业合作社"
    area = pd.Series(district).map(geo.NAMES).fillna("申城").to_numpy(dtype=object)
    shops = np.array(_SHOP_WORDS, dtype=object)
    coops = np.array(_COOP_WORDS, dtype=object)
    names[shop] = area[shop] + core[shop] + shops[(pick[shop] * len(shops)).astype(np.int64)]
    names[coop] = "上海" + area[coop] + core[coop] + coops[(pick[coop] * len(coops)).astype(np.int64)]
    out: npt.NDArray[np.object_] = names
    return out


# --------------------------------------------------------------------------- F2


def enterprise_tax(b: Builder) -> Columns:
    reg = b.parent_frame("uscc", REGISTRY)
    rng = b.rng("rows")
    years = np.array(b.domain("tax_year"), dtype=np.int64)
    ny = len(years)
    bound = b.dataset.max_rows_per_unit or ny

    def draw(r: np.random.Generator, k: int) -> npt.NDArray[np.int64]:
        out: npt.NDArray[np.int64] = np.minimum(r.choice([1, 2, 3], size=k, p=[0.1, 0.15, 0.75]), ny)
        return out

    counts = unit_counts(rng, b.n_rows, draw, bound, heavy_share=0.02)  # heavy: amended filings
    units = pick_units(rng, len(reg), len(counts))
    row_unit = np.repeat(units, counts)
    j = within_unit_index(counts)
    start = np.repeat(rng.integers(0, ny - np.minimum(counts, ny) + 1), counts)
    year_idx = np.where(j < ny, start + j, rng.integers(0, ny, len(j)))
    year = years[np.minimum(year_idx, ny - 1)]
    n = len(row_unit)

    capital = reg["reg_capital_wan"].to_numpy()[row_unit]
    growth = 1.06 ** (year - years.min())
    revenue = lognormal(rng, n, 1.0, 1.1) * 4.0 * capital**0.8 * growth
    grade = b.pick("credit_grade", n, rng, {"A": 0.15, "B": 0.5, "M": 0.2, "C": 0.1, "D": 0.05})
    vat = revenue * rng.uniform(0.01, 0.06, n)
    cit = revenue * np.maximum(rng.normal(0.06, 0.08, n), 0.0) * 0.25
    risk = (
        pd.Series(grade).map({"A": 0.002, "B": 0.01, "M": 0.02, "C": 0.1, "D": 0.35}).fillna(0.05).to_numpy()
    )
    arrears = rng.random(n) < risk
    missed = np.where(rng.random(n) < risk * 3 + 0.03, rng.integers(1, 13, n), 0)
    return {
        "uscc": reg["uscc"].to_numpy()[row_unit],
        "tax_year": year,
        "credit_grade": grade,
        "vat_paid_wan": vat,
        "cit_paid_wan": cit,
        "taxable_revenue_wan": revenue,
        "filing_months": 12 - missed,
        "arrears_flag": arrears,
    }


# --------------------------------------------------------------------------- F3


def month_labels() -> list[str]:
    return [f"{2017 + i // 12}-{i % 12 + 1:02d}" for i in range(N_MONTHS)]


def social_insurance(b: Builder) -> Columns:
    reg = b.parent_frame("uscc", REGISTRY)
    rng = b.rng("rows")
    bound = b.dataset.max_rows_per_unit or N_MONTHS

    def draw(r: np.random.Generator, k: int) -> npt.NDArray[np.int64]:
        full = r.random(k) < 0.7
        return np.where(full, N_MONTHS, r.integers(1, N_MONTHS + 1, k))

    counts = unit_counts(rng, b.n_rows, draw, bound, heavy_share=0.02)  # heavy: back-payments (补缴)
    employers = np.flatnonzero(reg["ent_type"].to_numpy() != "个体工商户")
    pool = employers if len(employers) >= len(counts) else np.arange(len(reg))
    units = pool[pick_units(rng, len(pool), len(counts))]
    m = len(counts)
    row_unit = np.repeat(units, counts)
    j = within_unit_index(counts)
    start = np.repeat(rng.integers(0, N_MONTHS - np.minimum(counts, N_MONTHS) + 1), counts)
    month_idx = np.where(j < N_MONTHS, start + j, rng.integers(0, N_MONTHS, len(j)))
    month_idx = np.minimum(month_idx, N_MONTHS - 1)
    n = len(row_unit)

    capital = reg["reg_capital_wan"].to_numpy()[units]
    base_head = lognormal(rng, m, 6.0, 1.2) * np.clip(capital / 100.0, 0.05, 1e4) ** 0.3
    per_capita = lognormal(rng, m, 0.75, 0.35)  # monthly contribution base, 10k yuan
    coverage = rng.beta(5, 1.5, m)
    risk = rng.beta(0.3, 10, m)
    growth = 1 + 0.004 * month_idx
    head = np.rint(np.repeat(base_head, counts) * growth * rng.normal(1, 0.05, n)).clip(0)
    base_total = head * np.repeat(per_capita, counts)
    hf_head = np.rint(head * np.repeat(coverage, counts))
    hf_amount = hf_head * np.repeat(per_capita, counts) * 0.14
    labels = np.array(month_labels())[month_idx]
    if b.column("month").type.value == "date":
        month_values: npt.NDArray[np.generic] = np.array(
            [f"{x}-01" for x in month_labels()], dtype="datetime64[D]"
        )[month_idx]
    else:
        month_values = labels
    return {
        "uscc": reg["uscc"].to_numpy()[row_unit],
        "month": month_values,
        "si_headcount": head,
        "si_base_total_wan": base_total,
        "si_arrears_flag": rng.random(n) < np.repeat(risk, counts),
        "hf_headcount": hf_head,
        "hf_amount_wan": hf_amount,
    }


# --------------------------------------------------------------------------- F4

_DEPT_BY_EVENT: dict[str, dict[str, float]] = {
    "环保处罚": {"上海市生态环境局": 1.0},
    "市场监管处罚": {"上海市市场监督管理局": 1.0},
    "税务处罚": {"国家税务总局上海市税务局": 1.0},
    "民事判决(被告)": {"上海市各级人民法院": 0.85, "上海市高级人民法院": 0.15},
    "被执行人": {"上海市各级人民法院": 0.9, "上海市高级人民法院": 0.1},
    "失信被执行人": {"上海市各级人民法院": 0.9, "上海市高级人民法院": 0.1},
}


def penalties(b: Builder) -> Columns:
    reg = b.parent_frame("uscc", REGISTRY)
    rng = b.rng("rows")
    bound = b.dataset.max_rows_per_unit

    def draw(r: np.random.Generator, k: int) -> npt.NDArray[np.int64]:
        return r.geometric(0.55, k)

    counts = unit_counts(rng, b.n_rows, draw, bound, heavy_share=0.003)  # heavy: repeat defendants
    units = pick_units(rng, len(reg), len(counts))
    row_unit = np.repeat(units, counts)
    n = len(row_unit)
    event = b.pick(
        "event_type",
        n,
        rng,
        {
            "环保处罚": 0.1,
            "市场监管处罚": 0.3,
            "税务处罚": 0.15,
            "民事判决(被告)": 0.2,
            "被执行人": 0.17,
            "失信被执行人": 0.08,
        },
    )
    dept = _pick_dept(b, event, rng)
    judicial = np.isin(event, ["民事判决(被告)", "被执行人", "失信被执行人"])
    amount = np.where(judicial, lognormal(rng, n, 30.0, 1.5), lognormal(rng, n, 1.5, 1.3))
    day = rng.integers(0, N_DAYS, n)
    closed = rng.random(n) < 0.95 - 0.6 * day / N_DAYS
    return {
        "uscc": reg["uscc"].to_numpy()[row_unit],
        "event_type": event,
        "event_date": days_to_dates(day),
        "amount_wan": amount,
        "source_dept": dept,
        "closed": closed,
    }


def _pick_dept(b: Builder, event: npt.NDArray[np.str_], rng: np.random.Generator) -> npt.NDArray[np.str_]:
    domain = {str(v) for v in b.domain("source_dept")}
    weights = {
        ev: {d: w for d, w in depts.items() if d in domain} or dict.fromkeys(domain, 1.0)
        for ev, depts in _DEPT_BY_EVENT.items()
    }
    return b.pick_by("source_dept", event, rng, weights)


# --------------------------------------------------------------------------- F5


def sme_loans(b: Builder) -> Columns:
    reg = b.ctx.frame(REGISTRY)
    rng = b.rng("rows")
    bound = b.dataset.max_rows_per_unit

    def draw(r: np.random.Generator, k: int) -> npt.NDArray[np.int64]:
        return r.choice([1, 2, 3, 4, 5], size=k, p=[0.65, 0.2, 0.1, 0.03, 0.02])

    counts = unit_counts(rng, b.n_rows, draw, bound, heavy_share=0.01)
    small = np.flatnonzero(reg["is_small_micro"].to_numpy())
    pool = small if len(small) >= len(counts) else np.arange(len(reg))
    units = pool[pick_units(rng, len(pool), len(counts))]
    keys = uscc_hmac(reg["uscc"].to_numpy()[units], project_hmac_key(b.seed))
    n = int(counts.sum())
    product = b.pick("product", n, rng, {"信用贷": 0.45, "抵押贷": 0.25, "税务信用贷": 0.3})
    secured = product == "抵押贷"
    amount = lognormal(rng, n, 80.0, 0.9) * np.where(secured, 2.5, 1.0)
    base_rate = (
        pd.Series(product).map({"信用贷": 5.6, "抵押贷": 4.6, "税务信用贷": 5.0}).fillna(5.2).to_numpy()
    )
    rate = base_rate + rng.normal(0, 0.7, n)
    p_default = 1 / (1 + np.exp(-(-3.6 + 0.7 * (rate - 5.0))))
    default = rng.random(n) < p_default
    return {
        "loan_pseudo": unique_tokens(rng, n),
        "uscc_hmac": np.repeat(keys, counts),
        "bank_code": b.pick(
            "bank_code", n, rng, {"BANK_A": 0.35, "BANK_B": 0.3, "BANK_C": 0.2, "BANK_D": 0.15}
        ),
        "product": product,
        "issue_date": random_dates(rng, n),
        "amount_wan": amount,
        "term_months": b.pick("term_months", n, rng, {6: 0.1, 12: 0.5, 24: 0.25, 36: 0.15}),
        "rate_pct": rate,
        "dpd90_flag": default | (rng.random(n) < 0.02),
        "default_flag": default,
    }

"""A toy dataset with every edge the planner must get right, its seeded rows, and an
independent Python reference of the exact cells (shared by the engine and derived-table tests)."""

from __future__ import annotations

import math
import random
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from sandbox.catalog.warehouse import dataset_table
from sandbox.dp import ExactCells
from sandbox.dp.compiler import CompiledQuery
from sandbox.dp.spec import And, Between, Compare, CompareOp, InList, IsNull, Not, Or, Predicate
from sandbox.policy.models import Dataset

#: The policy fields every toy dataset of the DP tests shares (each test file adds its columns).
TOY_HEADER: dict[str, Any] = {
    "id": "toy",
    "name": {"zh": "玩具", "en": "Toy"},
    "provider": ["tax_bureau"],
    "focus_area": "transport",
    "tier": "conditional",
    "source_tier": "T2",
    "privacy_unit": "pid",
    "max_rows_per_unit": 4,
}

TOY: dict[str, Any] = {
    **TOY_HEADER,
    "columns": [
        {"name": "pid", "type": "string", "role": "identifier"},
        {"name": "region", "type": "category", "role": "plain", "domain": ["n", "s", "e", "w"]},
        {"name": "year", "type": "integer", "role": "plain", "domain": [2017, 2018, 2019],
         "bounds": {"lower": 2017, "upper": 2019}, "precision": 0},
        {"name": "flag", "type": "boolean", "role": "plain"},
        {"name": "amount", "type": "float", "role": "sensitive", "bounds": {"lower": "-50", "upper": "150"},
         "precision": 1, "nullable": True, "bins": ["-50", "0", "50", "100", "150"]},
        {"name": "visits", "type": "integer", "role": "sensitive", "bounds": {"lower": 0, "upper": 20},
         "precision": 0, "bins": [0, 5, 10, 20]},
        {"name": "day", "type": "date", "role": "plain"},
        {"name": "ts", "type": "timestamp", "role": "plain"},
        # a nullable key whose domain holds the text "None" (a NULL key must not land there)
        {"name": "zone", "type": "category", "role": "plain", "domain": ["x", "None"], "nullable": True},
        # bounds that do not straddle 0: the planner drops the sign branch of the rounding
        {"name": "fare", "type": "float", "role": "sensitive", "bounds": {"lower": "14", "upper": "600"},
         "precision": 2},
        {"name": "loss", "type": "float", "role": "sensitive", "bounds": {"lower": "-100", "upper": "-0.5"},
         "precision": 1, "nullable": True},
    ],
}  # fmt: skip


def toy_rows(seed: int = 7, units: int = 300) -> list[dict[str, Any]]:
    """Seeded rows with every edge: over-contributing units, out-of-bound values, ties at the
    rounding step, NULLs, keys outside the domain."""
    rng = random.Random(seed)
    ties = [0.25, -0.25, 2.25, 12.35, 0.05, -49.95, 149.95]
    rows: list[dict[str, Any]] = []
    for u in range(units):
        n = rng.randint(1, 8)
        ranks = list(range(1, n + 1))
        rng.shuffle(ranks)
        for r in ranks:
            amount: float | None
            pick = rng.random()
            if pick < 0.1:
                amount = None
            elif pick < 0.25:
                amount = rng.choice(ties)
            elif pick < 0.3:
                amount = rng.choice([-50.0, 150.0, -1000.0, 1e6, 2.5, 0.0])
            else:
                amount = round(rng.uniform(-80, 200), rng.choice([0, 1, 2, 3]))
            extreme = [math.inf, -math.inf, 1e300, -1e300, -0.0, 0.0]
            fare = (
                rng.choice([14.0, 600.0, 13.995, 600.005, 14.005, 599.995, 0.125, *extreme])
                if rng.random() < 0.3
                else round(rng.uniform(5, 700), rng.choice([1, 2, 3, 4]))
            )
            loss: float | None = (
                rng.choice([None, -0.5, -0.55, -0.45, -100.0, -100.05, -2.25, *extreme])
                if rng.random() < 0.3
                else round(rng.uniform(-120, 5), rng.choice([1, 2, 3]))
            )
            rows.append(
                {
                    "pid": f"P{u:05d}",
                    "zone": rng.choice(["x", "None", None, "y"]),
                    "fare": fare,
                    "loss": loss,
                    "region": rng.choice(["n", "s", "e", "w", "w", "zz"]),
                    "year": rng.choice([2016, 2017, 2018, 2019]),
                    "flag": rng.random() < 0.4,
                    "amount": amount,
                    "visits": rng.randint(-5, 30),
                    "day": date(2018, 1, 1) + timedelta(days=rng.randint(0, 364)),
                    "ts": datetime(2018, 1, 1) + timedelta(minutes=rng.randint(0, 525_600)),
                    "_rank": r,
                }
            )
    return rows


def load(engine: sa.Engine, dataset: Dataset, rows: list[dict[str, Any]]) -> None:
    metadata = sa.MetaData()
    table = dataset_table(dataset, metadata)
    with engine.begin() as conn:
        metadata.drop_all(conn)
        metadata.create_all(conn)
        conn.execute(table.insert(), rows)


def _truth(pred: Predicate | None, row: dict[str, Any]) -> bool | None:
    """SQL three-valued logic."""
    if pred is None:
        return True
    if isinstance(pred, And):
        values = [_truth(p, row) for p in pred.items]
        return False if False in values else (None if None in values else True)
    if isinstance(pred, Or):
        values = [_truth(p, row) for p in pred.items]
        return True if True in values else (None if None in values else False)
    if isinstance(pred, Not):
        value = _truth(pred.item, row)
        return None if value is None else not value
    x = row[pred.column]
    if isinstance(pred, IsNull):
        return (x is not None) if pred.negated else (x is None)
    if x is None:
        return None
    if isinstance(pred, InList):
        return (x not in pred.values) if pred.negated else (x in pred.values)
    if isinstance(pred, Between):
        inside = pred.low <= x <= pred.high
        return not inside if pred.negated else inside
    assert isinstance(pred, Compare)
    ops = {
        CompareOp.EQ: lambda a, b: a == b,
        CompareOp.NE: lambda a, b: a != b,
        CompareOp.LT: lambda a, b: a < b,
        CompareOp.LE: lambda a, b: a <= b,
        CompareOp.GT: lambda a, b: a > b,
        CompareOp.GE: lambda a, b: a >= b,
    }
    return bool(ops[pred.op](x, pred.value))


def _fixed(value: float | int | None, cq: CompiledQuery, column: str) -> int | None:
    if value is None:
        return None
    fp = cq.plan.fixed[column]
    if fp.integer:
        return min(max(int(value), fp.lower), fp.upper) * fp.scale
    lo, hi = fp.lower / fp.scale, fp.upper / fp.scale
    y = min(max(float(value), lo), hi) * float(fp.scale)
    return math.floor(y + 0.5) if y >= 0 else -math.floor(0.5 - y)


def reference_cells(cq: CompiledQuery, rows: list[dict[str, Any]]) -> ExactCells:
    plan, dataset = cq.plan, cq.dataset
    sizes = [len(k.values) for k in plan.keys]
    members: list[list[dict[str, Any]]] = [[] for _ in range(plan.n_cells)]
    for row in rows:
        if row["_rank"] > plan.max_rows_per_unit or _truth(plan.spec.where, row) is not True:
            continue
        cell, ok = 0, True
        for key, size in zip(plan.keys, sizes, strict=True):
            x = row[key.column]
            if key.binned:
                if x is None:
                    ok = False
                    break
                edges = [float(e) for e in dataset.column(key.column).bins or []]
                pos = next((i for i, e in enumerate(edges[1:-1]) if x < e), len(edges) - 2)
            elif x in key.values:
                pos = key.values.index(x)
            else:
                ok = False
                break
            cell = cell * size + pos
        if ok:
            members[cell].append(row)
    vectors: dict[str, tuple[int, ...]] = {}
    below: dict[str, tuple[tuple[int, ...], ...]] = {}
    above: dict[str, tuple[tuple[int, ...], ...]] = {}
    for prim in plan.primitives:
        col = prim.column
        if prim.kind == "rows":
            vectors[prim.id] = tuple(len(m) for m in members)
        elif prim.kind == "distinct":
            vectors[prim.id] = tuple(len({r["pid"] for r in m}) for m in members)
        elif prim.kind == "quantile":
            assert col is not None
            cands = plan.candidates[col]
            fixed = [[v for r in m if (v := _fixed(r[col], cq, col)) is not None] for m in members]
            below[col] = tuple(tuple(sum(v < c for v in f) for c in cands) for f in fixed)
            above[col] = tuple(tuple(sum(v > c for v in f) for c in cands) for f in fixed)
        else:
            assert col is not None
            fixed = [[v for r in m if (v := _fixed(r[col], cq, col)) is not None] for m in members]
            if prim.kind == "nonnull":
                vectors[prim.id] = tuple(len(f) for f in fixed)
            elif prim.kind == "sum":
                vectors[prim.id] = tuple(sum(f) for f in fixed)
            else:
                centre = plan.fixed[col].centre
                vectors[prim.id] = tuple(sum(f) - centre * len(f) for f in fixed)
    return ExactCells(n_cells=plan.n_cells, vectors=vectors, below=below, above=above)

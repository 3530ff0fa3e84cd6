"""Cost of the DP planner's push-down statement, variant by variant, on DuckDB and PostgreSQL.

The question of ``bench/dp_queries.py`` (``taxi_trips``: rows, and the mean fare, per pick-up
district; unit ``vehicle_pseudo``, 60 rows per unit; ``fare_yuan`` in [14, 600] at 2 decimals)
as several statements, timed side by side on the same data:

* ``exact``: the plain ``GROUP BY`` (``COUNT(*)``, ``AVG``) — the target's yardstick;
* ``bounded``: only ``_rank <= k`` and a double ``SUM`` — what any bounded query pays;
* ``previous``: the planner before this change (clamp ``CASE`` written 3 times, the sign
  ``CASE`` of the rounding, ``IN (<16 districts>)``, ``COUNT(v)`` next to ``COUNT(*)``), then
  one change at a time, then the alternatives tried, and ``planner`` (the statement the engine
  builds now, ``sandbox.dp.compile_query``).

Every DP variant must give the same exact cells (rows and fixed-point sum per district): the
script checks it before timing. DuckDB: wall and process CPU (both threads) of the query, in
this process. PostgreSQL: wall with the server's defaults (parallel workers, JIT), and the
backend's CPU with ``max_parallel_workers_per_gather = 0`` (one process does all the work, so
other load on the machine hardly moves it). Rounds are interleaved; best (and median) of
``--repeat``.

Usage: python bench/planner_sql.py [--duckdb-rows 10000000 | --duckdb PATH]
                                   [--pg-rows 2000000 | --pg-url URL | --no-pg] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import sqlalchemy as sa  # noqa: E402

from sandbox.catalog.warehouse import RANK_COLUMN, dataset_table, make_engine  # noqa: E402
from sandbox.dp import compile_query, parse_sql  # noqa: E402
from sandbox.dp.schema import fixed_point  # noqa: E402
from sandbox.policy.loader import load_policies  # noqa: E402

DATASET, KEY, VALUE = "taxi_trips", "pickup_district", "fare_yuan"
DP_SQL = f"SELECT {KEY}, COUNT(*) AS trips, AVG({VALUE}) AS mean_fare FROM {DATASET} GROUP BY {KEY}"

Cells = dict[str, tuple[int, int]]  # district -> (rows, fixed-point sum)


# ----------------------------------------------------------------------------- variants
def variants() -> dict[str, tuple[str, sa.Select[Any], Callable[[Any], Cells] | None]]:
    """name -> (what it shows, statement, how to read its cells; None: not a DP variant)."""
    catalog = load_policies()
    dataset = catalog.dataset(DATASET)
    t = dataset_table(dataset, sa.MetaData())
    k_col, x, rank = t.c[KEY], t.c[VALUE], t.c[RANK_COLUMN]
    fp = fixed_point(dataset, dataset.column(VALUE), "SELECT")
    k = sa.literal(dataset.max_rows_per_unit, sa.Integer)
    lo_f, hi_f = sa.literal(fp.lower / fp.scale, sa.Double), sa.literal(fp.upper / fp.scale, sa.Double)
    lo_i, hi_i = sa.literal(fp.lower, sa.BigInteger), sa.literal(fp.upper, sa.BigInteger)
    scale = sa.literal(float(fp.scale), sa.Double)
    half = sa.literal(0.5, sa.Double)
    zero = sa.literal(0, sa.Integer)
    domain = list(dataset.column(KEY).domain or [])
    bounded_rows = rank <= k

    def floor_half(y: Any) -> Any:
        return sa.func.floor(y + half)

    def round_signed(y: Any) -> Any:
        return sa.case((y < zero, -sa.func.floor(half - y)), else_=sa.func.floor(y + half))

    clamp_case = sa.case((x < lo_f, lo_f), (x > hi_f, hi_f), else_=x)
    previous_v = sa.cast(round_signed(clamp_case * scale), sa.BigInteger)
    least_greatest_v = sa.cast(
        floor_half(sa.func.least(sa.func.greatest(x, lo_f), hi_f) * scale), sa.BigInteger
    )
    int_then_clamp_v = sa.func.least(
        sa.func.greatest(sa.cast(floor_half(x * scale), sa.BigInteger), lo_i), hi_i
    )

    def raw_case(int_type: Any, signed: bool = False) -> Any:
        rounded = round_signed(x * scale) if signed else floor_half(x * scale)
        return sa.case(
            (x < lo_f, sa.literal(fp.lower, int_type)),
            (x > hi_f, sa.literal(fp.upper, int_type)),
            else_=sa.cast(rounded, int_type),
        )

    def dp_variant(value: Any, *, in_domain: bool, count: str) -> sa.Select[Any]:
        """count: 'v' (COUNT of the clamped value), 'x' (of the raw column) or '' (none)."""
        conds = [bounded_rows] + ([k_col.in_(domain)] if in_domain else [])
        cols = [k_col.label("k0"), value.label("v0"), x.label("x0")]
        inner = sa.select(*cols).where(sa.and_(*conds)).subquery("bounded")
        aggs = [sa.func.count().label("n_rows"), sa.func.sum(inner.c.v0).label("s0")]
        if count:
            aggs.append(sa.func.count(inner.c.v0 if count == "v" else inner.c.x0).label("n0"))
        return sa.select(inner.c.k0, *aggs).group_by(inner.c.k0)

    def plain(row: Any) -> tuple[str, tuple[int, int]]:
        return str(row[0]), (int(row[1]), int(row[2]))

    def read_plain(rows: Any) -> Cells:
        return dict(plain(r) for r in rows if r[0] in domain)

    def read_decomposed(rows: Any) -> Cells:
        return {
            str(r[0]): (int(r[1]), int(r[2] or 0) + fp.lower * int(r[3]) + fp.upper * int(r[4]))
            for r in rows
            if r[0] in domain
        }

    inside = sa.and_(x >= lo_f, x <= hi_f)
    decomposed = (
        sa.select(
            k_col,
            sa.func.count(),
            sa.func.sum(sa.cast(floor_half(x * scale), sa.BigInteger)).filter(inside),
            sa.func.count().filter(x < lo_f),
            sa.func.count().filter(x > hi_f),
        )
        .where(bounded_rows)
        .group_by(k_col)
    )
    compiled = compile_query(parse_sql(DP_SQL, catalog), catalog, Decimal("1"))

    def read_planner(rows: Any) -> Cells:
        cells = compiled.plan.exact_cells(rows)
        sums = cells.vectors[f"csum:{VALUE}"]
        counts = cells.vectors["rows"]
        return {
            str(key[0]): (n, s + fp.centre * n)  # back from the centred sum (non-NULL column)
            for key, n, s in zip(compiled.plan.cells, counts, sums, strict=True)
        }

    return {
        "exact": (
            "plain GROUP BY: COUNT(*), AVG(x)",
            sa.select(k_col, sa.func.count(), sa.func.avg(x)).group_by(k_col),
            None,
        ),
        "bounded": (
            "_rank <= k, COUNT(*), SUM(x) in double",
            sa.select(k_col, sa.func.count(), sa.func.sum(x)).where(bounded_rows).group_by(k_col),
            None,
        ),
        "previous": (
            "before: CASE clamp x3, sign CASE, IN (domain), COUNT(v)",
            dp_variant(previous_v, in_domain=True, count="v"),
            read_plain,
        ),
        "previous -IN": (
            "previous without IN (domain)",
            dp_variant(previous_v, in_domain=False, count="v"),
            read_plain,
        ),
        "previous -IN, COUNT(x)": (
            "... and COUNT(raw x) for COUNT(v)",
            dp_variant(previous_v, in_domain=False, count="x"),
            read_plain,
        ),
        "least/greatest once": (
            "FLOOR(LEAST(GREATEST(x,L),U)*s+.5), no sign CASE",
            dp_variant(least_greatest_v, in_domain=False, count="x"),
            read_plain,
        ),
        "round, then clamp ints": (
            "LEAST(GREATEST(CAST(FLOOR(x*s+.5)),L),U) (overflows!)",
            dp_variant(int_then_clamp_v, in_domain=False, count="x"),
            read_plain,
        ),
        "decomposition": (
            "SUM(r) FILTER(in) + L*COUNT(below) + U*COUNT(above)",
            decomposed,
            read_decomposed,
        ),
        "CASE on x, sign CASE": (
            "CASE x<L THEN L, x>U THEN U ELSE round(x*s), signed",
            dp_variant(raw_case(sa.BigInteger, signed=True), in_domain=False, count="x"),
            read_plain,
        ),
        "CASE on x": (
            "... without the sign CASE (L >= 0)",
            dp_variant(raw_case(sa.BigInteger), in_domain=False, count="x"),
            read_plain,
        ),
        "CASE on x, +IN": (
            "... with IN (domain) back",
            dp_variant(raw_case(sa.BigInteger), in_domain=True, count="x"),
            read_plain,
        ),
        "CASE on x, COUNT(v)": (
            "... with COUNT(v) for COUNT(x)",
            dp_variant(raw_case(sa.BigInteger), in_domain=False, count="v"),
            read_plain,
        ),
        "CASE on x, no count": (
            "... no COUNT(x) (COUNT(*) for NOT NULL)",
            dp_variant(raw_case(sa.BigInteger), in_domain=False, count=""),
            read_plain,
        ),
        "CASE on x, INTEGER": (
            "... values as INTEGER, not BIGINT",
            dp_variant(raw_case(sa.Integer), in_domain=False, count="x"),
            read_plain,
        ),
        "planner": ("sandbox.dp.compile_query now", compiled.statement, read_planner),
    }


# ----------------------------------------------------------------------------- timing
def _backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(url: str, names: list[str], repeat: int, postgres: bool) -> dict[str, dict[str, float]]:
    table = variants()
    engine = make_engine(url, read_only=True) if url.startswith("duckdb") else make_engine(url)
    out: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": []} for n in names}
    reference: Cells | None = None
    with engine.connect() as conn:
        for name in names:  # warm-up, and every DP variant must give the same cells
            _, stmt, read = table[name]
            rows = conn.execute(stmt).all()
            if read is not None:
                cells = read(rows)
                if reference is None:
                    reference = cells
                elif cells != reference:
                    raise SystemExit(f"variant {name!r} gives other cells than the first DP variant")
        serial: sa.Connection | None = None
        pid = 0
        if postgres:
            serial = engine.connect()
            serial.execute(sa.text("SET max_parallel_workers_per_gather = 0"))
            pid = int(serial.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
        try:
            for _ in range(repeat):
                for name in names:
                    stmt = table[name][1]
                    t0, c0 = time.perf_counter(), time.process_time()
                    conn.execute(stmt).all()
                    out[name]["wall"].append(time.perf_counter() - t0)
                    if serial is not None:
                        b0 = _backend_cpu(pid)
                        serial.execute(stmt).all()
                        out[name]["cpu"].append(_backend_cpu(pid) - b0)
                    else:
                        out[name]["cpu"].append(time.process_time() - c0)
        finally:
            if serial is not None:
                serial.close()
    engine.dispose()
    return {
        n: {
            "wall": min(v["wall"]),
            "wall_median": statistics.median(v["wall"]),
            "cpu": min(v["cpu"]),
            "cpu_median": statistics.median(v["cpu"]),
        }
        for n, v in out.items()
    }


def build(url: str, rows: int) -> float:
    from sandbox.synth.run import synthesize

    t0 = time.perf_counter()
    synthesize(load_policies(), scale=rows, seed=7, datasets=[DATASET], warehouse_url=url)
    return time.perf_counter() - t0


@contextmanager
def postgres(args: argparse.Namespace) -> Iterator[str | None]:
    if args.no_pg:
        yield None
        return
    if args.pg_url:
        yield args.pg_url
        return
    from support.postgres import PostgresCluster

    with PostgresCluster() as pg:
        url = pg.create_database("planner_bench")
        print(f"building {DATASET} in PostgreSQL, {args.pg_rows:,} rows ...", flush=True)
        print(f"  {build(url, args.pg_rows):.1f} s", flush=True)
        yield url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duckdb", help="an existing DuckDB file with taxi_trips (else one is built)")
    ap.add_argument("--duckdb-rows", type=int, default=10_000_000)
    ap.add_argument(
        "--pg-url", help="an existing PostgreSQL database with taxi_trips (else a cluster is made)"
    )
    ap.add_argument("--pg-rows", type=int, default=2_000_000)
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--only", help="variant names separated by ';' (exact is always first)")
    args = ap.parse_args()

    names = list(variants())
    if args.only:
        wanted = [n.strip() for n in args.only.split(";")]
        names = ["exact", *[n for n in names if n in wanted and n != "exact"]]
    results: dict[str, dict[str, dict[str, float]]] = {}
    sizes: dict[str, int | str] = {}
    with tempfile.TemporaryDirectory(prefix="planner-bench-") as tmp:
        duck = args.duckdb
        if duck is None:
            duck = str(Path(tmp) / "w.duckdb")
            print(f"building {DATASET} in DuckDB, {args.duckdb_rows:,} rows ...", flush=True)
            print(f"  {build(f'duckdb:///{duck}', args.duckdb_rows):.1f} s", flush=True)
        results["duckdb"] = measure(f"duckdb:///{duck}", names, args.repeat, postgres=False)
        sizes["duckdb"] = _rows(f"duckdb:///{duck}")
        with postgres(args) as pg_url:
            if pg_url is not None:
                results["postgresql"] = measure(pg_url, names, args.repeat, postgres=True)
                sizes["postgresql"] = _rows(pg_url)

    print()
    print(f"{DATASET}: {DP_SQL}")
    print("rows: " + ", ".join(f"{e} {n:,}" for e, n in sizes.items() if isinstance(n, int)))
    print(f"best of {args.repeat} (median in brackets), seconds; x = CPU / CPU of exact")
    header = f"{'variant':<24}{'what':<56}"
    for eng in results:
        cpu = "CPU" if eng == "duckdb" else "CPU serial"
        header += f"{eng + ' wall':>20}{cpu:>20}{'x':>7}"
    print(header)
    for name in names:
        line = f"{name:<24}{variants_doc(name):<56}"
        for res in results.values():
            r, base = res[name], res["exact"]["cpu"]
            line += f"{r['wall']:>9.3f} ({r['wall_median']:.3f}){r['cpu']:>9.3f} ({r['cpu_median']:.3f})"
            line += f"{r['cpu'] / base if base else float('nan'):>7.2f}"
        print(line)


_DOCS: dict[str, str] = {}


def variants_doc(name: str) -> str:
    if not _DOCS:
        _DOCS.update({n: v[0] for n, v in variants().items()})
    return _DOCS[name][:55]


def _rows(url: str) -> int:
    engine = make_engine(url, read_only=True) if url.startswith("duckdb") else make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {DATASET}")).scalar_one())
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()

"""DP query benchmark: our engine against the exact SQL and against peer DP systems, side by side.

Builds one catalogue table (``taxi_trips``: unit ``vehicle_pseudo``, 60 rows per unit) at ``--rows``
(and at 1M for the RSS comparison) in embedded DuckDB and in a throwaway PostgreSQL cluster, then
times, in one run:

* exact SQL ``GROUP BY`` (count + mean over the 16 pick-up districts) on the same engine;
* our engine (parse -> compile -> one push-down statement -> OpenDP noise), same question, three
  ways: as deployed (the planner picks the count/sum cube built at ingest), on the bounded table
  (cube off: a scan of the rows within the cap, fixed-point integers) and on the raw table (rank
  filter and clamping per row, as without derived tables);
* OpenDP's own Context/Polars API on the same data (Parquet), in its own virtualenv;
* SmartNoise SQL 1.0.10 on the same PostgreSQL, in its own virtualenv;
* Tumult Analytics 0.21 (Spark local) on the same data (Parquet), in its own virtualenv;

and the peak RSS of each process. Each measurement runs in a fresh child process so RSS is its own.
Peers need ``bench/peers/setup.sh`` first (the script runs it when a peer venv is missing).

Usage: python bench/dp_queries.py --rows 10000000 [--skip-peers] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

DATASET = "taxi_trips"
KEY, VALUE, UNIT = "pickup_district", "fare_yuan", "vehicle_pseudo"
DP_SQL = f"SELECT {KEY}, COUNT(*) AS trips, AVG({VALUE}) AS mean_fare FROM {DATASET} GROUP BY {KEY}"
EXACT_SQL = f"SELECT {KEY}, COUNT(*), AVG({VALUE}) FROM {DATASET} GROUP BY {KEY}"
from sandbox.catalog.warehouse import DEFAULT_DUCKDB_MEMORY_LIMIT as DUCKDB_MEMORY_LIMIT  # noqa: E402

PEERS = ROOT / "bench" / ".peers"


def _peak_rss_mb() -> float:
    """Peak RSS of this process image (VmHWM resets at exec, unlike ru_maxrss, which a child
    inherits from the parent it was forked from)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------- child measurements
def child(mode: str, url: str, repeat: int, epsilon: str) -> dict[str, Any]:
    """Run in a fresh process: time `mode` on `url`, report seconds (best of repeat) and RSS."""
    import sqlalchemy as sa

    from sandbox.catalog.warehouse import make_engine
    from sandbox.dp import compile_query, parse_sql
    from sandbox.dp.derived import read_layout
    from sandbox.policy.loader import load_policies

    catalog = load_policies()
    engine = make_engine(url)
    base_rss = _peak_rss_mb()
    times: list[float] = []
    groups = 0
    source = "raw"
    with engine.connect() as conn:
        # the gateway reads the layout once and reuses it (ServiceContext.derived_layout, 10 s)
        derived = read_layout(conn, catalog.datasets).get(DATASET)
        if mode != "exact" and mode != "engine-raw" and derived is None:
            raise SystemExit(f"no current derived tables for {DATASET} in {url}")
        for _ in range(repeat):
            t0 = time.perf_counter()
            if mode == "exact":
                rows = conn.execute(sa.text(EXACT_SQL)).all()
                groups = len(rows)
            else:
                spec = parse_sql(DP_SQL, catalog)
                compiled = compile_query(spec, catalog, Decimal(epsilon))
                if mode == "engine-raw":
                    statement = compiled.statement
                else:
                    source, statement = compiled.plan.statement_on(derived, use_cube=mode == "engine")
                rows = conn.execute(statement).all()
                release = compiled.release(rows)
                groups = len(release.rows)
            times.append(time.perf_counter() - t0)
    engine.dispose()
    return {
        "source": source,
        "seconds": min(times),
        "median_seconds": sorted(times)[len(times) // 2],
        "rss_mb": _peak_rss_mb(),
        "rss_after_imports_mb": base_rss,
        "groups": groups,
    }


def run_child(mode: str, url: str, repeat: int, epsilon: str) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--url",
            url,
            "--repeat",
            str(repeat),
            "--epsilon",
            epsilon,
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run_peer(name: str, script: str, args: list[str], timeout: float = 3600) -> dict[str, Any]:
    py = PEERS / name / "bin" / "python"
    if not py.exists():
        subprocess.run([str(ROOT / "bench" / "peers" / "setup.sh"), name], check=True)
    try:
        out = subprocess.run(
            [str(py), str(ROOT / "bench" / "peers" / script), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.CalledProcessError as err:
        return {"error": (err.stderr or "").strip().splitlines()[-1:] or ["failed"]}
    except subprocess.TimeoutExpired:
        return {"error": [f"timed out after {timeout:.0f} s"]}
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# ----------------------------------------------------------------------------- data
def build(url: str, rows: int) -> float:
    """Generate the table in a child process, so this process stays small."""
    code = (
        "from sandbox.policy.loader import load_policies; from sandbox.synth.run import synthesize; "
        f"synthesize(load_policies(), scale={rows}, seed=7, datasets=[{DATASET!r}], warehouse_url={url!r})"
    )
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    return time.perf_counter() - t0


def export_parquet(duckdb_path: Path, out: Path) -> None:
    import duckdb

    con = duckdb.connect(str(duckdb_path), read_only=True)
    con.execute(f"COPY (SELECT {UNIT}, {KEY}, {VALUE} FROM {DATASET}) TO '{out}' (FORMAT parquet)")
    con.close()


def _fmt(v: Any, unit: str = "") -> str:
    if isinstance(v, float):
        return f"{v:.3f}{unit}" if v < 100 else f"{v:.0f}{unit}"
    return str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--small-rows", type=int, default=1_000_000, help="size for the RSS growth comparison")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--epsilon", default="1.0")
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--peer-timeout", type=float, default=1200, help="seconds per peer run")
    ap.add_argument("--peer-repeat", type=int, default=1, help="runs per peer (best is kept)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.url, args.repeat, args.epsilon)))
        return

    from support.postgres import PostgresCluster

    from sandbox.policy.loader import load_policies

    districts = ",".join(str(d) for d in (load_policies().dataset(DATASET).column(KEY).domain or []))
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="dpbench-") as tmp, PostgresCluster() as pg:
        os.chmod(tmp, 0o755)
        sizes = sorted({args.small_rows, args.rows})
        for rows in sizes:
            duck = Path(tmp) / f"w{rows}.duckdb"
            pg_db = f"w{rows}"
            pg.create_database(pg_db)
            duck_url = f"duckdb:///{duck}"
            pg_url = pg.url(pg_db)
            print(f"building {DATASET} with {rows:,} rows ...", flush=True)
            print(f"  duckdb     {build(duck_url, rows):.1f} s", flush=True)
            print(f"  postgresql {build(pg_url, rows):.1f} s", flush=True)
            for eng, url in (("duckdb", duck_url), ("postgresql", pg_url)):
                for mode in ("exact", "engine", "engine-scan", "engine-raw"):
                    results[f"{eng}/{mode}/{rows}"] = run_child(mode, url, args.repeat, args.epsilon)
            if rows == args.rows and not args.skip_peers:
                parquet = Path(tmp) / f"{DATASET}.parquet"
                export_parquet(duck, parquet)
                os.chmod(parquet, 0o644)
                common = ["--unit", UNIT, "--key", KEY, "--value", VALUE, "--epsilon", args.epsilon]
                common += ["--repeat", str(args.peer_repeat)]
                print("  peers: OpenDP Polars ...", flush=True)
                results["peer/opendp-polars"] = run_peer(
                    "polars",
                    "polars_query.py",
                    ["--parquet", str(parquet), "--keys", districts, *common],
                    args.peer_timeout,
                )
                print("  peers: SmartNoise SQL ...", flush=True)
                results["peer/smartnoise"] = run_peer(
                    "smartnoise",
                    "smartnoise_query.py",
                    ["--dsn", pg.libpq_url(pg_db), "--table", DATASET, *common],
                    args.peer_timeout,
                )
                print("  peers: Tumult Analytics ...", flush=True)
                results["peer/tumult"] = run_peer(
                    "tumult",
                    "tumult_query.py",
                    ["--parquet", str(parquet), "--keys", districts, *common],
                    args.peer_timeout,
                )

    n = args.rows
    print()
    print(f"DP grouped count + mean over 16 districts, {DATASET}, {n:,} rows, epsilon={args.epsilon}")
    print(f"{'system':<38}{'seconds':>10}{'peak RSS MB':>14}  table read")
    for key, label in [
        (f"duckdb/exact/{n}", "DuckDB exact SQL GROUP BY"),
        (f"duckdb/engine/{n}", "DuckDB ours (as deployed: cube)"),
        (f"duckdb/engine-scan/{n}", "DuckDB ours, bounded-table scan"),
        (f"duckdb/engine-raw/{n}", "DuckDB ours, raw table"),
        (f"postgresql/exact/{n}", "PostgreSQL exact SQL GROUP BY"),
        (f"postgresql/engine/{n}", "PostgreSQL ours (as deployed: cube)"),
        (f"postgresql/engine-scan/{n}", "PostgreSQL ours, bounded-table scan"),
        (f"postgresql/engine-raw/{n}", "PostgreSQL ours, raw table"),
        ("peer/opendp-polars", "OpenDP 0.16 Context/Polars"),
        ("peer/smartnoise", "SmartNoise SQL 1.0.10 (PostgreSQL)"),
        ("peer/tumult", "Tumult Analytics 0.21 (Spark local[2])"),
    ]:
        r = results.get(key)
        if r is None:
            continue
        if "error" in r:
            print(f"{label:<38}{'error: ' + ' '.join(r['error'])}")
            continue
        print(f"{label:<38}{_fmt(r['seconds']):>10}{_fmt(r['rss_mb']):>14}  {r.get('source', '')}")

    def ratio(a: str, b: str) -> str:
        ra, rb = results.get(a), results.get(b)
        if not ra or not rb or "error" in ra or "error" in rb:
            return "n/a"
        return f"{ra['seconds'] / rb['seconds']:.2f}x"

    print()
    print("ratios (targets in brackets)")
    duck_ours, pg_ours = f"duckdb/engine/{n}", f"postgresql/engine/{n}"
    lines = [
        ("DuckDB     ours / exact SQL", ratio(duck_ours, f"duckdb/exact/{n}"), "<= 1.2x"),
        ("PostgreSQL ours / exact SQL", ratio(pg_ours, f"postgresql/exact/{n}"), "<= 1.2x"),
        ("OpenDP-Polars / ours (DuckDB)", ratio("peer/opendp-polars", duck_ours), ">= 100x"),
        ("SmartNoise / ours (same PostgreSQL)", ratio("peer/smartnoise", pg_ours), ">= 8x"),
        ("Tumult / ours (DuckDB)", ratio("peer/tumult", duck_ours), "reported"),
        ("DuckDB     scan / exact SQL", ratio(f"duckdb/engine-scan/{n}", f"duckdb/exact/{n}"), "reported"),
        (
            "PostgreSQL scan / exact SQL",
            ratio(f"postgresql/engine-scan/{n}", f"postgresql/exact/{n}"),
            "reported",
        ),
        ("OpenDP-Polars / scan (DuckDB)", ratio("peer/opendp-polars", f"duckdb/engine-scan/{n}"), "reported"),
        (
            "SmartNoise / scan (PostgreSQL)",
            ratio("peer/smartnoise", f"postgresql/engine-scan/{n}"),
            "reported",
        ),
        ("DuckDB     raw / exact SQL", ratio(f"duckdb/engine-raw/{n}", f"duckdb/exact/{n}"), "reported"),
        (
            "PostgreSQL raw / exact SQL",
            ratio(f"postgresql/engine-raw/{n}", f"postgresql/exact/{n}"),
            "reported",
        ),
    ]
    for label, value, target in lines:
        print(f"  {label:<38}{value:>10}  [{target}]")
    small, big = results.get(f"postgresql/engine/{args.small_rows}"), results.get(f"postgresql/engine/{n}")
    if small and big and args.small_rows != n:
        growth = big["rss_mb"] - small["rss_mb"]
        print(
            f"  PostgreSQL engine RSS {args.small_rows:,} -> {n:,} rows: "
            f"{small['rss_mb']:.0f} -> {big['rss_mb']:.0f} MB (growth {growth:+.1f} MB)  [< 50 MB]"
        )
    small, big = (
        results.get(f"postgresql/engine-scan/{args.small_rows}"),
        results.get(f"postgresql/engine-scan/{n}"),
    )
    if small and big and args.small_rows != n:
        print(
            f"  PostgreSQL scan RSS {args.small_rows:,} -> {n:,} rows: "
            f"{small['rss_mb']:.0f} -> {big['rss_mb']:.0f} MB "
            f"(growth {big['rss_mb'] - small['rss_mb']:+.1f} MB)"
        )
    dsmall, dbig = results.get(f"duckdb/engine/{args.small_rows}"), results.get(f"duckdb/engine/{n}")
    if dsmall and dbig:
        print(
            f"  DuckDB engine RSS (memory_limit {DUCKDB_MEMORY_LIMIT}): "
            f"{dsmall['rss_mb']:.0f} -> {dbig['rss_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()

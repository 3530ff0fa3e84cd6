"""Synthetic warehouse benchmark: rows/s per table and overall, generation and writes.

Generates every dataset once at ``--rows`` rows per large table (the ``sandbox synth --scale``
rule; reference tables scale with it) and writes each table to every backend asked for
(embedded DuckDB and SQLite files in a temporary directory), timing generation and each write
separately. Writes go through the same code as ``sandbox synth`` (one transaction per table).

Usage: python bench/synth.py [--rows 1000000] [--seed 2019] [--backends duckdb,sqlite] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import MetaData  # noqa: E402

from sandbox.catalog.warehouse import make_engine, meta_table, warehouse_tables  # noqa: E402
from sandbox.policy.loader import load_policies  # noqa: E402
from sandbox.synth.base import SynthContext  # noqa: E402
from sandbox.synth.generate import frame_checksum  # noqa: E402
from sandbox.synth.run import DEFAULT_SEED, PARENTS, select_datasets  # noqa: E402
from sandbox.synth.writer import MetaRow, replace_table  # noqa: E402


def _rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:>12,.0f}" if seconds > 0 else f"{'-':>12}"


def run(rows: int, seed: int, backends: list[str], workdir: Path) -> dict[str, Any]:
    catalog = load_policies()
    metadata = MetaData()
    tables = warehouse_tables(catalog, metadata)
    meta = meta_table(metadata)
    engines = {b: make_engine(f"{b}:///{workdir / ('bench.' + b)}") for b in backends}
    ctx = SynthContext(catalog, seed, rows)
    results: list[dict[str, Any]] = []
    try:
        for ds_id in select_datasets(catalog, None):
            started = time.perf_counter()
            frame = ctx.frame(ds_id)
            generated = time.perf_counter() - started
            entry: dict[str, Any] = {
                "dataset": ds_id,
                "rows": len(frame),
                "generate_s": generated,
                "write_s": {},
            }
            row = MetaRow(ds_id, True, seed, rows, len(frame), frame_checksum(frame), datetime.now())
            for backend, engine in engines.items():
                t0 = time.perf_counter()
                replace_table(engine, tables[ds_id], frame, meta, row)
                entry["write_s"][backend] = time.perf_counter() - t0
            results.append(entry)
            if ds_id not in PARENTS:
                ctx.forget(ds_id)
            writes = "  ".join(f"{b} {_rate(len(frame), s)} rows/s" for b, s in entry["write_s"].items())
            print(
                f"{ds_id:<24}{len(frame):>10,}  generate {_rate(len(frame), generated)} rows/s  {writes}",
                flush=True,
            )
    finally:
        for engine in engines.values():
            engine.dispose()
    total_rows = sum(r["rows"] for r in results)
    total_gen = sum(r["generate_s"] for r in results)
    summary: dict[str, Any] = {
        "rows_per_large_table": rows,
        "total_rows": total_rows,
        "generate_s": total_gen,
        "generate_rows_per_s": total_rows / total_gen,
        "backends": {},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "tables": results,
    }
    for backend in backends:
        write = sum(r["write_s"][backend] for r in results)
        summary["backends"][backend] = {
            "write_s": write,
            "write_rows_per_s": total_rows / write,
            "end_to_end_s": total_gen + write,
            "end_to_end_rows_per_s": total_rows / (total_gen + write),
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per large table (--scale)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--backends", default="duckdb,sqlite", help="comma-separated: duckdb, sqlite")
    parser.add_argument("--json", action="store_true", help="also print the summary as JSON")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp:
        summary = run(args.rows, args.seed, backends, Path(tmp))
    print()
    print(
        f"overall: {summary['total_rows']:,} rows; generate {summary['generate_s']:.1f} s "
        f"({summary['generate_rows_per_s']:,.0f} rows/s)"
    )
    for backend, b in summary["backends"].items():
        print(
            f"  {backend:<7} write {b['write_s']:.1f} s ({b['write_rows_per_s']:,.0f} rows/s); "
            f"generate+write {b['end_to_end_s']:.1f} s ({b['end_to_end_rows_per_s']:,.0f} rows/s)"
        )
    print(f"  peak RSS {summary['peak_rss_mb']:,.0f} MB")
    if args.json:
        print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()

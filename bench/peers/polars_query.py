"""OpenDP's own Context/Polars API peer: grouped count + mean over the 16 districts.

Run with bench/.peers/polars/bin/python. Reads a Parquet file of the table. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import opendp.prelude as dp
import polars as pl
import psutil


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parquet", required=True)
    ap.add_argument("--unit", default="vehicle_pseudo")
    ap.add_argument("--key", default="pickup_district")
    ap.add_argument("--value", default="fare_yuan")
    ap.add_argument("--lower", type=float, default=14.0)
    ap.add_argument("--upper", type=float, default=600.0)
    ap.add_argument("--max-rows", type=int, default=60)
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--keys", default="")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    dp.enable_features("contrib")
    keys = pl.DataFrame({args.key: args.keys.split(",")}) if args.keys else None
    lf = pl.scan_parquet(args.parquet).select(args.key, args.unit, args.value)
    times = []
    groups = 0
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        ctx = dp.Context.compositor(
            data=lf,
            privacy_unit=dp.unit_of(contributions=args.max_rows),
            privacy_loss=dp.loss_of(epsilon=args.epsilon),
            split_evenly_over=1,
            margins=[dp.polars.Margin(by=[args.key], invariant="keys", max_length=10**9)],
        )
        q = (
            ctx.query()
            .group_by(args.key)
            .agg(
                dp.len(),
                pl.col(args.value).fill_null(args.lower).dp.mean((args.lower, args.upper)),
            )
        )
        if keys is not None:
            q = q.with_keys(keys)
        out = q.release().collect()
        times.append(time.perf_counter() - t0)
        groups = out.height
    rss = psutil.Process().memory_info().rss / 2**20
    print(
        json.dumps(
            {"system": "opendp 0.16 Context/Polars", "seconds": min(times), "rss_mb": rss, "groups": groups}
        )
    )


if __name__ == "__main__":
    main()

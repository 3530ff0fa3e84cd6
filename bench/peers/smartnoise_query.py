"""SmartNoise SQL peer: grouped count + mean over the 16 districts on PostgreSQL.

Run with bench/.peers/smartnoise/bin/python (its own venv). Prints one JSON line.
Usage: smartnoise_query.py --dsn "host=... port=... user=... dbname=..." --table taxi_trips
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import psutil
import psycopg2
import snsql


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--table", default="taxi_trips")
    ap.add_argument("--unit", default="vehicle_pseudo")
    ap.add_argument("--key", default="pickup_district")
    ap.add_argument("--value", default="fare_yuan")
    ap.add_argument("--lower", type=float, default=14.0)
    ap.add_argument("--upper", type=float, default=600.0)
    ap.add_argument("--max-ids", type=int, default=60)
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    meta = f"""
Collection:
  public:
    {args.table}:
      max_ids: {args.max_ids}
      row_privacy: False
      censor_dims: False
      {args.unit}:
        type: string
        private_id: True
      {args.key}:
        type: string
      {args.value}:
        type: float
        lower: {args.lower}
        upper: {args.upper}
"""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(meta)
        meta_path = fh.name
    conn = psycopg2.connect(args.dsn)
    privacy = snsql.Privacy(epsilon=args.epsilon, delta=1e-6)
    reader = snsql.from_connection(conn, engine="postgres", privacy=privacy, metadata=meta_path)
    sql = (
        f"SELECT {args.key}, COUNT(*) AS n, AVG({args.value}) AS mean_value "
        f"FROM public.{args.table} GROUP BY {args.key}"
    )
    times = []
    rows = 0
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = reader.execute(sql)
        times.append(time.perf_counter() - t0)
        rows = len(result) - 1
    rss = psutil.Process().memory_info().rss / 2**20
    print(
        json.dumps({"system": "smartnoise-sql 1.0.10", "seconds": min(times), "rss_mb": rss, "groups": rows})
    )


if __name__ == "__main__":
    main()

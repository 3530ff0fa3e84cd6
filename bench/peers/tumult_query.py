"""Tumult Analytics peer: grouped count + mean over the 16 districts (Spark local, Parquet input).

Run with bench/.peers/tumult/bin/python (Java 17 on PATH). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

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
    ap.add_argument("--keys", required=True)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    # Spark's Python workers must use this virtualenv's interpreter (it has tmlt installed).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession
    from tmlt.analytics import (
        AddRowsWithID,
        KeySet,
        MaxRowsPerID,
        PureDPBudget,
        QueryBuilder,
        Session,
    )

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.driver.memory", "6g")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.warehouse.dir", tempfile.mkdtemp(prefix="spark-warehouse-"))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.read.parquet(args.parquet).select(args.unit, args.key, args.value)
    keys = KeySet.from_dict({args.key: args.keys.split(",")})
    times = []
    groups = 0
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        session = Session.from_dataframe(
            privacy_budget=PureDPBudget(args.epsilon),
            source_id="t",
            dataframe=df,
            protected_change=AddRowsWithID(id_column=args.unit),
        )
        base = QueryBuilder("t").enforce(MaxRowsPerID(args.max_rows)).groupby(keys)
        q_count = base.count()
        q_mean = (
            QueryBuilder("t")
            .enforce(MaxRowsPerID(args.max_rows))
            .groupby(keys)
            .average(args.value, args.lower, args.upper)
        )
        c = session.evaluate(q_count, PureDPBudget(args.epsilon / 2)).toPandas()
        session.evaluate(q_mean, PureDPBudget(args.epsilon / 2)).toPandas()
        times.append(time.perf_counter() - t0)
        groups = len(c)
    # Spark runs in a JVM child: count its RSS too.
    proc = psutil.Process(os.getpid())
    rss = proc.memory_info().rss + sum(ch.memory_info().rss for ch in proc.children(recursive=True))
    print(
        json.dumps(
            {"system": "tmlt-analytics 0.21", "seconds": min(times), "rss_mb": rss / 2**20, "groups": groups}
        )
    )
    spark.stop()


if __name__ == "__main__":
    main()

"""Load on the gateway through its HTTP API, as kernels call it, and the gateway's own overhead.

    .venv/bin/python bench/hub_load.py [--users 20] [--queries 10] [--scale 5000]

What it does, on a throwaway data folder:

1. ``sandbox init --demo`` and ``sandbox synth --scale``; one project per simulated user with a
   grant for ``enterprise_tax`` (so no user's queries hit another's release cache or budget);
2. starts the real JupyterHub + proxy + gateway (demo mode) and signs every user in through the
   hub's login form; a hub API token per user is minted by the ``sandbox-ops`` service (kernels
   hold exactly such a token);
3. **in-process**: one user's ``--queries`` distinct DP queries through
   ``sandbox.services.queries.run_query`` (no HTTP, no hub), sequentially;
4. **gateway, 1 user**: the same queries for another user over HTTP, sequentially;
5. **gateway, N users**: ``--users`` threads, each running its ``--queries`` queries at once.

Prints p50 / p95 / max latency per phase, throughput, and the gateway overhead per query
(gateway sequential p50 minus in-process p50: HTTP, JSON, hub token check, threadpool).
Latencies include the DP work itself (push-down SQL on DuckDB, OpenDP noise, ledger commit).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password-1"
DATASET = "enterprise_tax"
GLOBAL_CAP_SHARE = Decimal("25")  # stay below the dataset's global cap (30) for every user together
WARM_UP = f"SELECT COUNT(*) FROM {DATASET}"  # first query of each client: not measured


def queries(n: int) -> list[str]:
    """``n`` distinct DP queries on one dataset (distinct, so none is answered from the cache)."""
    out = []
    for year in (2016, 2017, 2018):
        for key in ("credit_grade", "arrears_flag", "filing_months"):
            out.append(f"SELECT {key}, COUNT(*) FROM {DATASET} WHERE tax_year = {year} GROUP BY {key}")
    out.append(f"SELECT tax_year, COUNT(*), AVG(filing_months) FROM {DATASET} GROUP BY tax_year")
    out.append(f"SELECT credit_grade, AVG(filing_months) FROM {DATASET} GROUP BY credit_grade")
    while len(out) < n:
        k = len(out)
        where = f"filing_months >= {k % 13}"
        out.append(f"SELECT credit_grade, COUNT(*) FROM {DATASET} WHERE {where} GROUP BY credit_grade")
    return out[:n]


def free_base_port() -> int:
    def free(port: int) -> bool:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
        return True

    for base in range(24000, 60000, 113):
        if all(free(base + d) for d in (0, 1, 81, 90, 91)):
            return base
    raise RuntimeError("no free ports")


def sandbox_cli(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "sandbox.cli.main", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"sandbox {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


def seed_users(names: list[str]) -> None:
    from sandbox.access import registry
    from sandbox.config import get_settings
    from sandbox.control.db import make_engine, session_scope

    engine = make_engine(get_settings().control_db_url)
    try:
        with session_scope(engine, immediate=True) as session:
            for name in names:
                if registry.find_user(session, name) is None:
                    registry.create_user(session, name, "researcher", password=PASSWORD, actor="admin")
                    registry.create_project(session, f"{name}-lab", title="bench", lead=name, actor="admin")
                    registry.grant_dataset(session, f"{name}-lab", DATASET, actor="admin", source="bench")
    finally:
        engine.dispose()


def sign_in_and_mint(hub_url: str, ops_token: str, name: str) -> str:
    """Sign in with the hub's login form (the hub learns the user's roles), then mint a token."""
    with httpx.Client(base_url=hub_url, follow_redirects=True, timeout=60) as http:
        http.get("hub/login").raise_for_status()
        xsrf = http.cookies.get("_xsrf", "")
        r = http.post(
            "hub/login", data={"username": name, "password": PASSWORD, "_xsrf": xsrf}, follow_redirects=False
        )
        if r.status_code != 302:
            raise RuntimeError(f"sign-in of {name} failed: HTTP {r.status_code}")
    r = httpx.post(
        f"{hub_url}hub/api/users/{name}/tokens",
        headers={"Authorization": f"token {ops_token}"},
        json={"note": "bench", "expires_in": 3600, "scopes": ["access:services!service=sandbox"]},
        timeout=60,
    )
    r.raise_for_status()
    return str(r.json()["token"])


def run_gateway_user(gateway: str, token: str, project: str, sqls: list[str], epsilon: str) -> list[float]:
    latencies = []
    with httpx.Client(base_url=gateway, headers={"Authorization": f"token {token}"}, timeout=300) as gw:
        gw.get("whoami").raise_for_status()  # first use: hub check + login audit, not measured
        gw.post("query", json={"sql": WARM_UP, "project": project, "epsilon": epsilon}).raise_for_status()
        for sql in sqls:
            t0 = time.perf_counter()
            r = gw.post("query", json={"sql": sql, "project": project, "epsilon": epsilon})
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise RuntimeError(f"{project}: HTTP {r.status_code} {r.text[:200]}")
            if r.json().get("cached"):
                raise RuntimeError("a bench query was answered from the cache")
    return latencies


def run_in_process(user: str, sqls: list[str], epsilon: str) -> list[float]:
    from sandbox.services.queries import ServiceContext, run_query

    ctx = ServiceContext.from_settings()
    try:
        latencies = []
        run_query(ctx, user=user, project=f"{user}-lab", sql=WARM_UP, epsilon=Decimal(epsilon))
        for sql in sqls:
            t0 = time.perf_counter()
            run_query(ctx, user=user, project=f"{user}-lab", sql=sql, epsilon=Decimal(epsilon))
            latencies.append(time.perf_counter() - t0)
        return latencies
    finally:
        ctx.close()


def summary(label: str, latencies: list[float], wall: float | None = None) -> dict[str, float]:
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    row = {
        "n": len(ordered),
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": p95 * 1000,
        "max_ms": ordered[-1] * 1000,
    }
    qps = f"{len(ordered) / wall:7.1f} q/s" if wall else ""
    print(
        f"{label:<28} n={row['n']:>4}  p50 {row['p50_ms']:8.1f} ms  p95 {row['p95_ms']:8.1f} ms"
        f"  max {row['max_ms']:8.1f} ms  {qps}"
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--scale", type=int, default=5000)
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="sandbox-hub-load-"))
    port = free_base_port()
    os.environ.update(
        {
            "SANDBOX_DATA_DIR": str(workdir / "data"),
            "SANDBOX_PORT": str(port),
            "SANDBOX_HUB_MODE": "demo",
            "SANDBOX_DEMO_PASSWORD": PASSWORD,
        }
    )
    for key in ("SANDBOX_WAREHOUSE_URL", "SANDBOX_CONTROL_DB_URL", "SANDBOX_HUB_STATE_DIR"):
        os.environ.pop(key, None)
    sqls = queries(args.queries)
    total_users = args.users + 2
    per_query = (GLOBAL_CAP_SHARE / (total_users * (args.queries + 1))).quantize(Decimal("0.001"), ROUND_DOWN)
    epsilon = str(min(Decimal("0.05"), per_query))
    print(
        f"hub load: {args.users} users x {args.queries} queries, epsilon {epsilon} each, "
        f"scale {args.scale}, {os.cpu_count()} CPUs"
    )

    t0 = time.perf_counter()
    sandbox_cli("init", "--demo")
    sandbox_cli("synth", "--scale", str(args.scale))
    load_users = [f"load{i:03d}" for i in range(args.users)]
    seed_users(["inproc", "seq", *load_users])
    print(f"setup (init, synth, users): {time.perf_counter() - t0:.1f}s")

    from sandbox.hub.process import HubProcess
    from sandbox.hub.settings import load_hub_settings

    settings = load_hub_settings()
    log_path = workdir / "hub.log"
    with log_path.open("wb") as log:
        hub = HubProcess(settings, log=log)
        t0 = time.perf_counter()
        hub.start(timeout=120)
        print(f"hub up in {time.perf_counter() - t0:.1f}s at {settings.public_url}")
        try:
            ops = settings.operator_token_file.read_text().strip()
            with ThreadPoolExecutor(max_workers=8) as pool:
                names = ["seq", *load_users]
                minted = pool.map(lambda n: sign_in_and_mint(settings.public_url, ops, n), names)
                tokens = dict(zip(names, minted, strict=True))
            gateway = settings.gateway_url + "api/v1/"

            inproc = run_in_process("inproc", sqls, epsilon)
            sequential = run_gateway_user(gateway, tokens["seq"], "seq-lab", sqls, epsilon)

            results: dict[str, list[float]] = {}
            barrier = threading.Barrier(args.users)

            def worker(name: str) -> None:
                barrier.wait()
                results[name] = run_gateway_user(gateway, tokens[name], f"{name}-lab", sqls, epsilon)

            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.users) as pool:
                list(pool.map(worker, load_users))
            wall = time.perf_counter() - t0
        finally:
            hub.stop()

    print()
    a = summary("in-process run_query", inproc)
    b = summary("gateway, 1 user", sequential)
    summary(f"gateway, {args.users} users at once", [x for v in results.values() for x in v], wall)
    overhead = b["p50_ms"] - a["p50_ms"]
    print(
        f"\ngateway overhead per query (p50): {overhead:+.1f} ms "
        f"({b['p50_ms'] / a['p50_ms']:.2f}x in-process)"
    )
    if args.keep:
        print(f"data and hub log kept in {workdir}")
    else:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``sandbox demo``: try the whole sandbox on one machine.

1. ``sandbox init --demo`` (idempotent): data folder, control DB, demo accounts and projects;
2. ``sandbox synth`` at a small scale (skipped when the warehouse already exists; then
   ``sandbox warehouse prepare`` rebuilds the derived DP tables a policy change made stale);
3. the demo enterprise ``ent`` (``sandbox.governance.demo.seed_demo_enterprise``, idempotent):
   it needs the warehouse, for the USCC of a synthetic enterprise, and authorises the demo
   bank (bob) to look up its records;
4. JupyterHub + configurable-http-proxy + the gateway on ``http://127.0.0.1:${SANDBOX_PORT:-8000}``;
5. prints the demo logins (``ent`` among them), then waits; Ctrl-C or SIGTERM stops everything
   (hub, proxy, gateway, users' servers and kernels) and exits 0.

Demo passwords: ``SANDBOX_DEMO_PASSWORD`` when set; otherwise one password is generated
on first run and kept in the hub state folder (0600 in a 0700 folder) so that later runs
can print it again. Accounts created earlier keep the password they were created with.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from sandbox.cli.output import fail
from sandbox.errors import ConfigError, SandboxError

DEMO_SCALE = 20_000
"""Rows per large dataset: the warehouse is generated in about 10 s on 2 cores (well under a minute)."""

PASSWORD_FILE = "demo-password"  # noqa: S105 - a file name
BANNER = "DEMO MODE: not isolated — for trying it out"


def _warehouse_exists(url: str) -> bool:
    """True when the embedded warehouse file is there (always False for a server URL)."""
    for prefix in ("duckdb:///", "sqlite:///"):
        if url.startswith(prefix):
            return Path(url[len(prefix) :].split("?", 1)[0]).exists()
    return False


def demo_password(state_dir: Path) -> tuple[str, str]:
    """(password, where it comes from): SANDBOX_DEMO_PASSWORD, else one kept in the state folder."""
    from_env = os.environ.get("SANDBOX_DEMO_PASSWORD")
    if from_env:
        return from_env, "SANDBOX_DEMO_PASSWORD"
    path = state_dir / PASSWORD_FILE
    try:
        stored = path.read_text(encoding="utf-8").strip()
        if stored:
            return stored, str(path)
    except FileNotFoundError:
        pass
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    state_dir.chmod(0o700)
    password = secrets.token_urlsafe(12)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(password + "\n")
    return password, str(path)


def _logins(settings: Any) -> list[tuple[str, str, str, str]]:
    """(user, role, status, projects or USCC) of every account, from the control DB."""
    from sandbox.access import registry
    from sandbox.control.db import open_engine, session_scope

    engine = open_engine(settings.control_db_url)
    try:
        with session_scope(engine) as session:
            rows = []
            for user in registry.list_users(session):
                projects = ", ".join(p.name for p in registry.user_projects(session, user.username))
                detail = f"projects: {projects or '-'}"
                if user.uscc:
                    detail = f"USCC {user.uscc}" + (f"; projects: {projects}" if projects else "")
                rows.append((user.username, str(user.role), str(user.status), detail))
            return rows
    finally:
        engine.dispose()


def _run_synth(scale: int) -> None:
    cmd = [sys.executable, "-m", "sandbox.cli.main", "synth", "--scale", str(scale)]
    result = subprocess.run(cmd, check=False)
    if result.returncode != 0:
        raise ConfigError(
            f"`sandbox synth --scale {scale}` failed (exit {result.returncode}).",
            hint="Run it by hand to see the error, then `sandbox demo` again.",
        )


def _run_prepare() -> None:
    """Rebuild derived DP tables that are not current (a policy changed since the warehouse was
    built). Queries are right without them (raw tables), only slower, so a failure warns."""
    cmd = [sys.executable, "-m", "sandbox.cli.main", "warehouse", "prepare"]
    result = subprocess.run(cmd, check=False)
    if result.returncode != 0:
        typer.secho(
            f"warehouse: `sandbox warehouse prepare` failed (exit {result.returncode}); "
            "queries read the raw tables until it succeeds.",
            fg=typer.colors.YELLOW,
            err=True,
        )


def _seed_enterprise(settings: Any, password: str) -> Any:
    """The demo enterprise ``ent`` and its authorisation of the demo bank (idempotent; after synth)."""
    from sandbox.governance.demo import seed_demo_enterprise
    from sandbox.services.queries import ServiceContext

    ctx = ServiceContext.from_settings(settings)
    try:
        return seed_demo_enterprise(ctx, ctx.warehouse_engine, password=password)
    finally:
        ctx.close()


def demo(
    scale: Annotated[
        int, typer.Option(help="Rows per large dataset when the warehouse is generated.", min=100)
    ] = DEMO_SCALE,
    resynth: Annotated[
        bool, typer.Option("--resynth", help="Regenerate the warehouse even if it exists.")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", help="Show the hub's log here instead of in <data>/hub/jupyterhub.log."),
    ] = False,
) -> None:
    """Seed the demo, generate data, run hub + proxy + gateway until Ctrl-C (not isolated)."""
    from sandbox.cli.init_cmd import run_init
    from sandbox.hub.process import HubProcess
    from sandbox.hub.settings import HubMode, load_hub_settings

    os.environ.setdefault("SANDBOX_HUB_MODE", HubMode.DEMO.value)
    try:
        hub_settings = load_hub_settings()
        settings = hub_settings.sandbox
        if hub_settings.mode is HubMode.DEMO:
            typer.secho(f"*** {BANNER} ***", fg=typer.colors.RED, bold=True)
        password, source = demo_password(hub_settings.state_dir)
        report = run_init(settings, demo=True, demo_password=password)
        for line in report.created:
            typer.echo(f"init: {line}")
        if resynth or not _warehouse_exists(settings.warehouse_url):
            typer.echo(f"synth: generating the synthetic warehouse (--scale {scale})...")
            _run_synth(scale)
        else:
            typer.echo("warehouse: checking the derived DP tables...")
            _run_prepare()
        enterprise = _seed_enterprise(settings, password)
        for line in enterprise.created:
            typer.echo(f"demo: created {line}")
        log_path = hub_settings.state_dir / "jupyterhub.log"
        hub_settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        log = None if verbose else log_path.open("ab")
        hub = HubProcess(hub_settings, log=log)
        typer.echo(f"hub: starting JupyterHub, proxy and gateway on {hub_settings.public_url} ...")
        if log is not None:
            typer.echo(f"hub: log in {log_path}")
        stop = threading.Event()

        def _on_signal(signum: int, frame: Any) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        try:
            try:
                hub.start()
            except SandboxError:
                if log is not None:
                    log.flush()
                    typer.echo(log_path.read_text(errors="replace")[-3000:], err=True)
                raise
            _print_ready(hub_settings, _logins(settings), password, source, report.passwords, enterprise)
            while not stop.wait(1.0):
                if not hub.running():
                    typer.secho("hub: JupyterHub exited; stopping.", fg=typer.colors.RED, err=True)
                    break
        finally:
            typer.echo("\nstopping hub, proxy, gateway and user servers ...")
            hub.stop()
            if log is not None:
                log.close()
            typer.echo("stopped.")
    except SandboxError as err:
        fail(err, as_json=False)


def _print_ready(
    hub_settings: Any,
    logins: list[tuple[str, str, str, str]],
    password: str,
    source: str,
    created_now: dict[str, str],
    enterprise: Any = None,
) -> None:
    typer.echo("")
    typer.secho(f"Open {hub_settings.public_url} and sign in as one of:", bold=True)
    width = max(len(u) for u, *_ in logins) if logins else 5
    for user, role, status, detail in logins:
        secret = created_now.get(user, password)
        note = "" if status == "approved" else f"  ({status}: cannot sign in)"
        typer.echo(f"  {user:<{width}}  {secret}  {role:<10} {detail}{note}")
    typer.echo(f"(password from {source}; accounts created earlier keep theirs)")
    typer.echo("Notebooks are in ~/notebooks/ (start with 00-getting-started.ipynb).")
    pages = f"{hub_settings.public_url}services/sandbox/"
    typer.echo(f"Stewards review exports and applications, admins decide violation reports at {pages}")
    if enterprise is not None and enterprise.uscc:
        typer.echo(
            f"The demo enterprise {enterprise.username} (USCC {enterprise.uscc}) authorises bob's bank: "
            f'sb.lookup("enterprise_tax", uscc="{enterprise.uscc}"); '
            f"{enterprise.username} sees its authorisations at {pages}governance/consents"
        )
    typer.echo(f"Public disclosure list (no sign-in): {pages}disclosures")
    typer.echo(f"Kernels reach the gateway API at {hub_settings.gateway_url} (loopback, not routed).")
    if hub_settings.mode.value == "demo":
        typer.secho(f"*** {BANNER} ***", fg=typer.colors.RED, bold=True)
    typer.echo("Press Ctrl-C to stop.")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)

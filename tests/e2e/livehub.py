"""A real hub for tests: data folder (init --demo + synth), JupyterHub + proxy + gateway, teardown.

Shared by ``tests/e2e`` and ``tests/docs`` (imported as ``e2e.livehub``; ``tests/`` is on
``sys.path``). Each test module starts its own hub (module-scoped fixtures) on free
ports with a copy of one prepared data folder, so budgets spent in one module do not
leak into another and at most one hub runs at a time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e.hubclient import HubUser
from support import require

from sandbox.config import REPO_ROOT

ARTIFACTS = REPO_ROOT / "test-artifacts"
DEMO_PASSWORD = "e2e-demo-password"
SYNTH_SCALE = 5_000
CHP = REPO_ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
PYTHON = sys.executable

_prepared: dict[str, Path] = {}


def require_hub_prerequisites() -> None:
    require(CHP.exists(), f"configurable-http-proxy missing at {CHP} (run `npm install` or make bootstrap)")
    require((Path(PYTHON).parent / "jupyterhub").exists(), "jupyterhub is not installed in this venv")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base_port() -> int:
    """A port P with P, P+1 (proxy API), P+81 (hub API), P+90/P+91 (gateway API/pages) all free."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        seed = s.getsockname()[1]
    for offset in range(0, 4000, 97):
        base = 20000 + (seed + offset) % 30000
        if all(_port_free(base + d) for d in (0, 1, 81, 90, 91)):
            return base
    raise RuntimeError("no free port block found")


def base_env(data_dir: Path, port: int, mode: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SANDBOX_", "JUPYTERHUB_"))}
    env.update(
        {
            "SANDBOX_DATA_DIR": str(data_dir),
            "SANDBOX_PORT": str(port),
            "SANDBOX_HUB_MODE": mode,
            "SANDBOX_DEMO_PASSWORD": DEMO_PASSWORD,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def _cli(args: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("ab") as fh:
        result = subprocess.run(
            [PYTHON, "-m", "sandbox.cli.main", *args],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        pytest.fail(f"`sandbox {' '.join(args)}` failed (exit {result.returncode}):\n{tail}", pytrace=False)


def prepared_data(root: Path) -> Path:
    """One data folder per session, as ``sandbox demo`` makes it: ``sandbox init --demo``,
    ``sandbox synth`` and the demo enterprise ``ent`` (copied per hub)."""
    if "demo" not in _prepared:
        data = root / "prepared-data"
        env = base_env(data, 8000, "demo")
        log = root / "prepare.log"
        _cli(["init", "--demo"], env, log)
        _cli(["synth", "--scale", str(SYNTH_SCALE)], env, log)
        _cli(["consent", "demo-enterprise"], env, log)
        _prepared["demo"] = data
    return _prepared["demo"]


@dataclass
class LiveHub:
    """A running hub and how to reach it."""

    settings: Any
    env: dict[str, str]
    process: Any
    log_path: Path
    password: str = DEMO_PASSWORD
    users: list[HubUser] = field(default_factory=list)

    @property
    def url(self) -> str:
        return str(self.settings.public_url)

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.sandbox.data_dir)

    def user(self, name: str, password: str | None = None) -> HubUser:
        u = HubUser(self.url, name, password or self.password)
        self.users.append(u)
        return u

    def signed_in(self, name: str) -> HubUser:
        u = self.user(name)
        u.login()
        u.start_server()
        return u

    def ops_token(self) -> str:
        return self.settings.operator_token_file.read_text().strip()

    def hub_api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Hub REST API as the ``sandbox-ops`` service."""
        headers = {"Authorization": f"token {self.ops_token()}"}
        return httpx.request(method, f"{self.url}hub/api/{path}", headers=headers, timeout=30, **kwargs)

    def user_token(self, name: str, note: str = "tests") -> str:
        """A token for ``name`` minted by the ops service (users cannot mint their own)."""
        r = self.hub_api(
            "POST", f"users/{name}/tokens", json={"note": note, "expires_in": 3600, "scopes": _TOKEN_SCOPES}
        )
        r.raise_for_status()
        return str(r.json()["token"])

    def control(self) -> Any:
        """A session on the hub's control DB (tests run as root, like the operator's CLI)."""
        from sandbox.control.db import make_engine, session_scope

        engine = make_engine(f"sqlite:///{self.data_dir / 'control.sqlite'}")
        return _disposing(session_scope(engine, immediate=True), engine)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def gateway(self, token: str) -> httpx.Client:
        """An HTTP client on the gateway's loopback address with ``token``."""
        return httpx.Client(
            base_url=str(self.settings.gateway_url) + "api/v1/",
            headers={"Authorization": f"token {token}"},
            timeout=120,
        )


_TOKEN_SCOPES = ["access:services!service=sandbox"]


@contextlib.contextmanager
def _disposing(cm: Any, engine: Any) -> Iterator[Any]:
    try:
        with cm as session:
            yield session
    finally:
        engine.dispose()


def settings_for(env: dict[str, str]) -> Any:
    """HubSettings as the hub will compute them from ``env``."""
    from sandbox.hub.settings import load_hub_settings

    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("SANDBOX_")]:
            mp.delenv(key)
        for key, value in env.items():
            if key.startswith("SANDBOX_"):
                mp.setenv(key, value)
        return load_hub_settings()


@contextlib.contextmanager
def running_hub(name: str, data_dir: Path, mode: str = "demo", **extra_env: str) -> Iterator[LiveHub]:
    """Start a hub on free ports with ``data_dir``; stop it (and every leftover process) afterwards."""
    from sandbox.hub.process import HubProcess

    require_hub_prerequisites()
    ARTIFACTS.mkdir(exist_ok=True)
    env = base_env(data_dir, free_base_port(), mode, **extra_env)
    settings = settings_for(env)
    log_path = ARTIFACTS / f"hub-{name}.log"
    with log_path.open("wb") as log:
        process = HubProcess(settings, env=env, log=log)
        try:
            process.start(timeout=120)
        except Exception as err:
            pytest.fail(
                f"hub did not start: {err}\n{log_path.read_text(errors='replace')[-4000:]}", pytrace=False
            )
        live = LiveHub(settings=settings, env=env, process=process, log_path=log_path)
        try:
            yield live
        finally:
            for u in live.users:
                u.close()
            process.stop()


def copy_data(prepared: Path, target_parent: Path, name: str) -> Path:
    target = target_parent / name
    shutil.copytree(prepared, target, ignore=shutil.ignore_patterns("hub", "homes"))
    return target


def traversable_tempdir(prefix: str) -> Path:
    """A temp folder other Unix users can traverse (pytest's own tmp is 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path

"""Start and stop the hub (with its proxy, gateway and user servers) as one unit.

Used by ``sandbox demo`` and by the e2e test fixtures. ``jupyterhub -f
jupyterhub_config.py`` starts configurable-http-proxy and the gateway service, and
spawns users' servers; on SIGTERM it stops them all. Two things can still leave
processes behind (JUPYTERHUB-NOTES §6): a hub that dies during start-up leaves the
proxy running, and a hub killed hard leaves everything. :meth:`HubProcess.stop`
therefore also remembers every descendant of the hub and ends whatever is still
alive after the hub has gone, and always checks the proxy's pid file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import psutil

from sandbox.config import REPO_ROOT
from sandbox.errors import ConfigError
from sandbox.hub.settings import HubSettings

CONFIG_FILE = REPO_ROOT / "jupyterhub_config.py"


class HubStartFailed(ConfigError):
    code = "hub_start_failed"
    default_hint = "Read the hub log printed above; a port in use or a missing proxy are the usual causes."


_PR_SET_PDEATHSIG = 1


def _prepare_child() -> None:  # pragma: no cover - runs in the child, between fork and exec
    # A background job of a non-interactive shell inherits SIGINT=ignored; JupyterHub stops
    # services and servers with SIGINT first, so make sure the whole tree can receive it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # If the launcher dies without stopping the hub (SIGKILL), the kernel sends the hub
    # SIGTERM, and the hub stops its servers, services and proxy itself (Linux only).
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class HubProcess:
    """One running hub. ``start()`` returns once ``/hub/health`` answers 200."""

    def __init__(
        self,
        settings: HubSettings,
        *,
        env: Mapping[str, str] | None = None,
        config_file: Path = CONFIG_FILE,
        log: IO[bytes] | IO[str] | int | None = None,
    ) -> None:
        self.settings = settings
        self.env = dict(os.environ if env is None else env)
        self.config_file = config_file
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._known: dict[int, float] = {}  # descendant pid -> create_time

    @property
    def health_url(self) -> str:
        return f"{self.settings.public_url}hub/health"

    def start(self, timeout: float = 90.0) -> None:
        jupyterhub = self.settings.venv_bin / "jupyterhub"
        self.proc = subprocess.Popen(
            [str(jupyterhub), "-f", str(self.config_file)],
            env=self.env,
            cwd=str(REPO_ROOT),
            stdout=self.log,
            stderr=subprocess.STDOUT if self.log is not None else None,
            start_new_session=True,
            preexec_fn=_prepare_child,
        )
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise HubStartFailed(f"JupyterHub exited during start-up (exit {self.proc.returncode}).")
            self.remember_descendants()
            try:
                with urllib.request.urlopen(self.health_url, timeout=2) as resp:  # noqa: S310 (loopback)
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass  # 404 for about a second while the hub adds its routes; refused before that
            time.sleep(0.25)
        self.stop()
        raise HubStartFailed(f"JupyterHub did not answer {self.health_url} within {timeout:.0f}s.")

    def remember_descendants(self) -> None:
        """Record the hub's children (proxy, gateway, user servers, kernels) for :meth:`stop`."""
        if self.proc is None:
            return
        try:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self._known.setdefault(child.pid, child.create_time())
        except psutil.NoSuchProcess:
            pass

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 45.0) -> None:
        """SIGTERM the hub (it stops its servers, services and proxy), then end any leftover."""
        if self.proc is None:
            return
        self.remember_descendants()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._end_leftovers()

    def _end_leftovers(self) -> None:
        leftovers: list[psutil.Process] = []
        for pid, created in self._known.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    leftovers.append(proc)
            except psutil.NoSuchProcess:
                continue
        pid_file = self.settings.proxy_pid_file
        try:
            proxy_pid = int(pid_file.read_text().strip())
            proxy = psutil.Process(proxy_pid)
            if "configurable-http-proxy" in " ".join(proxy.cmdline()) and proxy not in leftovers:
                leftovers.append(proxy)
        except (FileNotFoundError, ValueError, psutil.NoSuchProcess, psutil.AccessDenied):
            pass
        for proc in leftovers:
            try:
                proc.terminate()
            except psutil.NoSuchProcess:
                continue
        _, still = psutil.wait_procs(leftovers, timeout=5)
        for proc in still:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                continue
        psutil.wait_procs(still, timeout=5)
        pid_file.unlink(missing_ok=True)

    def __enter__(self) -> HubProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

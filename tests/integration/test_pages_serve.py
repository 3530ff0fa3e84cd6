"""``sandbox gateway serve --pages-port``: two listeners in one process, as the hub starts it.

The hub is not running (its API URL points at a closed port): the pages still serve the
public disclosure list, send a browser to the hub's OAuth authorize URL, and have no API
path; the API listener still answers ``health`` and refuses tokens it cannot check. SIGTERM
(the hub stops services with SIGINT, then SIGTERM) stops both listeners and the process
exits 0.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sandbox.access.demo import seed_demo
from sandbox.config import REPO_ROOT, Settings
from sandbox.control.db import make_engine, migrate, session_scope
from sandbox.hub.services import gateway_command, gateway_service
from sandbox.hub.settings import HubSettings
from sandbox.policy.loader import load_policies

PREFIX = "/services/sandbox/"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"gateway exited with {proc.returncode}: {out}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {timeout:.0f} s")


def test_hub_service_routes_the_pages_listener_and_never_the_api_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("SANDBOX_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("SANDBOX_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SANDBOX_PORT", "18000")
    settings = HubSettings(sandbox=Settings(data_dir=tmp_path), state_dir=tmp_path / "hub")
    assert (settings.gateway_port, settings.pages_port) == (18090, 18091)
    service = gateway_service(settings)
    assert service["url"] == "http://127.0.0.1:18091"
    assert str(settings.gateway_port) not in service["url"]
    command = gateway_command(settings)
    assert command[-4:] == ["--port", "18090", "--pages-port", "18091"]


def test_serve_runs_the_api_and_the_pages_on_two_ports_and_stops_on_sigterm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'control.sqlite'}"
    migrate(url)
    engine = make_engine(url)
    with session_scope(engine, immediate=True) as session:
        seed_demo(session, load_policies(REPO_ROOT / "policies"), password="serve-test-password")
    engine.dispose()
    api_port, pages_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "SANDBOX_"))} | {
        "SANDBOX_DATA_DIR": str(tmp_path),
        "SANDBOX_POLICY_DIR": str(REPO_ROOT / "policies"),
        "JUPYTERHUB_SERVICE_NAME": "sandbox",
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{pages_port}",  # what the hub sets: the service url
        "JUPYTERHUB_SERVICE_PREFIX": PREFIX,
        "JUPYTERHUB_API_URL": f"http://127.0.0.1:{_free_port()}/hub/api",
        "JUPYTERHUB_API_TOKEN": "gateway-service-token-for-test",
        "JUPYTERHUB_CLIENT_ID": "service-sandbox",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{PREFIX}oauth_callback",
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": '["access:services!service=sandbox"]',
    }
    command = [sys.executable, "-m", "sandbox.cli.main", "gateway", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(api_port), "--pages-port", str(pages_port), "--log-level", "warning"]
    proc = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    api = f"http://127.0.0.1:{api_port}{PREFIX}api/v1/"
    pages = f"http://127.0.0.1:{pages_port}{PREFIX}"
    try:
        _wait(api + "health", proc)
        _wait(pages + "disclosures", proc)
        assert httpx.get(api + "health", timeout=10).json() == {"status": "ok"}
        assert httpx.get(api + "catalog", headers={"Authorization": "token t"}, timeout=30).status_code == 503

        public = httpx.get(pages + "disclosures", timeout=10)
        assert public.status_code == 200 and "Disclosure list" in public.text
        for path in ("api/v1/health", "api/v1/catalog", "api/v1/openapi.json"):
            response = httpx.get(pages + path, timeout=10)
            assert response.status_code == 404 and response.headers["content-type"].startswith("text/html")
        login = httpx.get(pages + "exports", timeout=10)
        assert login.status_code == 302
        location = login.headers["location"]
        assert location.startswith("/hub/api/oauth2/authorize?") and "client_id=service-sandbox" in location
        assert "code_challenge=" in location and "state=" in location
        assert "gateway-service-token-for-test" not in location
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            pytest.fail("gateway did not stop within 30 s of SIGTERM")
        finally:
            if proc.stdout is not None:
                proc.stdout.close()
    assert code == 0

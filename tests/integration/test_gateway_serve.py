"""``sandbox gateway serve`` as the hub starts it: address from JUPYTERHUB_SERVICE_URL, prefix from
JUPYTERHUB_SERVICE_PREFIX, HubAuth configured from the service environment.

The hub itself is not running here (its API URL points at a closed port), so callers' tokens
cannot be checked: the gateway must answer ``hub_unavailable`` (503), never accept them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox.cli.gateway_cmd import DEFAULT_HOST, DEFAULT_PORT, listen_address
from sandbox.config import REPO_ROOT


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_listen_address_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUPYTERHUB_SERVICE_URL", raising=False)
    assert listen_address(None, None) == (DEFAULT_HOST, DEFAULT_PORT)


def test_listen_address_from_the_service_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10191/services/sandbox/")
    assert listen_address(None, None) == ("127.0.0.1", 10191)
    assert listen_address("0.0.0.0", 9000) == ("0.0.0.0", 9000)  # flags win


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "SANDBOX_"))} | {
        "SANDBOX_DATA_DIR": str(tmp_path),
        "SANDBOX_POLICY_DIR": str(REPO_ROOT / "policies"),
        "JUPYTERHUB_SERVICE_NAME": "sandbox",
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}/services/sandbox/",
        "JUPYTERHUB_SERVICE_PREFIX": "/services/sandbox/",
        "JUPYTERHUB_API_URL": f"http://127.0.0.1:{_free_port()}/hub/api",
        "JUPYTERHUB_API_TOKEN": "gateway-service-token-for-test",
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": '["access:services!service=sandbox"]',
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.cli.main", "gateway", "serve", "--log-level", "warning"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}/services/sandbox/api/v1/"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read() if proc.stdout else ""
                pytest.fail(f"gateway exited with {proc.returncode}: {out}")
            try:
                if httpx.get(base + "health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("gateway did not answer /health within 60 s")
            time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        if proc.stdout is not None:
            proc.stdout.close()


def test_serve_binds_the_service_url_and_checks_tokens_with_the_hub(
    served: tuple[str, subprocess.Popen[str]],
) -> None:
    base, _ = served
    spec = httpx.get(base + "openapi.json", timeout=10).json()
    assert "/services/sandbox/api/v1/query" in spec["paths"]
    response = httpx.get(base + "catalog", headers={"Authorization": "token caller-token-xyz"}, timeout=30)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "hub_unavailable"
    assert "caller-token-xyz" not in response.text
    assert "gateway-service-token-for-test" not in response.text
    missing = httpx.get(base + "catalog", timeout=10)
    assert missing.status_code == 401


def test_serve_refuses_to_start_without_a_hub_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "SANDBOX_"))} | {
        "SANDBOX_DATA_DIR": str(tmp_path),
        "SANDBOX_POLICY_DIR": str(REPO_ROOT / "policies"),
        "JUPYTERHUB_SERVICE_NAME": "sandbox",
    }
    out = subprocess.run(
        [sys.executable, "-m", "sandbox.cli.main", "gateway", "serve", "--port", str(_free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "config_error" in out.stderr

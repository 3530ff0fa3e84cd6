"""The idle culler against a real hub: an idle server (and its kernel) is stopped, an active one is not.

The hub runs with ``SANDBOX_IDLE_TIMEOUT=10`` and ``SANDBOX_CULL_EVERY=2``, so activity is
reported every 3 s (a third of the timeout). The culler's token is the one the hub handed to
the running ``jupyterhub_idle_culler`` process (read from its environment: the tests run as
the hub's user); what it may do is checked through the hub's REST API.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from e2e.livehub import LiveHub, copy_data, running_hub
from support import require

from sandbox.hub.culler import CULLER_SCOPES, CULLER_SERVICE_NAME

pytestmark = [pytest.mark.hub, pytest.mark.slow]

IDLE_TIMEOUT = 10
CULL_EVERY = 2


@pytest.fixture(scope="module")
def culling_hub(prepared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    require(
        importlib.util.find_spec("jupyterhub_idle_culler") is not None,
        "jupyterhub-idle-culler is not installed in this venv (make bootstrap)",
    )
    data = copy_data(prepared_data_dir, tmp_path_factory.mktemp("culler-hub"), "data")
    with running_hub(
        "culler",
        data,
        "demo",
        SANDBOX_IDLE_TIMEOUT=str(IDLE_TIMEOUT),
        SANDBOX_CULL_EVERY=str(CULL_EVERY),
    ) as hub:
        yield hub


def _culler_process(hub: LiveHub) -> psutil.Process:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for proc in psutil.Process(hub.process.proc.pid).children(recursive=True):
            try:
                if "jupyterhub_idle_culler" in proc.cmdline():
                    return proc
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.5)
    raise AssertionError(f"no jupyterhub_idle_culler process under the hub\n{hub.log_tail()}")


def _server(hub: LiveHub, name: str) -> dict[str, object] | None:
    r = hub.hub_api("GET", f"users/{name}")
    r.raise_for_status()
    servers: dict[str, dict[str, object]] = r.json().get("servers") or {}
    return servers.get("")


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if psutil.pid_exists(pid) and _not_zombie(pid)]
        time.sleep(0.25)
    return alive


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_the_culler_runs_with_the_configured_timeout(culling_hub: LiveHub) -> None:
    cmdline = _culler_process(culling_hub).cmdline()
    assert f"--timeout={IDLE_TIMEOUT}" in cmdline
    assert f"--cull-every={CULL_EVERY}" in cmdline
    assert "--cull-users=False" in cmdline
    assert not any(part.startswith("--max-age") for part in cmdline)


def test_the_culler_token_holds_its_role_and_nothing_more(culling_hub: LiveHub) -> None:
    culling_hub.user("bob").login()  # bob now exists at the hub
    token = _culler_process(culling_hub).environ()["JUPYTERHUB_API_TOKEN"]
    api = httpx.Client(
        base_url=f"{culling_hub.url}hub/api/", headers={"Authorization": f"token {token}"}, timeout=30
    )
    with api:
        me = api.get("user")
        assert me.status_code == 200, me.text
        model = me.json()
        assert (model["kind"], model["name"]) == ("service", CULLER_SERVICE_NAME)
        # The role's scopes as the running hub resolved them (read:users:name is implied by
        # list:users and read:servers), and nothing from any other role.
        assert set(model["scopes"]) == {*CULLER_SCOPES, "read:users:name"}
        assert model["admin"] is False
        # What it needs: the users with a ready server, their servers and activity.
        assert api.get("users", params={"state": "ready"}).status_code == 200
        assert "servers" in api.get("users/bob").json()
        # Everything else is refused.
        refused = {
            "mint a token for bob": api.post("users/bob/tokens", json={"note": "x"}),
            "list bob's tokens": api.get("users/bob/tokens"),
            "start bob's server": api.post("users/bob/server"),
            "delete bob": api.delete("users/bob"),
            "make a user": api.post("users/mallory"),
            "read the proxy's routes": api.get("proxy"),
            "read the services": api.get("services"),
            "shut the hub down": api.post("shutdown"),
        }
        assert {what: r.status_code for what, r in refused.items()} == dict.fromkeys(refused, 403)
    # Nor does the gateway answer it (no access:services!service=sandbox).
    with culling_hub.gateway(token) as gw:
        assert gw.get("catalog").status_code in (401, 403)


def test_an_idle_server_and_its_kernel_are_stopped_an_active_one_is_not(culling_hub: LiveHub) -> None:
    alice = culling_hub.signed_in("alice")
    kernel_id = alice.start_kernel()
    pids = alice.execute(kernel_id, "import os; print(os.getpid(), os.getppid())").stdout.split()
    kernel_pid, server_pid = int(pids[0]), int(pids[1])
    assert psutil.Process(server_pid).username() == psutil.Process().username()  # demo: the hub's user

    # Busy for longer than the timeout: the server is kept.
    busy_until = time.monotonic() + IDLE_TIMEOUT + 2 * CULL_EVERY
    while time.monotonic() < busy_until:
        assert alice.execute(kernel_id, "print(1)").stdout.strip() == "1"
        time.sleep(1)
    assert _server(culling_hub, "alice") is not None, culling_hub.log_tail()
    last_activity = time.monotonic()

    # Idle: stopped after the timeout (plus up to one check and one activity report).
    deadline = last_activity + 60
    while _server(culling_hub, "alice") is not None:
        assert time.monotonic() < deadline, f"alice's idle server still runs\n{culling_hub.log_tail()}"
        time.sleep(0.5)
    idle_for = time.monotonic() - last_activity
    assert idle_for >= IDLE_TIMEOUT - 1, idle_for
    assert _wait_gone([server_pid, kernel_pid], timeout=15) == []
    assert "Culling server alice" in culling_hub.log_path.read_text(errors="replace")
    # The user is kept: accounts belong to the registry.
    assert culling_hub.hub_api("GET", "users/alice").status_code == 200

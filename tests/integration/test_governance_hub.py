"""Sanctions against a real JupyterHub: confirming a violation (here from the operator's shell)
stops the user's running server and deletes their tokens through the hub API (``sandbox-ops``
token; ``sandbox.hub.hubapi.close_access``) and the gateway refuses the user's token at once.
The same confirmation made in the pages, by the gateway process with its own token, is
``tests/e2e/test_governance_browser.py``. Marked ``hub``: it starts JupyterHub, the proxy and the gateway
(``tests/e2e/livehub.py``), so it skips locally without them and fails under ``CI=true``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.livehub import LiveHub, copy_data, prepared_data, running_hub

from sandbox.governance import sanctions
from sandbox.governance.sanctions import HttpxServerStopper, SanctionServices
from sandbox.services.queries import ServiceContext

pytestmark = [pytest.mark.hub, pytest.mark.slow]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    prepared = prepared_data(tmp_path_factory.mktemp("gov-hub-prep"))
    data = copy_data(prepared, tmp_path_factory.mktemp("gov-hub"), "data")
    with running_hub("governance", data, "demo") as live:
        yield live


def _server_state(hub: LiveHub, name: str) -> dict[str, object]:
    response = hub.hub_api("GET", f"users/{name}")
    response.raise_for_status()
    servers = response.json().get("servers") or {}
    return dict(servers.get("", {}))


def test_confirmation_stops_the_running_server_and_refuses_the_token(
    hub: LiveHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frank = hub.signed_in("frank")
    assert _server_state(hub, "frank").get("ready")
    token = hub.user_token("frank")
    with hub.gateway(token) as gateway:
        assert gateway.get("whoami").status_code == 200

    ctx = ServiceContext.from_settings(hub.settings.sandbox)
    try:
        # As the operator's shell on the hub host: the sandbox-ops token is found by itself.
        for key, value in hub.env.items():
            if key.startswith("SANDBOX_"):
                monkeypatch.setenv(key, value)
        for key in ("JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN", "SANDBOX_HUB_STOP_TOKEN_FILE"):
            monkeypatch.delenv(key, raising=False)
        services = SanctionServices.default(ctx)
        assert isinstance(services.stopper, HttpxServerStopper)
        case = sanctions.report(
            ctx, reporter="alice", subject="frank", description="Queried outside the agreed scenario."
        )
        confirmed = sanctions.confirm(
            ctx,
            actor="admin",
            violation_id=case.id,
            reason="Confirmed from the query log.",
            services=services,
        )
    finally:
        ctx.close()
    assert confirmed.actions is not None
    assert confirmed.actions["servers"]["status"] in ("stopped", "stop_pending"), confirmed.actions
    assert confirmed.actions["servers"]["via"] == sanctions.VIA_OPS
    assert confirmed.actions["servers"]["tokens_deleted"] >= 1  # the server's and the minted one

    deadline = time.monotonic() + 60
    while _server_state(hub, "frank") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _server_state(hub, "frank"), "the hub still lists frank's server"
    with hub.gateway(token) as gateway:
        refused = gateway.get("whoami")
    # Revoked in the registry (403 account_inactive) and deleted at the hub: once the gateway's
    # 10 s cache of the hub's answer expires, the token is unknown (401 authentication_failed).
    assert refused.status_code in (401, 403), refused.text
    assert refused.json()["error"]["code"] in ("account_inactive", "authentication_failed")
    assert hub.hub_api("GET", "users/frank/tokens").json()["api_tokens"] == []
    frank.close()

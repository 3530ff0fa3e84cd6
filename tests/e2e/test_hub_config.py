"""The hub wiring as configuration (fast: no hub is started).

The behaviour itself is proven against a running hub in ``test_hub_demo.py`` and
``test_hub_isolated.py``; these pin the settings that make it so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from traitlets.config import Config

from sandbox.errors import ConfigError
from sandbox.hub import lockdown
from sandbox.hub.authenticator import GATEWAY_ROLES, SandboxAuthenticator
from sandbox.hub.config import configure
from sandbox.hub.registry_bridge import Account
from sandbox.hub.settings import ACCESS_SCOPE, load_hub_settings


@pytest.fixture
def hub_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Config, object]:
    for key in (
        "SANDBOX_HUB_MODE",
        "SANDBOX_HUB_STATE_DIR",
        "SANDBOX_WAREHOUSE_URL",
        "SANDBOX_CONTROL_DB_URL",
        "SANDBOX_IDLE_TIMEOUT",
        "SANDBOX_CULL_EVERY",
        "SANDBOX_SERVER_MAX_AGE",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SANDBOX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SANDBOX_PORT", "18555")
    monkeypatch.setenv("SANDBOX_WAREHOUSE_URL", "postgresql+psycopg://gw:s3cret@db.internal/warehouse")
    monkeypatch.setattr(lockdown, "install", lambda prefix=None: [])  # do not touch the venv here
    c = Config()
    umask = os.umask(0o022)
    try:
        settings = configure(c)  # sets the hub process's umask to 077
    finally:
        os.umask(umask)
    return c, settings


def test_api_listener_is_never_a_proxy_target(hub_config: tuple[Config, object]) -> None:
    c, settings = hub_config
    gateway = next(s for s in c.JupyterHub.services if s["name"] == "sandbox")
    assert f":{settings.gateway_port}" not in gateway.get("url", "")
    assert "--port" in gateway["command"]
    assert str(settings.gateway_port) in gateway["command"]
    assert not any("s3cret" in part for part in gateway["command"])  # secrets never on argv (ps)
    assert gateway["environment"]["SANDBOX_WAREHOUSE_URL"].endswith("@db.internal/warehouse")


def test_kernels_get_the_gateway_scope_and_no_server_settings(hub_config: tuple[Config, object]) -> None:
    c, settings = hub_config
    assert ACCESS_SCOPE in c.Spawner.server_token_scopes
    env = c.Spawner.environment
    assert {k for k in env if k.startswith("SANDBOX_")} == {"SANDBOX_GATEWAY_URL", "SANDBOX_HUB_MODE"}
    assert env["SANDBOX_GATEWAY_URL"] == f"http://127.0.0.1:{settings.gateway_port}/services/sandbox/"
    assert not any(k.startswith("SANDBOX_") for k in c.Spawner.env_keep)
    assert "PYTHONPATH" not in c.Spawner.env_keep
    assert c.Spawner.disable_user_config is True


def test_users_cannot_mint_tokens_and_state_is_private(hub_config: tuple[Config, object]) -> None:
    c, settings = hub_config
    user_role = next(r for r in c.JupyterHub.load_roles if r["name"] == "user")
    assert not any(scope.startswith("tokens") for scope in user_role["scopes"])
    assert settings.state_dir.stat().st_mode & 0o777 == 0o700
    assert c.JupyterHub.db_url == f"sqlite:///{settings.state_dir / 'jupyterhub.sqlite'}"


def test_every_registry_role_may_sign_in_to_the_pages_and_none_mints_tokens() -> None:
    from sandbox.control.models import UserRole

    assert {r.value for r in UserRole} == GATEWAY_ROLES
    auth = SandboxAuthenticator()
    for role in GATEWAY_ROLES:
        roles = auth.roles_for(Account(name="x", role=role, status="approved", projects=()))
        scopes = [scope for r in roles for scope in r["scopes"]]
        assert ACCESS_SCOPE in scopes, role  # hub OAuth of the pages asks for it
        assert not any(s.startswith("tokens") or s in ("access:servers", "admin:users") for s in scopes), role
        assert ("admin:servers" in scopes) == (role == "admin"), role


def test_the_gateway_service_may_close_access_and_nothing_more(hub_config: tuple[Config, object]) -> None:
    from sandbox.hub.services import GATEWAY_SERVICE_SCOPES

    c, _ = hub_config
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    gateway = roles["sandbox-gateway"]
    assert gateway["services"] == ["sandbox"]
    assert sorted(gateway["scopes"]) == sorted(GATEWAY_SERVICE_SCOPES)
    assert sorted(GATEWAY_SERVICE_SCOPES) == ["admin:servers", "read:users", "tokens"]
    assert roles["sandbox-ops"]["services"] == ["sandbox-ops"]
    others = [r for name, r in roles.items() if name != "sandbox-gateway"]
    assert not any("sandbox" in r.get("services", []) for r in others)
    # The gateway holds its own token (from the hub), never the ops token file's path.
    service = next(s for s in c.JupyterHub.services if s["name"] == "sandbox")
    assert "SANDBOX_HUB_STOP_TOKEN_FILE" not in service["environment"]
    assert service["environment"]["JUPYTERHUB_SERVICE_NAME"] == "sandbox"


def test_the_idle_culler_is_a_managed_service_with_a_narrow_role_of_its_own(
    hub_config: tuple[Config, object],
) -> None:
    c, _ = hub_config
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert set(services) == {"sandbox", "sandbox-ops", "sandbox-idle-culler"}
    cull = services["sandbox-idle-culler"]
    assert cull["command"][1:5] == ["-m", "jupyterhub_idle_culler", "--timeout=3600", "--cull-every=300"]
    assert not {"url", "api_token", "user", "environment"} & set(cull)  # no route; token from the hub
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert roles["sandbox-idle-culler"]["services"] == ["sandbox-idle-culler"]
    assert roles["sandbox-idle-culler"]["scopes"] == [
        "list:users",
        "read:users:activity",
        "read:servers",
        "delete:servers",
    ]
    others = [r for name, r in roles.items() if name != "sandbox-idle-culler"]
    assert not any("sandbox-idle-culler" in r.get("services", []) for r in others)
    # An hour's timeout: JupyterHub's 5-minute activity clocks are fine.
    assert c.JupyterHub.last_activity_interval == 300
    assert "JUPYTERHUB_ACTIVITY_INTERVAL" not in c.Spawner.environment


def test_a_zero_timeout_leaves_no_culler_at_the_hub(
    hub_config: tuple[Config, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_IDLE_TIMEOUT", "0")
    c = Config()
    umask = os.umask(0o022)
    try:
        configure(c)
    finally:
        os.umask(umask)
    assert [s["name"] for s in c.JupyterHub.services] == ["sandbox", "sandbox-ops"]
    assert "sandbox-idle-culler" not in {r["name"] for r in c.JupyterHub.load_roles}
    assert c.JupyterHub.last_activity_interval == 300


def test_a_short_timeout_brings_activity_to_the_hub_in_time(
    hub_config: tuple[Config, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_IDLE_TIMEOUT", "600")
    c = Config()
    umask = os.umask(0o022)
    try:
        configure(c)
    finally:
        os.umask(umask)
    assert c.JupyterHub.last_activity_interval == 200
    assert c.Spawner.environment["JUPYTERHUB_ACTIVITY_INTERVAL"] == "200"


def test_demo_mode_is_the_default_and_is_labelled(hub_config: tuple[Config, object]) -> None:
    c, settings = hub_config
    assert settings.mode.value == "demo"
    assert c.JupyterHub.spawner_class == "sandbox.hub.spawners.DemoSpawner"
    assert "not isolated" in c.JupyterHub.template_vars["announcement"]


def test_unknown_mode_and_colliding_ports_are_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_HUB_MODE", "kubernetes-please")
    with pytest.raises(ConfigError, match="SANDBOX_HUB_MODE"):
        load_hub_settings()
    monkeypatch.setenv("SANDBOX_HUB_MODE", "demo")
    monkeypatch.setenv("SANDBOX_PORT", "9000")
    monkeypatch.setenv("SANDBOX_GATEWAY_PORT", "9000")
    with pytest.raises(ConfigError, match="collide"):
        load_hub_settings()


def test_lockdown_files_are_written_once_and_merged(tmp_path: Path) -> None:
    page_config = lockdown.system_paths(tmp_path)["page_config"]
    page_config.parent.mkdir(parents=True)
    page_config.write_text(json.dumps({"disabledExtensions": {"some-other:plugin": True}}))
    assert len(lockdown.install(tmp_path)) == 3
    assert lockdown.install(tmp_path) == []  # idempotent
    merged = json.loads(page_config.read_text())["disabledExtensions"]
    assert merged["some-other:plugin"] is True
    assert merged["@jupyterlab/docmanager-extension:download"] is True
    assert lockdown.is_installed(tmp_path)


def test_lockdown_refuses_to_overwrite_a_foreign_server_config(tmp_path: Path) -> None:
    server_config = lockdown.system_paths(tmp_path)["server_config"]
    server_config.parent.mkdir(parents=True)
    server_config.write_text("c.ServerApp.ip = '0.0.0.0'\n")
    with pytest.raises(ConfigError, match="not written by the sandbox"):
        lockdown.install(tmp_path)


def test_server_lockdown_applies_only_the_sandbox_settings() -> None:
    c = Config()
    lockdown.apply_server_lockdown(c, env={"SANDBOX_HUB_MODE": "demo"})
    assert c.ServerApp.terminals_enabled is False
    assert c.ServerApp.authorizer_class == "sandbox.hub.authorizer.SandboxAuthorizer"
    assert c.LabApp.custom_css is True
    css = Path(c.ServerApp.tornado_settings["static_custom_path"][0]) / "custom.css"
    assert "not isolated — for trying it out" in css.read_text()
    isolated = Config()
    lockdown.apply_server_lockdown(isolated, env={"SANDBOX_HUB_MODE": "isolated"})
    assert "custom_css" not in isolated.LabApp

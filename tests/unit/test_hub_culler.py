"""The idle culler: settings, service entry and role (no hub started).

The real hub is in tests/e2e/test_hub_culler_live.py."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest

from sandbox.errors import ConfigError
from sandbox.hub import culler
from sandbox.hub.config import kernel_environment
from sandbox.hub.settings import HubMode, HubSettings, default_cull_every, load_hub_settings

ROOT = Path(__file__).resolve().parents[2]
_CULLER_ENV = ("SANDBOX_IDLE_TIMEOUT", "SANDBOX_CULL_EVERY", "SANDBOX_SERVER_MAX_AGE", "SANDBOX_CULLER_USER")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in (*_CULLER_ENV, "SANDBOX_HUB_MODE", "SANDBOX_PORT", "SANDBOX_GATEWAY_USER"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SANDBOX_DATA_DIR", str(tmp_path / "data"))


def test_by_default_idle_servers_are_stopped_after_an_hour_checked_every_five_minutes() -> None:
    settings = load_hub_settings()
    assert (settings.idle_timeout, settings.cull_every, settings.server_max_age) == (3600, 300, 0)
    [service] = culler.culler_services(settings)
    assert service == {
        "name": "sandbox-idle-culler",
        "display": False,
        "command": [
            settings.python,
            "-m",
            "jupyterhub_idle_culler",
            "--timeout=3600",
            "--cull-every=300",
            "--cull-users=False",
            "--remove-named-servers=False",
            "--config=",
        ],
        "cwd": "/",
    }  # no url (no proxy route, no OAuth client), no api_token (the hub makes one), no user in demo


def test_the_role_holds_exactly_the_scopes_to_find_and_stop_idle_servers() -> None:
    [role] = culler.culler_roles(load_hub_settings())
    assert role["name"] == "sandbox-idle-culler"
    assert role["services"] == ["sandbox-idle-culler"]
    assert role["scopes"] == ["list:users", "read:users:activity", "read:servers", "delete:servers"]
    assert "admin:users" not in role["scopes"]  # users belong to the registry: never culled


def test_the_scopes_are_the_ones_the_package_documents_and_the_hub_knows() -> None:
    from jupyterhub.scopes import scope_definitions

    readme = importlib.metadata.metadata("jupyterhub-idle-culler").get_payload()
    section = readme.split("requires the following scopes", 1)[1].split("To assign", 1)[0]
    bullets = re.findall(r"^- `([a-z:]+)`(.*)$", section, flags=re.MULTILINE)
    required = {scope for scope, text in bullets if "optional" not in text}
    optional = {scope for scope, text in bullets if "optional" in text}
    assert required == set(culler.CULLER_SCOPES)
    assert optional == {"admin:users"}  # only for --cull-users, which we do not pass
    assert all(scope in scope_definitions for scope in culler.CULLER_SCOPES)


def test_the_command_line_is_understood_by_the_installed_culler() -> None:
    from jupyterhub_idle_culler import IdleCuller

    settings = HubSettings(idle_timeout=600, cull_every=60, server_max_age=86400)
    app = IdleCuller()
    app.parse_command_line(culler.culler_command(settings)[3:])
    assert (app.timeout, app.cull_every, app.max_age) == (600, 60, 86400)
    assert (app.cull_users, app.remove_named_servers) == (False, False)
    assert app.config_file == ""  # nothing loaded from the working directory


def test_max_age_is_passed_only_when_set() -> None:
    assert not any(a.startswith("--max-age") for a in culler.culler_command(HubSettings()))
    assert "--max-age=28800" in culler.culler_command(HubSettings(server_max_age=28800))


def test_timeout_zero_turns_the_culler_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_IDLE_TIMEOUT", "0")
    settings = load_hub_settings()
    assert culler.culler_services(settings) == []
    assert culler.culler_roles(settings) == []
    assert culler.activity_interval(settings) == 300
    assert "JUPYTERHUB_ACTIVITY_INTERVAL" not in kernel_environment(settings)


@pytest.mark.parametrize(
    ("timeout", "every"), [(3600, 300), (600, 300), (599, 299), (10, 5), (6, 3), (1, 1), (0, 1)]
)
def test_cull_every_defaults_to_five_minutes_or_half_a_shorter_timeout(timeout: int, every: int) -> None:
    assert default_cull_every(timeout) == every


def test_cull_every_and_max_age_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_IDLE_TIMEOUT", "6")
    monkeypatch.setenv("SANDBOX_CULL_EVERY", "2")
    monkeypatch.setenv("SANDBOX_SERVER_MAX_AGE", "43200")
    settings = load_hub_settings()
    assert (settings.idle_timeout, settings.cull_every, settings.server_max_age) == (6, 2, 43200)
    monkeypatch.delenv("SANDBOX_CULL_EVERY")
    assert load_hub_settings().cull_every == 3


@pytest.mark.parametrize(
    ("timeout", "interval"), [(3600, 300), (900, 300), (600, 200), (300, 100), (10, 3), (2, 1)]
)
def test_activity_is_reported_at_least_three_times_per_timeout(timeout: int, interval: int) -> None:
    settings = HubSettings(idle_timeout=timeout)
    assert culler.activity_interval(settings) == interval
    env = kernel_environment(settings)
    if interval == 300:
        assert "JUPYTERHUB_ACTIVITY_INTERVAL" not in env  # JupyterHub's default
    else:
        assert env["JUPYTERHUB_ACTIVITY_INTERVAL"] == str(interval)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SANDBOX_IDLE_TIMEOUT": "1h"}, "SANDBOX_IDLE_TIMEOUT='1h' is not a number of seconds"),
        ({"SANDBOX_IDLE_TIMEOUT": "-1"}, "SANDBOX_IDLE_TIMEOUT=-1 is below the minimum of 0 s"),
        ({"SANDBOX_CULL_EVERY": "0"}, "SANDBOX_CULL_EVERY=0 is below the minimum of 1 s"),
        ({"SANDBOX_CULL_EVERY": "2.5"}, "SANDBOX_CULL_EVERY='2.5' is not a number of seconds"),
        ({"SANDBOX_SERVER_MAX_AGE": "-3"}, "SANDBOX_SERVER_MAX_AGE=-3 is below"),
        (
            {"SANDBOX_IDLE_TIMEOUT": "600", "SANDBOX_CULL_EVERY": "900"},
            "SANDBOX_CULL_EVERY=900 is longer than SANDBOX_IDLE_TIMEOUT=600",
        ),
        (
            {"SANDBOX_IDLE_TIMEOUT": "0", "SANDBOX_SERVER_MAX_AGE": "3600"},
            "SANDBOX_SERVER_MAX_AGE=3600 needs the culler",
        ),
    ],
)
def test_bad_values_are_config_errors_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=re.escape(named)) as err:
        load_hub_settings()
    assert err.value.hint


def test_isolated_the_culler_runs_as_its_own_account() -> None:
    settings = HubSettings(mode=HubMode.ISOLATED)
    [service] = culler.culler_services(settings)
    assert service["user"] == "sandboxcull" != settings.gateway_user


@pytest.mark.parametrize("name", ["root", "sandboxgw", "sb-alice", ""])
def test_isolated_the_culler_never_runs_as_root_the_gateway_or_a_researcher(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("SANDBOX_HUB_MODE", "isolated")
    monkeypatch.setenv("SANDBOX_CULLER_USER", name)
    with pytest.raises(ConfigError, match="SANDBOX_CULLER_USER"):
        load_hub_settings()
    monkeypatch.setenv("SANDBOX_IDLE_TIMEOUT", "0")  # no culler, no account to check
    assert load_hub_settings().idle_timeout == 0


def test_every_hub_setting_is_documented() -> None:
    source = (ROOT / "sandbox" / "hub" / "settings.py").read_text(encoding="utf-8")
    names = set(re.findall(r'"(SANDBOX_[A-Z_]+)"', source))
    assert set(_CULLER_ENV) <= names
    docstring = source.split('"""', 2)[1]
    hub_md = (ROOT / "docs" / "hub.md").read_text(encoding="utf-8")
    assert {n for n in names if f"``{n}``" not in docstring} == set()
    assert {n for n in names if f"`{n}`" not in hub_md} == set()

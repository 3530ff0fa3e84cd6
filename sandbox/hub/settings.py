"""Hub deployment settings: mode, ports, state folder, paths (env prefix ``SANDBOX_``).

Read once by ``jupyterhub_config.py`` (and by ``sandbox demo`` / the e2e fixtures,
which start the hub). Stdlib only, like the rest of ``sandbox.hub``'s light modules.

| variable | default | meaning |
| --- | --- | --- |
| ``SANDBOX_HUB_MODE`` | ``demo`` | ``demo`` (one OS user, not isolated) or ``isolated`` |
| ``SANDBOX_PORT`` | ``8000`` | public proxy port (the URL people open) |
| ``SANDBOX_HUB_BIND`` | ``127.0.0.1`` | address of the public proxy |
| ``SANDBOX_HUB_API_PORT`` | port + 81 | hub API (kernels and the gateway talk to it) |
| ``SANDBOX_PROXY_API_PORT`` | port + 1 | configurable-http-proxy's REST API |
| ``SANDBOX_GATEWAY_PORT`` | port + 90 | gateway JSON API on 127.0.0.1, never routed by the proxy |
| ``SANDBOX_PAGES_PORT`` | port + 91 | gateway pages (HTML, no API) on 127.0.0.1, routed at the prefix |
| ``SANDBOX_HUB_STATE_DIR`` | ``<data>/hub`` | hub sqlite, cookie secret, proxy pid (folder 0700) |
| ``SANDBOX_HOME_BASE`` | ``<data>/homes`` (demo) / ``/home`` (isolated) | where user homes live |
| ``SANDBOX_UNIX_USER_PREFIX`` | ``sb-`` | isolated mode: hub user ``alice`` runs as Unix user ``sb-alice`` |
| ``SANDBOX_GATEWAY_USER`` | ``sandboxgw`` | isolated: the gateway's Unix account (owns the data) |
| ``SANDBOX_CHP`` | ``<repo>/node_modules/.bin/configurable-http-proxy`` | proxy executable |
| ``SANDBOX_IDLE_TIMEOUT`` | ``3600`` | idle seconds before a user's server is stopped; ``0``: no culler |
| ``SANDBOX_CULL_EVERY`` | ``300`` or half the timeout, if shorter | seconds between the culler's checks |
| ``SANDBOX_SERVER_MAX_AGE`` | ``0`` (off) | stop servers this long after their start, even active ones |
| ``SANDBOX_CULLER_USER`` | ``sandboxcull`` | isolated: the culler's Unix account (owns nothing) |
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from sandbox.config import REPO_ROOT, Settings
from sandbox.errors import ConfigError

SERVICE_NAME = "sandbox"
"""Name of the gateway's hub service; its access scope is ``access:services!service=sandbox``."""

SERVICE_PREFIX = f"/services/{SERVICE_NAME}/"
ACCESS_SCOPE = f"access:services!service={SERVICE_NAME}"
DEMO_BANNER = "not isolated — for trying it out"


class HubMode(StrEnum):
    DEMO = "demo"
    ISOLATED = "isolated"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a port number.", hint=f"Set {name} to an integer."
        ) from None
    if not 0 < value < 65536:
        raise ConfigError(f"{name}={value} is outside 1..65535.", hint=f"Set {name} to a free TCP port.")
    return value


def _env_seconds(name: str, default: int, *, minimum: int = 0) -> int:
    """A duration in whole seconds from ``name`` (``default`` when unset or empty)."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a number of seconds.",
            hint=f"Set {name} to a whole number of seconds (default {default}).",
        ) from None
    if value < minimum:
        raise ConfigError(
            f"{name}={value} is below the minimum of {minimum} s.",
            hint=f"Set {name} to a whole number of seconds, at least {minimum}.",
        )
    return value


def default_cull_every(idle_timeout: int) -> int:
    """Every 5 minutes (the granularity of activity reports at the default timeout), or twice
    per timeout when the timeout is shorter than 10 minutes."""
    return min(300, max(1, idle_timeout // 2))


def _mode_from_env() -> HubMode:
    raw = os.environ.get("SANDBOX_HUB_MODE", HubMode.DEMO.value).strip().lower()
    try:
        return HubMode(raw)
    except ValueError:
        raise ConfigError(
            f"SANDBOX_HUB_MODE={raw!r} is not a hub mode.",
            hint="Use 'demo' (one OS user, not isolated) or 'isolated' (Unix user per researcher; root hub).",
        ) from None


def _default_chp() -> str:
    local = REPO_ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
    if local.exists():
        return str(local)
    return shutil.which("configurable-http-proxy") or str(local)


@dataclass(frozen=True)
class HubSettings:
    """Everything the hub wiring needs; built from the environment by :func:`load_hub_settings`."""

    sandbox: Settings = field(default_factory=Settings)
    mode: HubMode = field(default_factory=_mode_from_env)
    bind_ip: str = field(default_factory=lambda: os.environ.get("SANDBOX_HUB_BIND", "127.0.0.1"))
    port: int = field(default_factory=lambda: _env_int("SANDBOX_PORT", 8000))
    hub_api_port: int = 0
    proxy_api_port: int = 0
    gateway_port: int = 0
    pages_port: int = 0
    state_dir: Path = Path()
    home_base: Path = Path()
    unix_user_prefix: str = field(default_factory=lambda: os.environ.get("SANDBOX_UNIX_USER_PREFIX", "sb-"))
    gateway_user: str = field(default_factory=lambda: os.environ.get("SANDBOX_GATEWAY_USER", "sandboxgw"))
    chp_command: str = field(default_factory=lambda: os.environ.get("SANDBOX_CHP") or _default_chp())
    notebooks_dir: Path = REPO_ROOT / "notebooks"
    python: str = sys.executable
    idle_timeout: int = field(default_factory=lambda: _env_seconds("SANDBOX_IDLE_TIMEOUT", 3600))
    cull_every: int = 0  # 0: from SANDBOX_CULL_EVERY, else default_cull_every(idle_timeout)
    server_max_age: int = field(default_factory=lambda: _env_seconds("SANDBOX_SERVER_MAX_AGE", 0))
    culler_user: str = field(default_factory=lambda: os.environ.get("SANDBOX_CULLER_USER", "sandboxcull"))

    def __post_init__(self) -> None:
        # Derived defaults (frozen dataclass: set through object.__setattr__ once).
        derived = {
            "hub_api_port": _env_int("SANDBOX_HUB_API_PORT", self.port + 81),
            "proxy_api_port": _env_int("SANDBOX_PROXY_API_PORT", self.port + 1),
            "gateway_port": _env_int("SANDBOX_GATEWAY_PORT", self.port + 90),
            "pages_port": _env_int("SANDBOX_PAGES_PORT", self.port + 91),
        }
        for name, value in derived.items():
            if not getattr(self, name):
                object.__setattr__(self, name, value)
        if self.state_dir == Path():
            state = os.environ.get("SANDBOX_HUB_STATE_DIR")
            object.__setattr__(
                self, "state_dir", Path(state).resolve() if state else self.sandbox.data_dir / "hub"
            )
        if self.home_base == Path():
            base = os.environ.get("SANDBOX_HOME_BASE")
            default = self.sandbox.data_dir / "homes" if self.mode is HubMode.DEMO else Path("/home")
            object.__setattr__(self, "home_base", Path(base).resolve() if base else default)
        ports = [self.port, self.hub_api_port, self.proxy_api_port, self.gateway_port, self.pages_port]
        if len(set(ports)) != len(ports):
            raise ConfigError(
                f"Hub ports collide: public {self.port}, hub API {self.hub_api_port}, "
                f"proxy API {self.proxy_api_port}, gateway {self.gateway_port}, pages {self.pages_port}.",
                hint="Set SANDBOX_PORT (and optionally SANDBOX_HUB_API_PORT / SANDBOX_PROXY_API_PORT / "
                "SANDBOX_GATEWAY_PORT / SANDBOX_PAGES_PORT) to distinct ports.",
            )
        if not self.cull_every:
            every = _env_seconds("SANDBOX_CULL_EVERY", default_cull_every(self.idle_timeout), minimum=1)
            object.__setattr__(self, "cull_every", every)
        self._check_culler()

    def _check_culler(self) -> None:
        if not self.idle_timeout:
            if self.server_max_age:
                raise ConfigError(
                    f"SANDBOX_SERVER_MAX_AGE={self.server_max_age} needs the culler, which "
                    "SANDBOX_IDLE_TIMEOUT=0 turns off.",
                    hint="Set SANDBOX_IDLE_TIMEOUT to a number of seconds, or unset SANDBOX_SERVER_MAX_AGE.",
                )
            return
        if self.cull_every > self.idle_timeout:
            raise ConfigError(
                f"SANDBOX_CULL_EVERY={self.cull_every} is longer than SANDBOX_IDLE_TIMEOUT="
                f"{self.idle_timeout}: idle servers would run up to {self.cull_every + self.idle_timeout} s.",
                hint=f"Set SANDBOX_CULL_EVERY to at most {self.idle_timeout}, or unset it "
                f"(default {default_cull_every(self.idle_timeout)}).",
            )
        if self.mode is HubMode.ISOLATED:
            name = self.culler_user
            if not name or name in ("root", self.gateway_user) or name.startswith(self.unix_user_prefix):
                raise ConfigError(
                    f"SANDBOX_CULLER_USER={name!r} is not an account of its own: the culler must not run "
                    "as root, as the gateway (the data's owner) or as a researcher's account.",
                    hint="Unset SANDBOX_CULLER_USER (default 'sandboxcull') or name an account used by "
                    "nothing else.",
                )

    # -- URLs ---------------------------------------------------------------------------------
    @property
    def public_url(self) -> str:
        host = "127.0.0.1" if self.bind_ip in ("", "0.0.0.0") else self.bind_ip  # noqa: S104
        return f"http://{host}:{self.port}/"

    @property
    def hub_api_url(self) -> str:
        return f"http://127.0.0.1:{self.hub_api_port}/hub/api"

    @property
    def gateway_url(self) -> str:
        """Where kernels reach the gateway (loopback, outside the proxy); ends with the service prefix."""
        return f"http://127.0.0.1:{self.gateway_port}{SERVICE_PREFIX}"

    @property
    def pages_url(self) -> str:
        """The gateway's pages listener: the ``url`` of the hub service (routed at SERVICE_PREFIX)."""
        return f"http://127.0.0.1:{self.pages_port}"

    # -- state files --------------------------------------------------------------------------
    @property
    def hub_db_url(self) -> str:
        return f"sqlite:///{self.state_dir / 'jupyterhub.sqlite'}"

    @property
    def cookie_secret_file(self) -> Path:
        return self.state_dir / "jupyterhub_cookie_secret"

    @property
    def proxy_pid_file(self) -> Path:
        return self.state_dir / "jupyterhub-proxy.pid"

    @property
    def gateway_token_file(self) -> Path:
        """The gateway's hub API token (0600 in the 0700 state folder), kept across restarts."""
        return self.state_dir / "gateway-service.token"

    @property
    def operator_token_file(self) -> Path:
        """Token of the ``sandbox-ops`` service (stop servers, revoke tokens) for the CLI."""
        return self.state_dir / "ops-service.token"

    @property
    def venv_bin(self) -> Path:
        return Path(self.python).parent

    def unix_name(self, hub_name: str) -> str:
        """The Unix account a hub user's server runs as in isolated mode."""
        return f"{self.unix_user_prefix}{hub_name}"


def load_hub_settings() -> HubSettings:
    """Build the hub settings from the environment (call once, at the edge)."""
    return HubSettings()

"""Everything ``jupyterhub_config.py`` sets, in one function: :func:`configure`.

Read top to bottom, this is the hub's security story:

1. sign-in through the registry (:mod:`sandbox.hub.authenticator`), groups = projects,
   the gateway scope only for researcher/bank/steward/auditor accounts, no self-minted tokens;
2. the gateway as a managed service **without a proxy route** (:mod:`sandbox.hub.services`),
   reached by kernels at ``SANDBOX_GATEWAY_URL`` on loopback;
3. kernels get a server token that carries the gateway scope (``server_token_scopes``) and
   an environment without any server setting (no warehouse URL, DB path or password);
4. the single-user server is locked down (:mod:`sandbox.hub.lockdown`), user config ignored;
5. the mode: ``demo`` (one OS user, labelled *not isolated*) or ``isolated`` (a Unix user per
   researcher, data folder owned by the gateway account; :mod:`sandbox.hub.isolation`);
6. idle servers are stopped by ``jupyterhub-idle-culler``, a managed service whose role may only
   list users, read servers and their activity, and stop servers (:mod:`sandbox.hub.culler`).
"""

from __future__ import annotations

import os
from typing import Any

from sandbox.hub import culler, isolation, lockdown, services
from sandbox.hub.authenticator import USER_ROLE
from sandbox.hub.settings import ACCESS_SCOPE, DEMO_BANNER, HubMode, HubSettings, load_hub_settings

KERNEL_ENV_KEEP = ["LANG", "LC_ALL"]
"""The only variables a user server inherits from the hub (besides JupyterHub's own)."""

SERVER_TOKEN_SCOPES = ["users:activity!user", "access:servers!server", ACCESS_SCOPE]


def kernel_environment(settings: HubSettings) -> dict[str, str]:
    """What a user's server (and so every kernel) finds in its environment, besides JUPYTERHUB_*."""
    env = {
        "SANDBOX_GATEWAY_URL": settings.gateway_url,
        "SANDBOX_HUB_MODE": settings.mode.value,
        "PATH": f"{settings.venv_bin}:/usr/local/bin:/usr/bin:/bin",
    }
    interval = culler.activity_interval(settings)
    if interval != culler.DEFAULT_ACTIVITY_INTERVAL:
        env["JUPYTERHUB_ACTIVITY_INTERVAL"] = str(interval)  # report activity in time for the culler
    return env


def configure(c: Any, settings: HubSettings | None = None) -> HubSettings:
    """Fill the traitlets config ``c`` of JupyterHub; returns the settings used."""
    settings = settings or load_hub_settings()
    os.umask(0o077)  # hub sqlite, pid file, tokens, and every file servers create: owner-only
    isolation.prepare(settings)
    lockdown.install()  # idempotent; bootstrap normally did it already

    # -- network and state -------------------------------------------------------------------
    c.JupyterHub.bind_url = f"http://{settings.bind_ip}:{settings.port}/"
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{settings.hub_api_port}"
    c.ConfigurableHTTPProxy.command = [settings.chp_command]
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
    c.ConfigurableHTTPProxy.pid_file = str(settings.proxy_pid_file)
    c.JupyterHub.db_url = settings.hub_db_url
    c.JupyterHub.cookie_secret_file = str(settings.cookie_secret_file)
    c.JupyterHub.cleanup_servers = True
    c.JupyterHub.cleanup_proxy = True

    # -- who signs in ------------------------------------------------------------------------
    c.JupyterHub.authenticator_class = "sandbox.hub.authenticator.SandboxAuthenticator"
    if settings.mode is HubMode.ISOLATED:
        c.SandboxAuthenticator.run_as = settings.gateway_user
    c.JupyterHub.load_roles = [USER_ROLE, *services.service_roles(), *culler.culler_roles(settings)]

    # -- the gateway, off the proxy; the idle culler -----------------------------------------------
    c.JupyterHub.services = [
        services.gateway_service(settings),
        services.ops_service(settings),
        *culler.culler_services(settings),
    ]
    c.JupyterHub.last_activity_interval = culler.activity_interval(settings)  # proxy routes' activity

    # -- user servers ------------------------------------------------------------------------
    if settings.mode is HubMode.ISOLATED:
        c.JupyterHub.spawner_class = "sandbox.hub.spawners.IsolatedSpawner"
        c.IsolatedSpawner.unix_user_prefix = settings.unix_user_prefix
        c.IsolatedSpawner.home_base = str(settings.home_base)
        c.IsolatedSpawner.notebooks_dir = str(settings.notebooks_dir)
    else:
        c.JupyterHub.spawner_class = "sandbox.hub.spawners.DemoSpawner"
        c.DemoSpawner.home_dir_template = str(settings.home_base / "{username}")
        c.DemoSpawner.notebooks_dir = str(settings.notebooks_dir)
        c.JupyterHub.template_vars = {"announcement": f"Demo mode: {DEMO_BANNER}."}
    c.Spawner.cmd = [str(settings.venv_bin / "jupyterhub-singleuser")]
    args = ["--ServerApp.terminals_enabled=False"]
    if settings.mode is HubMode.DEMO and os.geteuid() == 0:
        args.append("--allow-root")  # demo on a root machine: kernels run as root (not isolated)
    c.Spawner.args = args
    c.Spawner.default_url = "/lab"
    c.Spawner.disable_user_config = True
    c.Spawner.env_keep = list(KERNEL_ENV_KEEP)
    c.Spawner.environment = kernel_environment(settings)
    c.Spawner.server_token_scopes = list(SERVER_TOKEN_SCOPES)
    c.Spawner.http_timeout = 60
    c.Spawner.start_timeout = 120
    return settings

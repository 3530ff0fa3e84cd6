"""The gateway as a hub service: its JSON API kept off the public proxy (JUPYTERHUB-NOTES §1, RBAC fact 5).

The hub starts the gateway (``sandbox gateway serve``) as a *managed* service. The process
has **two listeners**:

* the JSON API on 127.0.0.1:``SANDBOX_GATEWAY_PORT``, which no proxy route points at:
  kernels reach it at ``SANDBOX_GATEWAY_URL`` (set in ``c.Spawner.environment``). Were it
  routed, anyone could copy the kernel's hub token and query from outside the sandbox,
  around the export gate;
* the HTML pages (no API routes at all) on 127.0.0.1:``SANDBOX_PAGES_PORT``: this is the
  service's ``url``, so the hub routes ``/services/sandbox/`` there and creates the OAuth
  client browsers sign in with (stewards' review pages, the public disclosure list).

So ``http://<hub>/services/sandbox/api/v1/...`` reaches the pages app, which has no such
path, and answers 404 from the outside.

Closing a user's access at the hub (SR-32: stop their servers, delete their tokens) is
:mod:`sandbox.hub.hubapi`, with one of two tokens:

* the ``sandbox`` service's own token, through the hub role ``sandbox-gateway``
  (:data:`GATEWAY_SERVICE_SCOPES`): a violation confirmed in the pages or the API is
  applied by the gateway process itself. In isolated mode the gateway runs as its own
  Unix account and cannot read the hub's 0700 state folder, so it needs a token of its own;
  the hub hands it over in the service's environment, as it does for every managed service;
* a second, command-less service, ``sandbox-ops`` (token file in the 0700 state folder),
  for the operator's shell on the hub machine (``close_hub_access``, ``sandbox violation
  confirm``).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from sandbox.hub.settings import ACCESS_SCOPE, SERVICE_NAME, SERVICE_PREFIX, HubMode, HubSettings

OPS_SERVICE_NAME = "sandbox-ops"

OPS_SCOPES = ["list:users", "read:users", "admin:servers", "tokens"]
"""What closing a user's access needs: find the user, stop their servers, delete their tokens."""

GATEWAY_ROLE_NAME = "sandbox-gateway"
GATEWAY_SERVICE_SCOPES = ["read:users", "admin:servers", "tokens"]
"""The gateway's own hub scopes, for sanctions (``sandbox.hub.hubapi.close_access``): read the
user, stop their servers, delete their tokens. Not ``list:users`` (it never lists them).

``tokens`` also lets its holder *create* tokens for users: a gateway compromised that far
could act as a user at the hub (their own server). It already holds the warehouse and the
control DB, and a sanction must end the tokens at once, so we accept that; dropping ``tokens``
here keeps server stops working and records the tokens as kept."""

FORWARDED_ENV_PREFIX = "SANDBOX_"
"""Server settings the gateway needs (data dir, warehouse and control-DB URLs, policies).

They go to the gateway process only; kernels never see them (``Spawner.env_keep`` is
reduced and ``Spawner.environment`` names only the gateway URL and the mode)."""

_NOT_FORWARDED = frozenset({"SANDBOX_DEMO_PASSWORD"})


def read_or_create_token(path: Path) -> str:
    """A random token kept in ``path`` (0600), created on first use. Never logged."""
    try:
        token = path.read_text(encoding="utf-8").strip()
        if len(token) >= 32:
            return token
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    path.chmod(0o600)
    return token


def gateway_command(settings: HubSettings) -> list[str]:
    """``sandbox gateway serve`` (API and pages) bound to loopback. No secret on the command line (ps)."""
    return [
        settings.python,
        "-m",
        "sandbox.cli.main",
        "gateway",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(settings.gateway_port),
        "--pages-port",
        str(settings.pages_port),
    ]


def gateway_environment(settings: HubSettings, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of the gateway process: the SANDBOX_* server settings plus its service identity."""
    environ = dict(os.environ) if environ is None else environ
    env = {k: v for k, v in environ.items() if k.startswith(FORWARDED_ENV_PREFIX) and k not in _NOT_FORWARDED}
    env.update(
        {
            # Pin the data folder the hub resolved, so the gateway does not depend on its cwd.
            "SANDBOX_DATA_DIR": str(settings.sandbox.data_dir),
            "SANDBOX_POLICY_DIR": str(settings.sandbox.policy_dir),
            "JUPYTERHUB_SERVICE_NAME": SERVICE_NAME,
            "JUPYTERHUB_SERVICE_PREFIX": SERVICE_PREFIX,
            "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{settings.gateway_port}{SERVICE_PREFIX}",
            "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps([ACCESS_SCOPE]),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def gateway_service(settings: HubSettings) -> dict[str, Any]:
    """The ``c.JupyterHub.services`` entry of the gateway: managed; its ``url`` is the pages listener."""
    service: dict[str, Any] = {
        "name": SERVICE_NAME,
        "display": False,
        "url": settings.pages_url,  # proxy route /services/sandbox/ -> pages only (never the API port)
        "oauth_no_confirm": True,  # part of the platform: no "authorize this service?" page
        "command": gateway_command(settings),
        "environment": gateway_environment(settings),
        "api_token": read_or_create_token(settings.gateway_token_file),
        "cwd": str(settings.sandbox.data_dir),
    }
    if settings.mode is HubMode.ISOLATED:
        service["user"] = settings.gateway_user  # the hub (root) setuid-s to the gateway account
    return service


def ops_service(settings: HubSettings) -> dict[str, Any]:
    """The operator's service: a token only, for :mod:`sandbox.hub.hubapi`."""
    return {
        "name": OPS_SERVICE_NAME,
        "display": False,
        "api_token": read_or_create_token(settings.operator_token_file),
    }


def service_roles() -> list[dict[str, Any]]:
    return [
        {
            "name": "sandbox-ops",
            "description": "Close a user's access: stop their servers and delete their tokens (SR-32).",
            "scopes": list(OPS_SCOPES),
            "services": [OPS_SERVICE_NAME],
        },
        {
            "name": GATEWAY_ROLE_NAME,
            "description": "The gateway applies confirmed sanctions: stop the user's servers, delete "
            "their tokens (SR-32).",
            "scopes": list(GATEWAY_SERVICE_SCOPES),
            "services": [SERVICE_NAME],
        },
    ]

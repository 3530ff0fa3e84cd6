"""Close a user's access at the hub (SR-32): stop their servers and delete their API tokens.

Revoking an account in the registry (``sandbox user revoke``, or a confirmed violation)
already stops the gateway from answering that user (it reads the account status on every
request) and stops new sign-ins. This module closes what is still open at the hub: every
API token (the server's own token included) and the running servers with their kernels.

It is the **only** code that makes these hub calls. Two callers use it:

* the operator's shell on the hub machine, :func:`close_hub_access`, with the ``sandbox-ops``
  service token kept in the hub's state folder (0600, the hub's user only);
* a violation confirmed anywhere (pages, API, CLI): ``sandbox.governance.sanctions.HttpxServerStopper``
  calls :func:`close_access` with the token it found — in the gateway process, the ``sandbox``
  service's own token, whose hub role ``sandbox-gateway`` carries the scopes below
  (:data:`sandbox.hub.services.GATEWAY_SERVICE_SCOPES`).

The token needs ``admin:servers`` (list and stop servers), ``read:users`` (the user's model)
and ``tokens`` (list and delete the user's tokens). Without ``tokens`` the servers are still
stopped and the result says the tokens were kept.

    from sandbox.hub.hubapi import close_hub_access
    close_hub_access("erin")   # HubAccessClosed(user='erin', server_stopped=True, tokens_deleted=2, ...)
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import httpx

from sandbox.errors import ConfigError, HubUnavailable, NotFound
from sandbox.hub.settings import HubSettings, load_hub_settings

STOPPED = (202, 204)
"""The hub's answers to ``DELETE .../server``: 204 stopped (or was not running), 202 stopping."""


@dataclass(frozen=True)
class HubAccessClosed:
    """What the hub did. Never holds a token."""

    user: str
    server_stopped: bool
    """At least one server was asked to stop and the hub accepted (202 or 204)."""
    tokens_deleted: int
    servers: tuple[str, ...] = ()
    """Servers asked to stop (``""`` is the default server)."""
    stop_statuses: tuple[int, ...] = ()
    """The hub's answer to each stop, in the order of ``servers``."""
    tokens_kept: int = 0
    """Tokens the hub would not delete (or could not list: ``tokens_error``)."""
    tokens_error: str = ""

    @property
    def stop_pending(self) -> bool:
        return 202 in self.stop_statuses

    @property
    def stop_failed(self) -> bool:
        return any(code not in STOPPED for code in self.stop_statuses)


def hub_client(
    api_url: str, token: str, *, timeout: float = 60.0, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """An HTTP client on the hub API (``.../hub/api``) with a service token. The token is never logged."""
    return httpx.Client(
        base_url=api_url.rstrip("/") + "/",
        headers={"Authorization": f"token {token}"},
        timeout=timeout,
        transport=transport,
    )


def close_access(hub: httpx.Client, username: str) -> HubAccessClosed:
    """Delete ``username``'s tokens, then stop their servers, with the client's token.

    Raises ``NotFound`` when the hub has no such user, ``HubUnavailable`` when it does not
    answer, ``ConfigError`` when it refuses to show the user (the token lacks a scope).
    """
    name = quote(username, safe="")
    try:
        r = hub.get(f"users/{name}")
        if r.status_code == 404:
            raise NotFound(f"The hub has no user {username!r}.", hint="Nothing to close at the hub.")
        if r.status_code != 200:
            raise ConfigError(
                f"The hub refused to show user {username!r} (HTTP {r.status_code}).",
                hint="The hub token needs the scopes admin:servers, read:users and tokens.",
            )
        model = r.json() or {}
        # Tokens first (the server's own token included), so nothing can use them while it stops.
        deleted, kept, tokens_error = 0, 0, ""
        listed = hub.get(f"users/{name}/tokens")
        if listed.status_code == 200:
            for token in (listed.json() or {}).get("api_tokens", []):
                answer = hub.delete(f"users/{name}/tokens/{quote(str(token['id']), safe='')}")
                if answer.status_code == 204:
                    deleted += 1
                else:
                    kept += 1
        else:
            tokens_error = f"the hub refused to list the tokens (HTTP {listed.status_code})"
        # The model lists running servers when the token may read them (admin:servers); without
        # that list, ask to stop the default server anyway: the hub's answer says what happened.
        running = model.get("servers")
        servers = sorted(str(s) for s in running) if isinstance(running, dict) else [""]
        statuses = []
        for server in servers:
            path = f"users/{name}/servers/{quote(server, safe='')}" if server else f"users/{name}/server"
            statuses.append(hub.delete(path).status_code)
    except httpx.TransportError as err:  # never echo the token
        raise HubUnavailable(
            f"The hub is not answering ({type(err).__name__}).",
            hint=f"Is it running? Hub API: {hub.base_url}",
        ) from None
    return HubAccessClosed(
        user=username,
        server_stopped=any(code in STOPPED for code in statuses),
        tokens_deleted=deleted,
        servers=tuple(servers),
        stop_statuses=tuple(statuses),
        tokens_kept=kept,
        tokens_error=tokens_error,
    )


def operator_token(settings: HubSettings) -> str:
    """The ``sandbox-ops`` token from the hub's state folder (readable by the hub's user only)."""
    try:
        token = settings.operator_token_file.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError(
            f"Cannot read the hub operator token ({type(err).__name__}).",
            hint="Run this on the hub machine as the hub's user, after the hub has started once.",
        ) from None
    if not token:
        raise ConfigError("The hub operator token file is empty.", hint="Restart the hub to write it again.")
    return token


def close_hub_access(username: str, settings: HubSettings | None = None) -> HubAccessClosed:
    """Stop ``username``'s servers and delete all their hub API tokens (``sandbox-ops`` token)."""
    settings = settings or load_hub_settings()
    with hub_client(settings.hub_api_url, operator_token(settings)) as hub:
        return close_access(hub, username)

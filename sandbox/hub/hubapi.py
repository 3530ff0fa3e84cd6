"""Close a user's access at the hub (SR-32): stop their servers and delete their API tokens.

Revoking an account in the registry (``sandbox user revoke``) already stops the gateway
from answering that user (it reads the account status on every request) and stops new
sign-ins. This module closes what is still open at the hub: the running server and its
kernels, and every API token (the server's token included). It uses the ``sandbox-ops``
service token kept in the hub's state folder (0600, root/hub only), so it runs on the hub
machine as the hub's user.

    from sandbox.hub.hubapi import close_hub_access
    close_hub_access("erin")        # -> HubAccessClosed(user='erin', server_stopped=True, tokens_deleted=2)
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from sandbox.errors import ConfigError, NotFound
from sandbox.hub.settings import HubSettings, load_hub_settings


@dataclass(frozen=True)
class HubAccessClosed:
    user: str
    server_stopped: bool
    tokens_deleted: int


def _client(settings: HubSettings) -> httpx.Client:
    try:
        token = settings.operator_token_file.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, PermissionError) as err:
        raise ConfigError(
            f"Cannot read the hub operator token ({type(err).__name__}).",
            hint="Run this on the hub machine as the hub's user, after the hub has started once.",
        ) from None
    return httpx.Client(
        base_url=settings.hub_api_url + "/", headers={"Authorization": f"token {token}"}, timeout=60
    )


def close_hub_access(username: str, settings: HubSettings | None = None) -> HubAccessClosed:
    """Stop ``username``'s servers and delete all their hub API tokens."""
    settings = settings or load_hub_settings()
    with _client(settings) as hub:
        try:
            r = hub.get(f"users/{username}")
        except httpx.TransportError as err:
            raise ConfigError(
                "The hub is not answering.", hint=f"Is it running? Hub API: {settings.hub_api_url}"
            ) from err
        if r.status_code == 404:
            raise NotFound(f"The hub has no user {username!r}.", hint="Nothing to close at the hub.")
        r.raise_for_status()
        model = r.json()
        # Tokens first (the server's own token included), so nothing can use them while it stops.
        deleted = 0
        tokens = hub.get(f"users/{username}/tokens")
        tokens.raise_for_status()
        for token in tokens.json().get("api_tokens", []):
            if hub.delete(f"users/{username}/tokens/{token['id']}").status_code == 204:
                deleted += 1
        stopped = False
        for name in model.get("servers") or {}:
            path = f"users/{username}/servers/{name}" if name else f"users/{username}/server"
            if hub.request("DELETE", path).status_code in (202, 204):
                stopped = True
        return HubAccessClosed(user=username, server_stopped=stopped, tokens_deleted=deleted)

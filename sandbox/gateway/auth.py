"""Who is calling: the caller's JupyterHub API token, checked with the hub.

Every request carries ``Authorization: token <hub token>`` (or ``Bearer``). An
:class:`Authenticator` turns the token into a :class:`HubIdentity` or raises. The
production one asks JupyterHub (:class:`HubAuthenticator`, JUPYTERHUB-NOTES §1);
tests inject :class:`StaticTokenAuthenticator`. Authentication says only who the
caller is; what they may do is decided afterwards from the sandbox's own registry
(``sandbox.access`` through the services layer).

Tokens never appear in an error, a log line or a response.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from sandbox.errors import AccessDenied, AuthenticationFailed, ConfigError, HubUnavailable

log = logging.getLogger("sandbox.gateway.auth")

_HEADER_RE = re.compile(r"^(?:token|bearer)[ \t]+([^\s]+)[ \t]*$", re.IGNORECASE)

DEFAULT_CACHE_MAX_AGE = 10
"""Seconds a hub answer is reused; small so that a removal at the hub takes effect quickly."""


@dataclass(frozen=True)
class HubIdentity:
    """The authenticated caller, as the hub (or a test authenticator) knows them."""

    name: str
    groups: tuple[str, ...] = ()
    scopes: frozenset[str] = field(default_factory=frozenset)
    admin: bool = False


@runtime_checkable
class Authenticator(Protocol):
    """Turns a bearer token into an identity, or raises AuthenticationFailed / AccessDenied."""

    async def authenticate(self, token: str) -> HubIdentity: ...


def token_from_header(value: str | None) -> str:
    """Extract the token from an ``Authorization`` header value (``token X`` or ``Bearer X``)."""
    if not value:
        raise AuthenticationFailed(
            "No credentials: send the header 'Authorization: token <your hub API token>'.",
        )
    match = _HEADER_RE.match(value.strip())
    if match is None:
        raise AuthenticationFailed(
            "Malformed Authorization header; expected 'token <hub API token>' or 'Bearer <hub API token>'.",
        )
    return match.group(1)


class StaticTokenAuthenticator:
    """Fixed token → user name map. For tests and local demos only; never used by ``gateway serve``."""

    def __init__(
        self, tokens: Mapping[str, str], *, groups: Mapping[str, tuple[str, ...]] | None = None
    ) -> None:
        self._tokens = dict(tokens)
        self._groups = dict(groups or {})

    async def authenticate(self, token: str) -> HubIdentity:
        for known, name in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return HubIdentity(name=name, groups=self._groups.get(name, ()))
        raise AuthenticationFailed("The token was not recognised.")


class HubAuthenticator:
    """Validate the caller's token with JupyterHub (``HubAuth.user_for_token``).

    Reads ``JUPYTERHUB_API_URL``, ``JUPYTERHUB_API_TOKEN`` (the gateway's own service token)
    and ``JUPYTERHUB_OAUTH_ACCESS_SCOPES`` (or ``JUPYTERHUB_SERVICE_NAME``) from the
    environment, as HubAuth does. Requires a *user* token holding the service's access scope.
    """

    def __init__(self, *, cache_max_age: int = DEFAULT_CACHE_MAX_AGE, hub_auth: Any = None) -> None:
        if hub_auth is None:
            from jupyterhub.services.auth import HubAuth

            hub_auth = HubAuth(cache_max_age=cache_max_age)
        if not hub_auth.api_token:
            raise ConfigError(
                "The gateway has no hub API token.",
                hint="Run it as a JupyterHub service, or set JUPYTERHUB_API_TOKEN to the service's token.",
            )
        if not hub_auth.access_scopes:
            raise ConfigError(
                "The gateway does not know which hub scope grants access to it.",
                hint="Set JUPYTERHUB_SERVICE_NAME (e.g. 'sandbox') or JUPYTERHUB_OAUTH_ACCESS_SCOPES.",
            )
        self._hub_auth = hub_auth

    @property
    def access_scopes(self) -> frozenset[str]:
        return frozenset(self._hub_auth.access_scopes)

    async def authenticate(self, token: str) -> HubIdentity:
        try:
            model = await self._hub_auth.user_for_token(token, sync=False)
        except Exception as err:  # tornado HTTPError or connection failure; never show the token
            log.warning("hub token check failed: %s", type(err).__name__)
            raise HubUnavailable("JupyterHub did not answer the identity check.") from None
        if not model:
            raise AuthenticationFailed("The hub does not recognise this token (expired or revoked).")
        if model.get("kind", "user") != "user":
            raise AccessDenied(
                "Only user tokens may call the gateway.",
                hint="Call the gateway from your notebook kernel; it holds your user token.",
            )
        if not self._hub_auth.check_scopes(
            self._hub_auth.access_scopes, {"scopes": model.get("scopes") or []}
        ):
            raise AccessDenied(
                "Your hub token does not carry the sandbox access scope.",
                hint="Ask an admin to add you to a project group, then restart your server from the hub.",
            )
        name = model.get("name")
        if not isinstance(name, str) or not name:
            raise AuthenticationFailed("The hub's answer names no user.")
        return HubIdentity(
            name=name,
            groups=tuple(str(g) for g in model.get("groups") or ()),
            scopes=frozenset(str(s) for s in model.get("scopes") or ()),
            admin=bool(model.get("admin", False)),
        )

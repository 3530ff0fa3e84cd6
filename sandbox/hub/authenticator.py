"""JupyterHub sign-in backed by the sandbox registry (control DB, argon2 hashes).

* Only accounts whose registry status is ``approved`` sign in; suspended and revoked
  ones get the same "Invalid username or password" as a wrong password (no account
  enumeration). Passwords are checked by ``sandbox.access.registry.authenticate``;
  the hub never stores them.
* Hub **groups = projects** (``manage_groups``): the user's projects, refreshed at each
  login and every ``auth_refresh_age`` seconds.
* Hub **roles** come from the registry role (``manage_roles``): every registry role gets
  ``sandbox-querier`` = ``access:services!service=sandbox``. JupyterHub requires that scope
  both for the gateway's JSON API (kernels) and for signing in to the gateway's pages
  through hub OAuth (stewards review, admins confirm violations and countersign,
  enterprises manage their authorisations, auditors read). The scope only says "may talk
  to the gateway": the gateway authorises every request from the registry, so an admin or
  an enterprise without a project gets no DP result from the API. Admins also get
  ``sandbox-operator``: the admin page and stopping servers, but not ``access:servers``
  (running code as another user) nor ``tokens``.
* The built-in ``user`` role loses ``tokens!user``: nobody mints extra API tokens
  (every token they could mint would carry the gateway scope).

A revoked user cannot sign in again, and the refresh forces a signed-in browser back to
the login page. API tokens cannot be refreshed by the hub (JupyterHub keeps stale auth on
token requests), so the gateway checks the registry on every call, and closing access
also stops the server and deletes the tokens (:mod:`sandbox.hub.hubapi`).
"""

from __future__ import annotations

import re
from typing import Any

from jupyterhub.auth import Authenticator
from traitlets import Bool, Integer, Set, Unicode, default

from sandbox.hub import registry_bridge
from sandbox.hub.registry_bridge import Account
from sandbox.hub.settings import ACCESS_SCOPE

USERNAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
"""Registry names that are also safe Unix names (isolated mode adds a prefix)."""

USER_ROLE: dict[str, Any] = {
    "name": "user",
    "description": "Default role of every user, without 'tokens!user' (no self-minted API tokens).",
    "scopes": [
        "read:users!user",
        "users:activity!user",
        "servers!user",
        "access:servers!user",
        "read:tokens!user",
    ],
}

QUERIER_ROLE: dict[str, Any] = {
    "name": "sandbox-querier",
    "description": "Call the sandbox gateway (which then authorises every request from the registry).",
    "scopes": [ACCESS_SCOPE],
}

OPERATOR_ROLE: dict[str, Any] = {
    "name": "sandbox-operator",
    "description": "Platform operator: admin page, list users, stop servers. No access to users' servers.",
    "scopes": ["admin-ui", "list:users", "read:users", "list:groups", "read:groups", "admin:servers"],
}

GATEWAY_ROLES = frozenset({"researcher", "bank", "steward", "auditor", "admin", "enterprise", "expert"})
"""Registry roles whose users get the gateway scope: all of them (``sandbox.control.models.UserRole``).

Admins, enterprises and experts (the committee workbench) need it to sign in to the pages (hub
OAuth asks for the service's access scope); the gateway's registry checks keep them from data
they may not have."""


class SandboxAuthenticator(Authenticator):  # type: ignore[misc]
    """Username + password checked against the sandbox registry."""

    run_as = Unicode(
        "",
        config=True,
        help="Unix account that reads the registry (isolated mode: the gateway's). Empty: in-process.",
    )
    gateway_roles = Set(
        set(GATEWAY_ROLES),
        config=True,
        help="Registry roles whose users receive the gateway access scope.",
    )
    refresh_interval = Integer(
        60, config=True, help="Seconds between registry re-checks of a signed-in user (auth_refresh_age)."
    )
    log_failures = Bool(
        True, config=True, help="Log refused sign-ins (user name and reason, never the password)."
    )

    @default("manage_groups")
    def _default_manage_groups(self) -> bool:
        return True

    @default("manage_roles")
    def _default_manage_roles(self) -> bool:
        return True

    @default("reset_managed_roles_on_startup")
    def _default_reset_managed_roles_on_startup(self) -> bool:
        # Also works around JupyterHub 6.1.1 failing at its second start (KeyError 'users' in
        # init_role_assignment) when managed roles exist and this is False.
        return True

    @default("allow_all")
    def _default_allow_all(self) -> bool:
        # The registry is the allow-list: authenticate() only succeeds for approved accounts.
        return True

    @default("auth_refresh_age")
    def _default_auth_refresh_age(self) -> int:
        return int(self.refresh_interval)

    @default("refresh_pre_spawn")
    def _default_refresh_pre_spawn(self) -> bool:
        return True

    def normalize_username(self, username: str) -> str:
        return str(username).strip().lower()

    def validate_username(self, username: str) -> bool:
        return bool(USERNAME_RE.match(username)) and super().validate_username(username)

    # -- the auth model ---------------------------------------------------------------------------
    def roles_for(self, account: Account) -> list[dict[str, Any]]:
        roles = [dict(USER_ROLE)]
        if account.role in self.gateway_roles:
            roles.append(dict(QUERIER_ROLE))
        if account.role == "admin":
            roles.append(dict(OPERATOR_ROLE))
        return roles

    def auth_model(self, account: Account) -> dict[str, Any]:
        return {
            "name": account.name,
            "admin": False,
            "groups": list(account.projects),
            "roles": self.roles_for(account),
        }

    async def load_managed_roles(self) -> list[dict[str, Any]]:
        return [dict(QUERIER_ROLE), dict(OPERATOR_ROLE)]

    # -- sign-in and refresh -------------------------------------------------------------------
    async def authenticate(self, handler: Any, data: dict[str, Any]) -> dict[str, Any] | None:
        username = self.normalize_username(data.get("username", ""))
        password = str(data.get("password", ""))
        if not username or not password or not self.validate_username(username):
            return None
        try:
            account = await registry_bridge.login(username, password, run_as=self.run_as)
        except Exception:
            self.log.exception("sandbox: registry check failed for %s", username)
            return None
        if account is None:
            self._refused(username, "unknown user or wrong password")
            return None
        if not account.active:
            self._refused(username, f"account is {account.status}")
            return None
        return self.auth_model(account)

    async def refresh_user(self, user: Any, handler: Any = None) -> dict[str, Any] | bool:
        try:
            account = await registry_bridge.lookup(user.name, run_as=self.run_as)
        except Exception:
            self.log.exception("sandbox: registry refresh failed for %s", user.name)
            return False
        if account is None or not account.active:
            self._refused(user.name, "account no longer approved (refresh)")
            return False
        return self.auth_model(account)

    def _refused(self, username: str, reason: str) -> None:
        if self.log_failures:
            self.log.warning("sandbox: sign-in refused for %s: %s", username, reason)

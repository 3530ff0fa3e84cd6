"""Browser sign-in for the pages: JupyterHub OAuth, a signed session cookie, the page caller.

The pages listener is routed publicly by the hub at ``/services/sandbox/``, so a browser
signs in with the hub's OAuth (JUPYTERHUB-NOTES §1: ``HubOAuth`` is the class for
services that browsers visit):

1. a page that needs a user and finds no valid session answers 302 to the hub's
   ``/hub/api/oauth2/authorize`` with a fresh ``state`` (kept in a signed, short-lived
   cookie) and a PKCE challenge;
2. the hub signs the user in (or sees they already are) and sends the browser back to
   ``<prefix>oauth_callback?code=…&state=…``;
3. the callback checks the state against the cookie, trades the code for the user's
   OAuth token (``HubOAuth.token_for_code``) and stores the token in a signed,
   HttpOnly, SameSite=Lax cookie scoped to the prefix.

Every request then turns the cookie back into a hub identity (``HubAuth.user_for_token``,
cached ``DEFAULT_CACHE_MAX_AGE`` seconds) and the identity into a sandbox account from the
registry (known, approved): the registry, never the hub, says what the person may do.

:class:`BrowserAuth` is the small seam tests replace: :class:`HubBrowserAuth` talks to the
hub; :class:`StaticBrowserAuth` (tests and local demos only, never used by
``gateway serve``) maps fixed codes to users. Cookies, state checks and CSRF stay in the
pages app either way, so tests exercise them for real.

Tokens never appear in a page, a log line or an error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlencode

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from sandbox.errors import AuthenticationFailed, ConfigError
from sandbox.gateway import backend
from sandbox.gateway.auth import DEFAULT_CACHE_MAX_AGE, HubAuthenticator, HubIdentity
from sandbox.gateway.deps import CallerInfo

SESSION_MAX_AGE = 8 * 3600
"""Seconds a session cookie is accepted; after that the browser goes through OAuth again
(silently, while the hub session lasts)."""

STATE_MAX_AGE = 600
"""Seconds an OAuth hand-over may take (same as HubOAuth's state cookie)."""


class LoginRequired(Exception):
    """No valid session: send the browser to the hub (GET) or refuse (other methods)."""

    def __init__(self, next_url: str) -> None:
        super().__init__("sign-in required")
        self.next_url = next_url


@dataclass(frozen=True)
class LoginStart:
    """Where to send the browser to sign in, and the opaque state to expect back."""

    url: str
    state: str


@runtime_checkable
class BrowserAuth(Protocol):
    """What the pages app needs from the hub's OAuth."""

    cookie_name: str
    """Name of the session cookie (per OAuth client, like HubOAuth's)."""

    hub_logout_url: str

    def start(self, next_url: str) -> LoginStart:
        """A new sign-in: the authorize URL (with state) and the state to keep in a cookie."""
        ...

    async def finish(self, code: str, state: str) -> tuple[str, str]:
        """Trade the code for the user's token; returns ``(token, next_url)``."""
        ...

    async def identify(self, token: str) -> HubIdentity:
        """The hub identity of a session token; raises AuthenticationFailed / AccessDenied."""
        ...


class HubBrowserAuth:
    """:class:`BrowserAuth` on ``jupyterhub.services.auth.HubOAuth``.

    Reads ``JUPYTERHUB_CLIENT_ID``, ``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_API_URL``,
    ``JUPYTERHUB_SERVICE_PREFIX``, ``JUPYTERHUB_OAUTH_CALLBACK_URL`` and
    ``JUPYTERHUB_OAUTH_ACCESS_SCOPES`` from the environment, which the hub sets for a managed
    service that has a ``url``.
    """

    def __init__(self, *, hub_oauth: Any = None, cache_max_age: int = DEFAULT_CACHE_MAX_AGE) -> None:
        if hub_oauth is None:
            import os

            if not os.environ.get("JUPYTERHUB_CLIENT_ID"):
                raise ConfigError(
                    "The pages have no hub OAuth client (JUPYTERHUB_CLIENT_ID is not set).",
                    hint="Give the 'sandbox' hub service a url (the pages listener) so the hub creates "
                    "its OAuth client, or start the gateway without --pages-port.",
                )
            from jupyterhub.services.auth import HubOAuth

            hub_oauth = HubOAuth(cache_max_age=cache_max_age)
        self._oauth = hub_oauth
        self._identities = HubAuthenticator(hub_auth=hub_oauth)  # same checks as the API: scope, kind
        self.cookie_name = str(hub_oauth.cookie_name)
        self.hub_logout_url = str(hub_oauth.hub_prefix).rstrip("/") + "/logout"

    def start(self, next_url: str) -> LoginStart:
        params: dict[str, str] = {}
        verifier: str | None = None
        if self._oauth.pkce_enabled:
            verifier, challenge, method = self._oauth.generate_pkce_code_challenge()
            params["code_challenge"] = challenge
            params["code_challenge_method"] = method
        extra = {"code_verifier": verifier} if verifier else {}
        state = self._oauth.generate_state(next_url, **extra)
        params["state"] = state
        login_url = str(self._oauth.login_url)
        sep = "&" if "?" in login_url else "?"
        return LoginStart(url=f"{login_url}{sep}{urlencode(params)}", state=state)

    async def finish(self, code: str, state: str) -> tuple[str, str]:
        next_url = str(self._oauth.get_next_url(state))
        verifier = self._oauth.get_code_verifier(state)
        self._oauth.clear_oauth_state(state)
        try:
            token = await self._oauth.token_for_code(code, code_verifier=verifier, sync=False)
        except Exception as err:  # tornado HTTPError from the hub; never echo the code
            raise AuthenticationFailed(
                "The hub did not accept this sign-in (expired or reused code).",
                hint="Open the page again to sign in afresh.",
            ) from err
        return str(token), next_url

    async def identify(self, token: str) -> HubIdentity:
        return await self._identities.authenticate(token)


class StaticBrowserAuth:
    """Fixed code → user map standing in for the hub. For tests and local demos only.

    ``start`` returns a URL on the hub's authorize path; a test then calls the pages
    app's ``oauth_callback`` with ``code=<one of the codes>`` and the state, as the hub would.
    The code is also the session token.
    """

    def __init__(self, codes: dict[str, str], *, cookie_name: str = "service-sandbox") -> None:
        self._codes = dict(codes)
        self._states: dict[str, str] = {}
        self.cookie_name = cookie_name
        self.hub_logout_url = "/hub/logout"

    def start(self, next_url: str) -> LoginStart:
        state = secrets.token_urlsafe(16)
        self._states[state] = next_url
        return LoginStart(url="/hub/api/oauth2/authorize?" + urlencode({"state": state}), state=state)

    async def finish(self, code: str, state: str) -> tuple[str, str]:
        next_url = self._states.pop(state, "")
        if code not in self._codes:
            raise AuthenticationFailed("The hub did not accept this sign-in (expired or reused code).")
        return code, next_url

    async def identify(self, token: str) -> HubIdentity:
        for known, name in self._codes.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return HubIdentity(name=name)
        raise AuthenticationFailed("The hub does not recognise this session (expired or revoked).")


# ------------------------------------------------------------------------------ signed cookies


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CookieSigner:
    """HMAC-SHA256 signed values with an issue time (like tornado's secure cookies).

    The secret is random per process unless given: a restarted gateway asks browsers to
    sign in again, which the hub answers without a password while its own session lasts.
    """

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def _mac(self, purpose: str, payload: str) -> str:
        return _b64(hmac.new(self._secret, f"{purpose}\0{payload}".encode(), hashlib.sha256).digest())

    def sign(self, purpose: str, value: str, *, now: float | None = None) -> str:
        payload = f"{int(now if now is not None else time.time())}|{_b64(value.encode())}"
        return f"{payload}|{self._mac(purpose, payload)}"

    def unsign(
        self, purpose: str, signed: str | None, *, max_age: int, now: float | None = None
    ) -> str | None:
        """The value, or None when the signature, format or age is wrong."""
        if not signed or signed.count("|") != 2:
            return None
        issued, value, mac = signed.split("|")
        payload = f"{issued}|{value}"
        if not hmac.compare_digest(mac, self._mac(purpose, payload)):
            return None
        try:
            age = (now if now is not None else time.time()) - int(issued)
            decoded = _unb64(value).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        if age < -60 or age > max_age:
            return None
        return decoded

    def derive(self, purpose: str, value: str) -> str:
        """A keyed digest of ``value`` (CSRF tokens bound to a session)."""
        return hmac.new(self._secret, f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()


# ------------------------------------------------------------------------------ per request


@dataclass(frozen=True)
class PageUser:
    """The signed-in person on a page: hub identity, sandbox account and session token."""

    identity: HubIdentity
    account: backend.Account
    token: str

    @property
    def name(self) -> str:
        return self.account.name

    @property
    def role(self) -> str:
        return self.account.role

    def caller(self) -> CallerInfo:
        """The same caller object the API routes use (for routers shared with the API)."""
        return CallerInfo(identity=self.identity, account=self.account)


def session_token(request: Request) -> str | None:
    """The hub token in the request's session cookie, if the cookie is valid."""
    state = request.app.state
    signed = request.cookies.get(state.oauth.cookie_name)
    token: str | None = state.signer.unsign("session", signed, max_age=SESSION_MAX_AGE)
    return token


def request_target(request: Request) -> str:
    """The path (and query) the browser asked for, to come back to after sign-in."""
    path = request.url.path
    return f"{path}?{request.url.query}" if request.url.query else path


async def current_user(request: Request) -> PageUser | None:
    """The signed-in user, or None (no or invalid cookie, token no longer valid at the hub).

    An account problem (unknown to the registry, suspended, revoked) raises: the error page
    says so, instead of sending the browser round the sign-in loop.
    """
    cached = getattr(request.state, "page_user", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    token = session_token(request)
    if token is None:
        return None
    state = request.app.state
    try:
        identity = await state.oauth.identify(token)
    except AuthenticationFailed:
        return None
    account = await run_in_threadpool(backend.active_account, state.ctx, identity.name)
    user = PageUser(identity=identity, account=account, token=token)
    request.state.page_user = user
    return user


async def require_user(request: Request) -> PageUser:
    """Dependency: the signed-in user, or :class:`LoginRequired` (redirect to the hub)."""
    user = await current_user(request)
    if user is None:
        raise LoginRequired(request_target(request))
    return user


async def page_caller(request: Request) -> CallerInfo:
    """Replaces ``sandbox.gateway.deps.get_caller`` in the pages app (cookie, not header)."""
    return (await require_user(request)).caller()


def local_next(prefix: str, candidate: str | None) -> str:
    """``candidate`` if it is a path under the prefix (no open redirect), else the prefix."""
    if (
        candidate
        and candidate.startswith(prefix)
        and not candidate.startswith("//")
        and "\\" not in candidate
        and "\n" not in candidate
        and "\r" not in candidate
    ):
        return candidate
    return prefix

"""HTTP to the gateway: base URL, the hub token header, and errors mapped back to their classes.

A gateway error ``{"error": {"code", "message", "hint"}}`` is raised as the
:class:`~sandbox.errors.SandboxError` subclass with that ``code`` (``error_classes()``),
so a notebook shows ``BudgetExceeded`` with the gateway's words. A code this client does
not know becomes a subclass made on the fly with the same ``code`` and ``status``.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import httpx

from sandbox.errors import ConfigError, SandboxError, error_classes

API_PATH = "api/v1/"
# read: a minute past the server's default query deadline (SANDBOX_QUERY_TIMEOUT, 300 s), so a
# stopped query arrives as its ``query_timeout`` error rather than as a client-side timeout
DEFAULT_TIMEOUT = httpx.Timeout(10.0, read=360.0, write=120.0)


class GatewayUnreachable(SandboxError):
    """The client could not talk to the gateway at all (network, proxy, wrong URL)."""

    code: ClassVar[str] = "gateway_unreachable"
    status: ClassVar[int] = 503
    default_hint: ClassVar[str] = (
        "Check SANDBOX_GATEWAY_URL (sandbox.connect(url=...)); if it is right, tell the platform operator."
    )


_dynamic: dict[str, type[SandboxError]] = {}


def error_class(code: str, status: int) -> type[SandboxError]:
    """The class for a gateway error code; unknown codes get a stable generated subclass."""
    known = error_classes().get(code)
    if known is not None:
        return known
    cls = _dynamic.get(code)
    if cls is None:
        name = "".join(part.capitalize() for part in code.split("_")) or "GatewayError"
        cls = type(name, (SandboxError,), {"code": code, "status": status, "__module__": __name__})
        _dynamic[code] = cls
    return cls


def raise_for_error(response: httpx.Response) -> None:
    """Raise the SandboxError a non-2xx gateway response describes."""
    if response.is_success:
        return
    body: Any = None
    try:
        body = response.json()
    except ValueError:
        body = None
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict) and isinstance(err.get("code"), str):
        cls = error_class(err["code"], response.status_code)
        raise cls(str(err.get("message", "")), hint=str(err.get("hint", "")) or None)
    raise error_class("gateway_error", response.status_code)(
        f"The gateway answered HTTP {response.status_code} without an error description.",
        hint="If this persists, the URL may point at something other than the sandbox gateway.",
    )


def _normalise_base(url: str) -> str:
    url = url.strip()
    if not url.startswith(("http://", "https://")):
        raise ConfigError(
            "The gateway URL must start with http:// or https://.",
            hint="Set SANDBOX_GATEWAY_URL, e.g. http://127.0.0.1:10101/services/sandbox/",
        )
    return url if url.endswith("/") else url + "/"


def _display(url: str) -> str:
    """The URL without any user:password part, for messages."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(username=None, password=None)) if parsed.userinfo else url


class Transport:
    """A small synchronous JSON client for ``<gateway>/api/v1/``."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        http: httpx.Client | None = None,
    ) -> None:
        url = url or os.environ.get("SANDBOX_GATEWAY_URL")
        if not url:
            raise ConfigError(
                "The sandbox gateway URL is not set.",
                hint="In the sandbox's notebooks SANDBOX_GATEWAY_URL is set for you; "
                "elsewhere pass sandbox.connect(url=...).",
            )
        token = token or os.environ.get("JUPYTERHUB_API_TOKEN")
        if not token:
            raise ConfigError(
                "No hub API token: JUPYTERHUB_API_TOKEN is not set.",
                hint="Run this in a notebook started from the sandbox's JupyterHub, or pass token=...",
            )
        self.base_url = _normalise_base(url)
        self._token = token
        self._http = http or httpx.Client(timeout=timeout, follow_redirects=False)

    def __repr__(self) -> str:  # never shows the token
        return f"Transport({_display(self.base_url)!r})"

    def close(self) -> None:
        self._http.close()

    def url(self, path: str) -> str:
        return self.base_url + API_PATH + path.lstrip("/")

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"token {self._token}", "Accept": "application/json"}
        headers.update(kwargs.pop("headers", {}) or {})
        try:
            response = self._http.request(method, self.url(path), headers=headers, **kwargs)
        except httpx.HTTPError as err:
            raise GatewayUnreachable(
                f"Could not reach the sandbox gateway at {_display(self.base_url)} ({type(err).__name__})."
            ) from None
        raise_for_error(response)
        return response

    def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean).json()

    def post(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=json, **kwargs).json()

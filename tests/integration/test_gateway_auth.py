"""The gateway's token handling: header parsing, the hub authenticator's refusal to run
unconfigured, and that no token ever reaches a response body.

The real hub round trip (HubAuth against a running JupyterHub) is covered by the hub tests.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import httpx
import pytest
from jupyterhub.services.auth import HubAuth

from sandbox.config import Settings
from sandbox.errors import AccessDenied, AuthenticationFailed, ConfigError, HubUnavailable
from sandbox.gateway.app import create_app, service_prefix
from sandbox.gateway.auth import (
    Authenticator,
    HubAuthenticator,
    HubIdentity,
    StaticTokenAuthenticator,
    token_from_header,
)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("token abc123", "abc123"),
        ("Token abc123", "abc123"),
        ("Bearer abc123", "abc123"),
        ("bearer   abc123  ", "abc123"),
    ],
)
def test_token_header_forms(header: str, token: str) -> None:
    assert token_from_header(header) == token


@pytest.mark.parametrize("header", [None, "", "abc123", "Basic dXNlcjpwYXNz", "token", "token a b"])
def test_malformed_headers_are_authentication_failures(header: str | None) -> None:
    with pytest.raises(AuthenticationFailed):
        token_from_header(header)


def test_a_malformed_header_is_not_echoed() -> None:
    with pytest.raises(AuthenticationFailed) as info:
        token_from_header("Basic dXNlcjpwYXNz")
    assert "dXNlcjpwYXNz" not in str(info.value)


def test_static_authenticator_maps_fixed_tokens() -> None:
    auth = StaticTokenAuthenticator({"t-1": "alice"}, groups={"alice": ("researchers",)})
    assert isinstance(auth, Authenticator)
    assert asyncio.run(auth.authenticate("t-1")) == HubIdentity("alice", ("researchers",))
    with pytest.raises(AuthenticationFailed):
        asyncio.run(auth.authenticate("t-2"))


def test_hub_authenticator_refuses_to_run_without_a_service_token(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_OAUTH_ACCESS_SCOPES", "JUPYTERHUB_SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError):
        HubAuthenticator()


def test_hub_authenticator_refuses_to_run_without_an_access_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "service-token-for-test")
    for name in ("JUPYTERHUB_OAUTH_ACCESS_SCOPES", "JUPYTERHUB_OAUTH_SCOPES", "JUPYTERHUB_SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as info:
        HubAuthenticator()
    assert "service-token-for-test" not in str(info.value)


def test_hub_authenticator_takes_the_scope_from_the_service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "service-token-for-test")
    monkeypatch.delenv("JUPYTERHUB_OAUTH_ACCESS_SCOPES", raising=False)
    monkeypatch.delenv("JUPYTERHUB_OAUTH_SCOPES", raising=False)
    monkeypatch.setenv("JUPYTERHUB_SERVICE_NAME", "sandbox")
    auth = HubAuthenticator()
    assert auth.access_scopes == {"access:services!service=sandbox"}


def test_unreachable_hub_is_a_503_that_names_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub that cannot be reached answers hub_unavailable, never a 500 or the token."""
    hub = HubAuth(
        api_url="http://127.0.0.1:9/hub/api",
        api_token="service-token-for-test",
        access_scopes={"access:services!service=sandbox"},
        cache_max_age=10,
    )
    auth = HubAuthenticator(hub_auth=hub)
    with pytest.raises(HubUnavailable) as info:
        asyncio.run(auth.authenticate("caller-secret-token"))
    assert "caller-secret-token" not in str(info.value)
    assert info.value.status == 503


class _Denying:
    async def authenticate(self, token: str) -> HubIdentity:
        raise AccessDenied("Your hub token does not carry the sandbox access scope.")


def test_refusals_by_the_authenticator_use_the_error_shape() -> None:
    ctx = SimpleNamespace(catalog=None, control_engine=None)
    app = create_app(Settings(), ctx=ctx, auth=_Denying(), prefix="/services/sandbox/")

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return await client.get(
                "/services/sandbox/api/v1/whoami", headers={"Authorization": "token caller-secret-token"}
            )

    response = asyncio.run(call())
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "access_denied"
    assert "caller-secret-token" not in response.text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "/services/sandbox/"),
        ("/services/x", "/services/x/"),
        ("services/y/", "/services/y/"),
        ("/", "/"),
    ],
)
def test_service_prefix_is_normalised(
    value: str | None, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    assert service_prefix(value) == expected


def test_service_prefix_comes_from_the_hub_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/services/other/")
    assert service_prefix() == "/services/other/"

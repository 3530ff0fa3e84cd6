"""Property test over the gateway's own OpenAPI description (schemathesis).

For every operation, generated requests — valid and invalid — never produce a 5xx,
every answer matches the documented status codes, content type and schema, and every
error is the one documented shape. Run with a valid token (alice) and without one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import test_gateway as tg  # sibling module: build_sandbox, SandboxEnv
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from sandbox.config import Settings
from sandbox.gateway.app import create_app

pytestmark = pytest.mark.slow

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


class _Deferred:
    """Stands in for the service context and the authenticator until the module fixture built them.

    schemathesis loads the schema at import time (its lazy fixture loader does not work with
    pytest 9), and the OpenAPI document needs neither the context nor the authenticator.
    """

    env: tg.SandboxEnv | None = None

    def __getattr__(self, name: str) -> Any:
        if _Deferred.env is None:
            raise RuntimeError("the sandbox for this module is not built yet")
        return getattr(_Deferred.env.ctx, name)


class _DeferredAuth:
    async def authenticate(self, token: str) -> Any:
        assert _Deferred.env is not None
        return await _Deferred.env.authenticator.authenticate(token)


APP = create_app(Settings(), ctx=_Deferred(), auth=_DeferredAuth(), prefix=tg.PREFIX)
schema = schemathesis.openapi.from_asgi(f"{tg.API}openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tg.SandboxEnv]:
    sandbox_env = tg.build_sandbox(tmp_path_factory.mktemp("schema"))
    _Deferred.env = sandbox_env
    yield sandbox_env
    _Deferred.env = None
    sandbox_env.ctx.close()


def _assert_error_shape(response: Any) -> None:
    if response.status_code < 400:
        return
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "hint"}, body
    assert all(isinstance(v, str) for v in body["error"].values())


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_authenticated_requests_never_fail_and_keep_the_contract(case: Any, env: tg.SandboxEnv) -> None:
    response = case.call_and_validate(headers=env.headers("alice"), checks=CHECKS)
    _assert_error_shape(response)
    for token in env.tokens.values():
        assert token not in response.text


@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_unauthenticated_requests_are_refused_in_the_error_shape(case: Any, env: tg.SandboxEnv) -> None:
    response = case.call(headers={"Authorization": "token not-a-valid-token"})
    assert response.status_code < 500
    _assert_error_shape(response)
    if case.operation.definition.raw.get("security"):  # every route but the public ones
        assert response.status_code in (400, 401, 404, 405), response.text

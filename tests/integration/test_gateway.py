"""The gateway through its real ASGI app, on a real control DB and warehouse.

The environment is made by the real code paths: ``run_init(demo=True)`` (demo users,
projects and grants), ``synthesize`` at a small scale, ``ServiceContext.from_settings``.
Only the hub is replaced: a test authenticator maps fixed random tokens to hub users
(the HubAuth round trip is covered by the hub tests).

``build_sandbox`` is shared with ``test_client.py`` and ``test_gateway_schema.py``.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from sandbox.access import registry
from sandbox.audit import store as audit_store
from sandbox.cli.init_cmd import run_init
from sandbox.config import REPO_ROOT, Settings
from sandbox.control.db import session_scope
from sandbox.gateway.app import create_app
from sandbox.gateway.auth import StaticTokenAuthenticator
from sandbox.gateway.models import ColumnPublic, DatasetPublic
from sandbox.services.queries import ServiceContext
from sandbox.synth.run import synthesize

PREFIX = "/services/sandbox/"
API = f"{PREFIX}api/v1/"
SCALE = 2000
DATASETS = ("enterprise_registry", "enterprise_tax", "venues", "venue_daily_visitors")
HUB_USERS = ("alice", "bob", "frank", "carol", "mallory", "zed")  # zed: hub user without a sandbox account
GROUP_SQL = (
    "SELECT credit_grade, COUNT(*) AS n, AVG(vat_paid_wan) AS avg_vat "
    "FROM enterprise_tax GROUP BY credit_grade"
)
ERROR_KEYS = {"code", "message", "hint"}


@dataclass
class SandboxEnv:
    settings: Settings
    ctx: ServiceContext
    tokens: dict[str, str]  # user -> token

    @property
    def authenticator(self) -> StaticTokenAuthenticator:
        return StaticTokenAuthenticator({tok: user for user, tok in self.tokens.items()})

    def app(self) -> Any:
        return create_app(self.settings, ctx=self.ctx, auth=self.authenticator, prefix=PREFIX)

    def headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"token {self.tokens[user]}"}


def build_sandbox(root: Path, datasets: tuple[str, ...] = DATASETS) -> SandboxEnv:
    """Data dir, migrated control DB with the demo accounts, a small synthetic warehouse.

    Adds ``mallory``, a fin-lab member whose account is then revoked.
    """
    settings = Settings(
        data_dir=root,
        policy_dir=REPO_ROOT / "policies",
        warehouse_url_override=f"duckdb:///{root / 'warehouse.duckdb'}",
        control_db_url_override=f"sqlite:///{root / 'control.sqlite'}",
    )
    run_init(settings, demo=True, demo_password="demo-password-for-tests")
    ctx = ServiceContext.from_settings(settings)
    with session_scope(ctx.control_engine, immediate=True) as session:
        registry.create_user(session, "mallory", "researcher", actor="admin")
        registry.add_member(session, "fin-lab", "mallory", actor="alice")
        registry.set_status(session, "mallory", "revoked", actor="admin", reason="test")
    ctx.warehouse_engine.dispose()
    synthesize(ctx.catalog, scale=SCALE, datasets=list(datasets), warehouse_url=settings.warehouse_url)
    ctx.close()
    ctx = ServiceContext.from_settings(settings)
    tokens = {user: f"tok-{user}-{secrets.token_hex(16)}" for user in HUB_USERS}
    return SandboxEnv(settings=settings, ctx=ctx, tokens=tokens)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxEnv]:
    sandbox = build_sandbox(tmp_path_factory.mktemp("gateway"))
    yield sandbox
    sandbox.ctx.close()


class Gateway:
    """A synchronous facade over an httpx AsyncClient on the ASGI app."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(
        self, method: str, path: str, user_headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                return await client.request(method, API + path, headers=user_headers or {}, **kw)

        return asyncio.run(call())


@pytest.fixture(scope="module")
def gw(env: SandboxEnv) -> Gateway:
    return Gateway(env.app())


def _error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == ERROR_KEYS
    assert body["error"]["code"] == code, body
    return body["error"]


def _query(gw: Gateway, env: SandboxEnv, user: str, body: dict[str, Any]) -> httpx.Response:
    return gw.request("POST", "query", env.headers(user), json=body)


# --------------------------------------------------------------------------- identity


def test_health_needs_no_token(gw: Gateway) -> None:
    response = gw.request("GET", "health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_whoami_reads_the_sandbox_registry(gw: Gateway, env: SandboxEnv) -> None:
    body = gw.request("GET", "whoami", env.headers("alice")).json()
    assert body["name"] == "alice"
    assert body["role"] == "researcher"
    assert body["status"] == "approved"
    assert [p["name"] for p in body["projects"]] == ["fin-lab"]


@pytest.mark.parametrize("path", ["whoami", "catalog", "datasets/enterprise_tax", "budget"])
def test_missing_token_is_refused(gw: Gateway, path: str) -> None:
    _error(gw.request("GET", path), 401, "authentication_failed")


def test_unknown_token_is_refused(gw: Gateway) -> None:
    _error(gw.request("GET", "catalog", {"Authorization": "token not-a-token"}), 401, "authentication_failed")


def test_bearer_form_is_accepted(gw: Gateway, env: SandboxEnv) -> None:
    response = gw.request("GET", "whoami", {"Authorization": f"Bearer {env.tokens['alice']}"})
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["whoami", "catalog", "budget", "datasets/venues/rows"])
def test_revoked_users_token_is_refused_everywhere(gw: Gateway, env: SandboxEnv, path: str) -> None:
    _error(gw.request("GET", path, env.headers("mallory")), 403, "account_inactive")


def test_revoked_user_cannot_query(gw: Gateway, env: SandboxEnv) -> None:
    response = _query(gw, env, "mallory", {"sql": GROUP_SQL, "epsilon": "0.1", "project": "fin-lab"})
    _error(response, 403, "account_inactive")


def test_hub_user_without_sandbox_account_is_refused(gw: Gateway, env: SandboxEnv) -> None:
    err = _error(gw.request("GET", "catalog", env.headers("zed")), 403, "access_denied")
    assert "register" in err["hint"]


# --------------------------------------------------------------------------- catalogue


def test_catalog_lists_every_dataset(gw: Gateway, env: SandboxEnv) -> None:
    body = gw.request("GET", "catalog", env.headers("alice")).json()
    ids = [d["id"] for d in body["datasets"]]
    assert sorted(ids) == sorted(env.ctx.catalog.datasets)
    tax = next(d for d in body["datasets"] if d["id"] == "enterprise_tax")
    assert tax["tier"] == "conditional"
    assert tax["provider_names"] and tax["name_zh"] and tax["name_en"]


def test_describe_gives_public_metadata_only(gw: Gateway, env: SandboxEnv) -> None:
    body = gw.request("GET", "datasets/enterprise_tax", env.headers("bob")).json()
    assert body["id"] == "enterprise_tax"
    assert body["rows_visible"] is False and body["dp_required"] is True
    assert body["privacy_unit"] == "uscc"
    cols = {c["name"]: c for c in body["columns"]}
    assert cols["credit_grade"]["domain"] == ["A", "B", "M", "C", "D"]
    assert cols["vat_paid_wan"]["bounds"] == {"lower": "0", "upper": "50000"}
    assert set(body["budgets"]) == {"per_query_max", "per_user", "per_project", "global_cap", "delta"}
    # policy fields only: nothing computed from the rows (counts, sums, statistics)
    assert set(body) == set(DatasetPublic.model_fields)
    assert all(set(c) == set(ColumnPublic.model_fields) for c in body["columns"])


def test_describe_of_open_dataset_has_no_budgets(gw: Gateway, env: SandboxEnv) -> None:
    body = gw.request("GET", "datasets/venues", env.headers("alice")).json()
    assert body["tier"] == "open" and body["rows_visible"] is True and body["budgets"] is None


def test_unknown_dataset(gw: Gateway, env: SandboxEnv) -> None:
    _error(gw.request("GET", "datasets/no_such_data", env.headers("alice")), 404, "unknown_dataset")


# --------------------------------------------------------------------------- DP queries


def test_query_happy_path_for_alice_on_fin_lab(gw: Gateway, env: SandboxEnv) -> None:
    before = gw.request("GET", "budget?project=fin-lab", env.headers("alice")).json()
    response = _query(gw, env, "alice", {"sql": GROUP_SQL, "epsilon": "0.5", "project": "fin-lab"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dataset"] == "enterprise_tax" and body["project"] == "fin-lab"
    assert body["cached"] is False
    assert Decimal(body["epsilon_spent"]) > 0
    assert body["columns"] == ["credit_grade", "n", "avg_vat"]
    assert body["key_columns"] == ["credit_grade"]
    # every key of the public domain is released, each with a half-width for its noisy cells
    assert sorted(r[0] for r in body["rows"]) == sorted(["A", "B", "M", "C", "D"])
    assert len(body["ci95"]) == len(body["rows"])
    for ci in body["ci95"]:
        assert ci[0] is None and ci[1] is not None and ci[1] > 0
    row = next(b for b in before["budgets"] if b["dataset"] == "enterprise_tax")
    spent = Decimal(body["epsilon_spent"])
    assert Decimal(body["budget"]["project_remaining"]) == Decimal(row["project_remaining"]) - spent
    assert Decimal(body["budget"]["user_spent"]) == Decimal(row["user_spent"]) + spent


def test_identical_query_returns_the_stored_release_at_no_cost(gw: Gateway, env: SandboxEnv) -> None:
    body = {"sql": "SELECT tax_year, COUNT(*) FROM enterprise_tax GROUP BY tax_year", "epsilon": "0.2"}
    first = _query(gw, env, "alice", body).json()
    second = _query(gw, env, "alice", body).json()
    assert second["release_id"] == first["release_id"]
    assert second["cached"] is True and second["epsilon_spent"] == "0"
    assert second["rows"] == first["rows"]


def test_project_may_be_omitted_when_the_caller_has_one(gw: Gateway, env: SandboxEnv) -> None:
    response = _query(gw, env, "alice", {"sql": "SELECT COUNT(*) FROM enterprise_tax", "epsilon": "0.1"})
    assert response.status_code == 200, response.text
    assert response.json()["project"] == "fin-lab"


def test_caller_without_project_must_name_one(gw: Gateway, env: SandboxEnv) -> None:
    response = _query(gw, env, "carol", {"sql": "SELECT COUNT(*) FROM enterprise_tax", "epsilon": "0.1"})
    _error(response, 400, "invalid_request")


def test_select_star_is_refused_with_its_documented_code(gw: Gateway, env: SandboxEnv) -> None:
    response = _query(gw, env, "alice", {"sql": "SELECT * FROM enterprise_tax", "epsilon": "0.1"})
    err = _error(response, 400, "query_select_star")
    assert err["hint"]


def test_dataset_without_grant_is_refused(gw: Gateway, env: SandboxEnv) -> None:
    response = _query(
        gw,
        env,
        "alice",
        {"sql": "SELECT COUNT(*) FROM outpatient_visits", "epsilon": "0.1", "project": "fin-lab"},
    )
    _error(response, 403, "no_grant")


def test_non_member_is_refused(gw: Gateway, env: SandboxEnv) -> None:
    response = _query(
        gw,
        env,
        "bob",
        {"sql": "SELECT COUNT(*) FROM transit_stations", "epsilon": "0.1", "project": "mobility-lab"},
    )
    _error(response, 403, "not_project_member")


def test_epsilon_above_the_per_query_maximum_is_refused(gw: Gateway, env: SandboxEnv) -> None:
    response = _query(gw, env, "alice", {"sql": "SELECT COUNT(*) FROM enterprise_tax", "epsilon": "5"})
    _error(response, 403, "epsilon_too_large")


def test_preview_spends_nothing(gw: Gateway, env: SandboxEnv) -> None:
    before = gw.request("GET", "budget", env.headers("alice")).json()
    response = gw.request(
        "POST",
        "preview",
        env.headers("alice"),
        json={
            "sql": "SELECT credit_grade, COUNT(*) FROM enterprise_tax GROUP BY credit_grade",
            "epsilon": "0.3",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dataset"] == "enterprise_tax" and Decimal(body["epsilon"]) > 0
    assert body["aggregates"] and body["aggregates"][0]["ci95"] > 0
    assert body["aggregates"][0]["rank_error95"] is None
    assert gw.request("GET", "budget", env.headers("alice")).json() == before


def test_preview_of_a_quantile_gives_its_rank_error(gw: Gateway, env: SandboxEnv) -> None:
    response = gw.request(
        "POST",
        "preview",
        env.headers("alice"),
        json={"sql": "SELECT COUNT(*), MEDIAN(vat_paid_wan) FROM enterprise_tax", "epsilon": "0.4"},
    )
    assert response.status_code == 200, response.text
    count, median = response.json()["aggregates"]
    assert count["ci95"] > 0 and count["rank_error95"] is None
    assert median["aggregate"] == "quantile" and median["ci95"] is None
    assert median["rank_error95"] > 0

    # the release of the same query carries the same rank error (and no value interval)
    released = gw.request(
        "POST",
        "query",
        env.headers("alice"),
        json={"sql": "SELECT COUNT(*), MEDIAN(vat_paid_wan) FROM enterprise_tax", "epsilon": "0.4"},
    )
    assert released.status_code == 200, released.text
    body = released.json()
    quantile_column = body["columns"][1]
    assert body["ci95"][0][1] is None
    assert body["rank_error95"] == {quantile_column: median["rank_error95"]}


def test_budget_lists_the_projects_dp_datasets(gw: Gateway, env: SandboxEnv) -> None:
    body = gw.request("GET", "budget", env.headers("bob")).json()
    datasets = {(b["project"], b["dataset"]) for b in body["budgets"]}
    assert ("fin-lab", "enterprise_tax") in datasets
    assert all(b["project"] == "fin-lab" for b in body["budgets"])
    assert ("fin-lab", "enterprise_registry") not in datasets  # open: no DP budget
    for row in body["budgets"]:
        assert Decimal(row["available"]) <= Decimal(row["user_remaining"])


def test_budget_of_someone_elses_project_is_refused(gw: Gateway, env: SandboxEnv) -> None:
    _error(gw.request("GET", "budget?project=mobility-lab", env.headers("alice")), 403, "not_project_member")


# --------------------------------------------------------------------------- open data


def test_open_rows_are_paged_in_a_stable_order(gw: Gateway, env: SandboxEnv) -> None:
    whole = gw.request("GET", "datasets/venues/rows?limit=1000", env.headers("alice")).json()
    assert whole["next_offset"] is None
    assert whole["citation"].startswith("数据来源")
    rows: list[list[Any]] = []
    offset: int | None = 0
    pages = 0
    while offset is not None:
        page = gw.request("GET", f"datasets/venues/rows?offset={offset}&limit=7", env.headers("frank")).json()
        assert page["columns"] == whole["columns"]
        rows.extend(page["rows"])
        offset = page["next_offset"]
        pages += 1
    assert rows == whole["rows"]
    assert pages == -(-len(whole["rows"]) // 7)
    assert "_rank" not in whole["columns"]


def test_rows_of_a_non_open_dataset_are_refused(gw: Gateway, env: SandboxEnv) -> None:
    _error(gw.request("GET", "datasets/enterprise_tax/rows", env.headers("alice")), 403, "access_denied")


def test_open_dataset_not_loaded_yet_is_not_found(gw: Gateway, env: SandboxEnv) -> None:
    assert "medical_institutions" not in DATASETS
    _error(gw.request("GET", "datasets/medical_institutions/rows", env.headers("alice")), 404, "not_found")


def test_open_row_reads_are_audited(gw: Gateway, env: SandboxEnv) -> None:
    gw.request("GET", "datasets/venue_daily_visitors/rows?limit=5", env.headers("bob"))
    with session_scope(env.ctx.control_engine) as session:
        from sqlalchemy import select

        from sandbox.control.models import AuditEntry

        entries = session.scalars(select(AuditEntry).where(AuditEntry.kind == "open_data.rows_read")).all()
        assert any(e.actor == "bob" and e.payload()["dataset"] == "venue_daily_visitors" for e in entries)


def test_first_use_of_a_token_is_audited_as_a_login_without_the_token(gw: Gateway, env: SandboxEnv) -> None:
    gw.request("GET", "whoami", env.headers("frank"))
    gw.request("GET", "whoami", env.headers("frank"))
    with session_scope(env.ctx.control_engine) as session:
        from sqlalchemy import select

        from sandbox.control.models import AuditEntry

        logins = session.scalars(
            select(AuditEntry).where(AuditEntry.kind == "user.login", AuditEntry.actor == "frank")
        ).all()
        assert len(logins) == 1
        assert env.tokens["frank"] not in logins[0].data


# --------------------------------------------------------------------------- export gate


def test_export_submission_and_status(gw: Gateway, env: SandboxEnv) -> None:
    csv = b"credit_grade,n\nA,1200\nB,900\n"
    response = gw.request(
        "POST",
        "exports",
        env.headers("alice"),
        data={"purpose": "Table 1 of the working paper", "project": "fin-lab"},
        files={"file": ("table1.csv", csv, "text/csv")},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["filename"] == "table1.csv" and body["project"] == "fin-lab"
    assert body["status"] in {"rejected", "under_review", "approved"}
    assert {c["check"] for c in body["checks"]} >= {"file_type", "identifiers", "provenance"}
    again = gw.request("GET", f"exports/{body['id']}", env.headers("alice")).json()
    assert again["sha256"] == body["sha256"]
    listed = gw.request("GET", "exports", env.headers("alice")).json()["exports"]
    assert body["id"] in [e["id"] for e in listed]
    _error(gw.request("GET", f"exports/{body['id']}", env.headers("frank")), 403, "access_denied")


def test_export_needs_a_purpose_and_a_file(gw: Gateway, env: SandboxEnv) -> None:
    _error(
        gw.request("POST", "exports", env.headers("alice"), files={"file": ("a.csv", b"x\n1\n", "text/csv")}),
        400,
        "invalid_request",
    )
    _error(gw.request("POST", "exports", env.headers("alice"), data={"purpose": "p"}), 400, "invalid_request")


# --------------------------------------------------------------------------- the error shape


def _error_responses(gw: Gateway, env: SandboxEnv) -> list[httpx.Response]:
    alice = env.headers("alice")
    return [
        gw.request("GET", "catalog"),
        gw.request("GET", "catalog", {"Authorization": "Basic " + env.tokens["alice"]}),
        gw.request("GET", "catalog", {"Authorization": "token " + env.tokens["alice"] + "x"}),
        gw.request("GET", "whoami", env.headers("mallory")),
        gw.request("GET", "datasets/nope", alice),
        gw.request("GET", "datasets/NOPE", alice),
        gw.request("GET", "datasets/enterprise_tax/rows", alice),
        gw.request("GET", "datasets/venues/rows?limit=0", alice),
        gw.request("GET", "no/such/path", alice),
        gw.request("DELETE", "catalog", alice),
        gw.request("POST", "query", alice, content=b"{not json"),
        gw.request("POST", "query", alice, json={"epsilon": "0.1"}),
        gw.request("POST", "query", alice, json={"sql": "SELECT 1", "epsilon": "abc"}),
        gw.request("POST", "query", alice, json={"sql": "DROP TABLE enterprise_tax", "epsilon": "0.1"}),
        gw.request("POST", "query", alice, json={"sql": "SELECT * FROM enterprise_tax", "epsilon": "0.1"}),
        gw.request(
            "POST", "query", alice, json={"sql": "SELECT COUNT(*) FROM enterprise_tax", "epsilon": "9"}
        ),
        gw.request(
            "POST", "preview", alice, json={"sql": "SELECT COUNT(*) FROM hotel_stays", "project": "fin-lab"}
        ),
        gw.request("GET", "budget?project=nope", alice),
        gw.request("GET", "exports/999999", alice),
    ]


def test_every_error_has_the_one_documented_shape(gw: Gateway, env: SandboxEnv) -> None:
    for response in _error_responses(gw, env):
        assert response.status_code >= 400, response.text
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert set(body) == {"error"}, body
        assert set(body["error"]) == ERROR_KEYS, body
        assert all(isinstance(body["error"][k], str) for k in ERROR_KEYS)
        assert body["error"]["code"] and body["error"]["message"]
        assert response.headers.get("x-request-id")


def test_no_token_appears_in_any_error(gw: Gateway, env: SandboxEnv) -> None:
    for response in _error_responses(gw, env):
        for token in env.tokens.values():
            assert token not in response.text
            assert all(token not in v for v in response.headers.values())


def test_unexpected_exceptions_are_internal_errors_with_only_a_request_id(env: SandboxEnv) -> None:
    class Exploding:
        @property
        def datasets(self) -> Any:
            raise RuntimeError("secret detail: /srv/warehouse password=hunter2")

    ctx = SimpleNamespace(catalog=Exploding(), control_engine=env.ctx.control_engine, settings=env.settings)
    app = create_app(
        env.settings, ctx=ctx, auth=StaticTokenAuthenticator({env.tokens["alice"]: "alice"}), prefix=PREFIX
    )
    response = Gateway(app).request("GET", "catalog", env.headers("alice"))
    err = _error(response, 500, "internal_error")
    rid = response.headers["x-request-id"]
    assert rid in err["message"]
    assert (
        "secret" not in response.text
        and "hunter2" not in response.text
        and "RuntimeError" not in response.text
    )


def test_openapi_is_served_and_documents_the_error_shape(gw: Gateway) -> None:
    spec = gw.request("GET", "openapi.json").json()
    assert f"{API}query" in spec["paths"]
    assert "ErrorResponse" in spec["components"]["schemas"]
    query_responses = spec["paths"][f"{API}query"]["post"]["responses"]
    assert {"400", "401", "403"} <= set(query_responses)
    assert "422" not in query_responses
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_audit_chain_verifies_after_all_requests(env: SandboxEnv) -> None:
    with session_scope(env.ctx.control_engine) as session:
        result = audit_store.verify(session)
    assert result.ok, result

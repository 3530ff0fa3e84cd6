"""A sandbox for the governance tests, made by the real code paths (imported by the other
``test_governance_*`` modules as a sibling module).

``run_init(demo=True)`` (demo accounts, projects, grants), ``synthesize`` of the finance
datasets at a small scale, ``seed_demo_enterprise`` (the enterprise ``ent`` with the USCC of a
synthetic enterprise), a few more accounts through ``sandbox.access.registry``, and the real
gateway app with the gateway's test authenticator. Only the hub is replaced: a recording
:class:`FakeStopper` stands in for the hub API (the real hub is the ``hub`` tests' job).

Accounts: admin (admin), alice (researcher, lead of fin-lab), bob (bank BANK_A, fin-lab),
frank (researcher, lead of mobility-lab), carol (steward tax_bureau), dave (steward
health_commission), erin (auditor), ent (enterprise), and added here: sam (steward
hr_social_security), tim (steward transport_commission), bea (bank BANK_B), grace
(researcher, lead of credit-lab, a project with no grants), hugo (researcher, member of
credit-lab), ivy (researcher).
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import MetaData, func, select

from sandbox.access import registry
from sandbox.catalog.warehouse import dataset_table
from sandbox.cli.init_cmd import run_init
from sandbox.config import REPO_ROOT, Settings
from sandbox.control.db import session_scope
from sandbox.gateway.app import create_app
from sandbox.gateway.auth import StaticTokenAuthenticator
from sandbox.governance.demo import seed_demo_enterprise
from sandbox.governance.sanctions import SanctionServices, ServiceExportWithdrawer, StopOutcome
from sandbox.services.queries import ServiceContext
from sandbox.synth.run import synthesize

PREFIX = "/services/sandbox/"
API = f"{PREFIX}api/v1/"
SCALE = 1000
DATASETS = ("enterprise_registry", "enterprise_tax", "social_insurance", "penalties")
PASSWORD = "demo-password-for-tests"
HUB_USERS = (
    "admin",
    "alice",
    "bob",
    "frank",
    "carol",
    "dave",
    "erin",
    "ent",
    "sam",
    "bea",
    "grace",
    "hugo",
    "ivy",
    "tim",
)


@dataclass
class FakeStopper:
    """Records which users' servers the sanctions asked the hub to stop."""

    calls: list[str] = field(default_factory=list)

    def stop_servers(self, username: str) -> StopOutcome:
        self.calls.append(username)
        return StopOutcome("stopped", [""], "fake hub")


@dataclass
class World:
    settings: Settings
    ctx: ServiceContext
    uscc: str  # the demo enterprise's
    other_uscc: str  # another synthetic enterprise with tax rows
    tokens: dict[str, str]
    stopper: FakeStopper

    def services(self) -> SanctionServices:
        return SanctionServices(self.stopper, ServiceExportWithdrawer(self.ctx))

    def app(self) -> Any:
        auth = StaticTokenAuthenticator({tok: user for user, tok in self.tokens.items()})
        app = create_app(self.settings, ctx=self.ctx, auth=auth, prefix=PREFIX)
        app.state.sanction_services = self.services()
        return app

    def headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"token {self.tokens[user]}"}

    def rows_of(self, dataset: str, uscc: str) -> int:
        table = dataset_table(self.ctx.catalog.dataset(dataset), MetaData())
        with self.ctx.warehouse_engine.connect() as conn:
            return int(conn.execute(select(func.count()).where(table.c.uscc == uscc)).scalar_one())


def _other_enterprise(ctx: ServiceContext, not_this: str) -> str:
    table = dataset_table(ctx.catalog.dataset("enterprise_tax"), MetaData())
    with ctx.warehouse_engine.connect() as conn:
        return str(conn.execute(select(func.max(table.c.uscc)).where(table.c.uscc != not_this)).scalar_one())


def build_world(root: Path) -> World:
    settings = Settings(
        data_dir=root,
        policy_dir=REPO_ROOT / "policies",
        warehouse_url_override=f"duckdb:///{root / 'warehouse.duckdb'}",
        control_db_url_override=f"sqlite:///{root / 'control.sqlite'}",
    )
    run_init(settings, demo=True, demo_password=PASSWORD)
    ctx = ServiceContext.from_settings(settings)
    ctx.warehouse_engine.dispose()
    synthesize(ctx.catalog, scale=SCALE, datasets=list(DATASETS), warehouse_url=settings.warehouse_url)
    ctx.close()
    ctx = ServiceContext.from_settings(settings)
    seed = seed_demo_enterprise(ctx, ctx.warehouse_engine, password=PASSWORD, with_consent=False)
    assert seed.uscc is not None
    with session_scope(ctx.control_engine, immediate=True) as s:
        registry.create_user(
            s, "sam", "steward", department="hr_social_security", organisation="HR bureau", actor="admin"
        )
        registry.create_user(s, "bea", "bank", organisation="BANK_B", actor="admin")
        registry.create_user(s, "tim", "steward", department="transport_commission", actor="admin")
        registry.create_user(s, "grace", "researcher", organisation="Credit institute", actor="admin")
        registry.create_user(s, "hugo", "researcher", organisation="Credit institute", actor="admin")
        registry.create_user(s, "ivy", "researcher", organisation="Credit institute", actor="admin")
        registry.create_project(s, "credit-lab", title="Credit research", lead="grace", actor="admin")
        registry.add_member(s, "credit-lab", "hugo", actor="grace")
    tokens = {user: f"tok-{user}-{secrets.token_hex(8)}" for user in HUB_USERS}
    return World(settings, ctx, seed.uscc, _other_enterprise(ctx, seed.uscc), tokens, FakeStopper())


class Gateway:
    """A synchronous facade over an httpx client on the ASGI app."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                url = path if path.startswith("/") else API + path
                return await client.request(method, url, headers=headers or {}, **kwargs)

        return asyncio.run(call())


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "hint"}, body
    assert body["error"]["code"] == code, body
    return body["error"]


APPLICATION: dict[str, Any] = {
    "scenario": "普惠金融信用评估 / SME credit assessment",
    "purpose": "Study how tax credit grades relate to district and industry for small firms.",
    "duration_days": 30,
    "security_measures": "Sandbox only; two-person review of outputs; no copies outside the lab.",
    "undertaking": True,
}


def test_the_world_is_built_by_real_code_paths(tmp_path: Path) -> None:
    world = build_world(tmp_path)
    try:
        assert world.uscc.startswith("91") and world.uscc != world.other_uscc
        assert world.rows_of("enterprise_tax", world.uscc) > 0
        with session_scope(world.ctx.control_engine) as s:
            ent = registry.get_user(s, "ent")
            assert (ent.role, ent.uscc) == ("enterprise", world.uscc)
    finally:
        world.ctx.close()

"""The gateway sweeps abandoned budget reservations while it runs (sandbox.gateway.sweeper).

A real service context (migrated SQLite control DB, the policies, a SQLite warehouse); the
app's lifespan is entered as the ASGI server enters it, and requests go through httpx's ASGI
transport.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import test_ledger_service as svc  # sibling test module: environment helpers
from sqlalchemy import select

from sandbox.access import registry
from sandbox.audit import store as audit_store
from sandbox.control.db import migrate, session_scope
from sandbox.control.models import AuditEntry
from sandbox.gateway import sweeper
from sandbox.gateway.app import create_app
from sandbox.gateway.auth import StaticTokenAuthenticator
from sandbox.ledger import store as ledger
from sandbox.ledger.models import Release
from sandbox.services.queries import ServiceContext

PREFIX = "/services/sandbox/"


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[ServiceContext]:
    control_url = f"sqlite:///{tmp_path / 'control.sqlite'}"
    migrate(control_url)
    context = ServiceContext.from_settings(svc.build_settings(tmp_path, control_url))
    svc.seed_people(context.control_engine)
    yield context
    context.close()


def _app(ctx: ServiceContext, *, interval: float | None = sweeper.SWEEP_INTERVAL) -> Any:
    app = create_app(ctx.settings, ctx=ctx, auth=StaticTokenAuthenticator({}), prefix=PREFIX)
    app.state.sweep_interval = interval
    return app


def _reserve(ctx: ServiceContext, user: str, *, minutes_ago: float) -> str:
    with session_scope(ctx.control_engine) as s:
        account = registry.find_user(s, user)
        project = registry.find_project(s, "fin-lab")
        assert account is not None and project is not None
        party = ledger.Party(account.id, account.username, project.id, project.name)
    res = ledger.reserve(
        ctx.control_engine,
        party,
        dataset=svc.DATASET,
        budgets=ctx.catalog.budgets(svc.DATASET),
        fingerprint=f"{user}-{minutes_ago}",
        epsilon=Decimal("0.5"),
        charge=Decimal("0.5"),
    )
    _age(ctx, res.release_id, minutes_ago)
    return res.release_id


def _age(ctx: ServiceContext, release_id: str, minutes: float) -> None:
    with session_scope(ctx.control_engine, immediate=True) as s:
        row = s.get(Release, release_id)
        assert row is not None
        row.created_at = row.created_at - timedelta(minutes=minutes)


def _status(ctx: ServiceContext, release_id: str) -> str:
    with session_scope(ctx.control_engine) as s:
        row = s.get(Release, release_id)
        assert row is not None
        return row.status


def _running(app: Any, body: Callable[[], Awaitable[None]]) -> None:
    """Run ``body`` while the app is started (its lifespan entered), then stop it."""

    async def main() -> None:
        async with app.router.lifespan_context(app):
            await body()

    asyncio.run(main())


async def _health(app: Any) -> int:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        return (await client.get(f"{PREFIX}api/v1/health")).status_code


async def _wait_for(ctx: ServiceContext, release_id: str, status: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while _status(ctx, release_id) != status:
        if time.monotonic() > deadline:
            pytest.fail(f"release {release_id} still {_status(ctx, release_id)!r}, expected {status!r}")
        await asyncio.sleep(0.05)


def test_gateway_start_sweeps_old_reservations_only(ctx: ServiceContext) -> None:
    old = _reserve(ctx, "alice", minutes_ago=30)
    fresh = _reserve(ctx, "bob", minutes_ago=1)
    app = _app(ctx)

    async def body() -> None:
        await _wait_for(ctx, old, "abandoned")
        assert await _health(app) == 200

    _running(app, body)
    assert _status(ctx, fresh) == "reserved"  # may still be running: left alone
    with session_scope(ctx.control_engine) as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.kind == "budget.abandoned")).one()
        assert entry.actor is None and entry.payload()["release_id"] == old  # the system swept it
        assert audit_store.verify(s).ok
        assert ledger.verify(s) == []


def test_gateway_keeps_sweeping_while_it_runs(ctx: ServiceContext) -> None:
    # the gateway restarted right after a crash: the dead query's reservation is still young
    dead = _reserve(ctx, "alice", minutes_ago=0)

    async def body() -> None:
        await asyncio.sleep(0.3)
        assert _status(ctx, dead) == "reserved"
        _age(ctx, dead, 20)  # ... and, a while later, past the cut-off
        await _wait_for(ctx, dead, "abandoned")

    _running(_app(ctx, interval=0.05), body)


def test_no_sweep_when_disabled(ctx: ServiceContext) -> None:
    old = _reserve(ctx, "alice", minutes_ago=30)
    _running(_app(ctx, interval=None), lambda: asyncio.sleep(0.3))
    assert _status(ctx, old) == "reserved"


def test_sweep_skips_a_control_db_behind_the_code(
    ctx: ServiceContext, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    behind = f"sqlite:///{tmp_path / 'old-control.sqlite'}"
    migrate(behind, "0004_governance")
    (tmp_path / "other").mkdir()
    other = ServiceContext.from_settings(svc.build_settings(tmp_path / "other", behind))
    try:
        with caplog.at_level(logging.WARNING, logger="sandbox.gateway.sweeper"):
            assert sweeper.sweep_once(other) == 0
        assert "reservation sweep skipped" in caplog.text
    finally:
        other.close()
    missing = tmp_path / "never-initialised.sqlite"
    (tmp_path / "none").mkdir()
    bare = ServiceContext.from_settings(svc.build_settings(tmp_path / "none", f"sqlite:///{missing}"))
    try:
        assert sweeper.sweep_once(bare) == 0
        assert not missing.exists()  # the sweep did not create it
    finally:
        bare.close()
    assert sweeper.sweep_once(ctx) == 0  # at head and nothing to sweep


def test_a_failing_sweep_is_logged_and_the_gateway_keeps_serving(
    ctx: ServiceContext, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        settings = ctx.settings
        catalog = ctx.catalog

        @property
        def control_engine(self) -> Any:
            raise RuntimeError("control DB unreachable")

    app = create_app(ctx.settings, ctx=Broken(), auth=StaticTokenAuthenticator({}), prefix=PREFIX)

    async def body() -> None:
        deadline = time.monotonic() + 10
        while "reservation sweep failed" not in caplog.text and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await _health(app) == 200

    with caplog.at_level(logging.ERROR, logger="sandbox.gateway.sweeper"):
        _running(app, body)
    assert "reservation sweep failed" in caplog.text

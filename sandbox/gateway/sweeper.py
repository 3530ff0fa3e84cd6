"""The gateway resolves reservations that dead processes left in flight (docs/budget.md).

When the gateway starts, and then every :data:`SWEEP_INTERVAL` seconds while it runs, it calls
``sandbox.ledger.store.sweep_reservations`` on its control DB in a worker thread. The cut-off is
``ABANDON_AFTER`` (15 minutes). Reservations older than that become ``abandoned``. Their charges are
kept, and each one gets a ``budget.abandoned`` audit event with the system as actor. A
gateway restarted right after a crash finds the crashed query's reservation still young; a
later run picks it up once it is past the cut-off. This also covers reservations left by
``sandbox query`` processes.

A failed sweep is logged and retried at the next interval; it never stops the gateway.
The sweep is skipped while the control DB does not exist or is not at the code's migration
head (before ``sandbox init``, or when the code is newer than the DB).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

log = logging.getLogger("sandbox.gateway.sweeper")

#: Seconds between two sweeps while the gateway runs (the first one runs at start-up).
SWEEP_INTERVAL = 300.0


def sweep_once(ctx: Any) -> int:
    """One sweep of the service context's control DB; the number of reservations abandoned."""
    from sandbox.control.db import current_revision, head_revision
    from sandbox.ledger import store

    engine = ctx.control_engine
    database = engine.url.database or ""
    file_db = engine.url.get_backend_name() == "sqlite" and database not in ("", ":memory:")
    if file_db and not Path(database).exists():  # not initialised: do not create an empty file
        log.warning("control DB %s does not exist: reservation sweep skipped", database)
        return 0
    revision = current_revision(engine)
    if revision != head_revision():
        log.warning("control DB at revision %s, not %s: reservation sweep skipped", revision, head_revision())
        return 0
    swept = store.sweep_reservations(engine)
    if swept:
        log.warning(
            "marked %d reservation(s) abandoned after %s in flight (charges kept): %s",
            len(swept),
            store.ABANDON_AFTER,
            ", ".join(item.release_id for item in swept),
        )
    return len(swept)


async def _sweep_forever(app: FastAPI, interval: float) -> None:
    while True:
        try:
            await asyncio.to_thread(sweep_once, app.state.ctx)
        except Exception:
            log.exception("reservation sweep failed; next try in %.0f s", interval)
        await asyncio.sleep(interval)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run the sweep at start-up and every ``app.state.sweep_interval`` seconds (None: never)."""
    interval = getattr(app.state, "sweep_interval", SWEEP_INTERVAL)
    task = asyncio.create_task(_sweep_forever(app, interval)) if interval is not None else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


__all__ = ["SWEEP_INTERVAL", "lifespan", "sweep_once"]

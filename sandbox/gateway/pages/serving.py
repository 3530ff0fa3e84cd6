"""Run several ASGI apps on their own ports in one process and one event loop (uvicorn).

``sandbox gateway serve`` uses it for the JSON API listener and the pages listener: one
process, one service context (engines, caches) shared by both, each app on its own socket.

Signals are handled here, once, for every server: SIGINT or SIGTERM (JupyterHub stops a
managed service with SIGINT, then SIGTERM) asks all of them to shut down gracefully, and
when any one stops (say, its port was taken) the others stop too, so the hub sees the
service exit instead of half of it running.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn


@dataclass(frozen=True)
class Listener:
    app: Any
    host: str
    port: int


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to :func:`serve`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve_all(servers: Sequence[uvicorn.Server]) -> None:
    loop = asyncio.get_running_loop()

    def stop_all(*_: Any) -> None:
        for server in servers:
            server.should_exit = True

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop_all)
            installed.append(sig)
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stop_all()
        await asyncio.gather(*tasks)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def serve(listeners: Sequence[Listener], *, log_level: str = "info") -> None:
    """Serve every listener until a signal arrives or one of them stops."""
    servers = [
        _Server(
            uvicorn.Config(
                item.app,
                host=item.host,
                port=item.port,
                log_level=log_level,
                proxy_headers=False,
                workers=1,
            )
        )
        for item in listeners
    ]
    asyncio.run(_serve_all(servers))

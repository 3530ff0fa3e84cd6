"""The data sandbox.

In a notebook: ``import sandbox; sb = sandbox.connect()``. Importing this package loads
nothing else: ``connect`` imports the notebook client (``sandbox.client``: httpx + pandas)
on first use, and never a server module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.client.session import Sandbox

__all__ = ["connect"]


def connect(*args: Any, **kwargs: Any) -> Sandbox:
    """Connect to the sandbox gateway; see :func:`sandbox.client.connect`."""
    from sandbox.client.session import connect as _connect

    return _connect(*args, **kwargs)

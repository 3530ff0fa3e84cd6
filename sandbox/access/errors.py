"""Errors of account and project administration (re-exported from ``sandbox.errors``).

They live in ``sandbox.errors`` so the notebook client maps their codes too.
"""

from __future__ import annotations

from sandbox.errors import AlreadyExists, InvalidRequest

__all__ = ["AlreadyExists", "InvalidRequest"]

"""Test support shared by the whole suite and by ``bench/`` (no pytest fixtures here).

``require(condition, reason)``: a missing prerequisite (PostgreSQL, a hub, a
browser) skips the test locally and fails it under ``CI=true``.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require(condition: object, reason: str) -> None:
    """Skip (locally) or fail (under ``CI=true``) unless ``condition`` holds."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"prerequisite missing under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)

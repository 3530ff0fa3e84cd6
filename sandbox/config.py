"""Deployment settings (paths, URLs, secrets by env name), built once, passed down.

Behaviour (tiers, bounds, budgets, thresholds) lives in ``policies/``, never here.
Every setting has an environment variable with the ``SANDBOX_`` prefix.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Seconds a DP query's warehouse statement may run by default; the notebook client waits a
#: minute longer (``sandbox.client.transport.DEFAULT_TIMEOUT``), so it receives the error.
DEFAULT_QUERY_TIMEOUT = 300.0
#: The largest allowed limit: two thirds of the ledger sweep's 15 minutes
#: (``sandbox.ledger.store.ABANDON_AFTER``), so a statement always ends, and its reservation is
#: committed or failed, before the sweep could take it for abandoned.
MAX_QUERY_TIMEOUT = 600.0


def _env_seconds(name: str, default: float, maximum: float) -> float:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 < seconds <= maximum):
        from sandbox.errors import ConfigError

        raise ConfigError(
            f"{name}={value!r} is not a number of seconds in (0, {maximum:g}].",
            hint=f"Unset it for the default of {default:g} s, or give seconds such as 120.",
        )
    return seconds


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


@dataclass(frozen=True)
class Settings:
    """Where the sandbox keeps its state and finds its policies.

    * ``SANDBOX_DATA_DIR`` (default ``./.sandbox``): control DB, warehouse, quarantine.
    * ``SANDBOX_POLICY_DIR`` (default: the repository's ``policies/``).
    * ``SANDBOX_WAREHOUSE_URL`` (default: DuckDB file ``<data>/warehouse.duckdb``).
    * ``SANDBOX_CONTROL_DB_URL`` (default: SQLite file ``<data>/control.sqlite``).
    * ``SANDBOX_QUERY_TIMEOUT`` (seconds, default 300, at most 600): how long one DP query's
      warehouse statement may run (``sandbox.catalog.deadline``).
    """

    data_dir: Path = field(default_factory=lambda: _env_path("SANDBOX_DATA_DIR", Path.cwd() / ".sandbox"))
    policy_dir: Path = field(default_factory=lambda: _env_path("SANDBOX_POLICY_DIR", REPO_ROOT / "policies"))
    warehouse_url_override: str | None = field(
        default_factory=lambda: os.environ.get("SANDBOX_WAREHOUSE_URL")
    )
    control_db_url_override: str | None = field(
        default_factory=lambda: os.environ.get("SANDBOX_CONTROL_DB_URL")
    )
    query_timeout: float = field(
        default_factory=lambda: _env_seconds(
            "SANDBOX_QUERY_TIMEOUT", DEFAULT_QUERY_TIMEOUT, MAX_QUERY_TIMEOUT
        )
    )

    @property
    def warehouse_url(self) -> str:
        return self.warehouse_url_override or f"duckdb:///{self.data_dir / 'warehouse.duckdb'}"

    @property
    def control_db_url(self) -> str:
        return self.control_db_url_override or f"sqlite:///{self.data_dir / 'control.sqlite'}"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"


def get_settings() -> Settings:
    """Build settings from the environment (call once at the edge, pass down)."""
    return Settings()

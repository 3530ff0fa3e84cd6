"""Deployment settings (paths, URLs, secrets by env name), built once, passed down.

Behaviour (tiers, bounds, budgets, thresholds) lives in ``policies/``, never here.
Every setting has an environment variable with the ``SANDBOX_`` prefix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


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
    """

    data_dir: Path = field(default_factory=lambda: _env_path("SANDBOX_DATA_DIR", Path.cwd() / ".sandbox"))
    policy_dir: Path = field(default_factory=lambda: _env_path("SANDBOX_POLICY_DIR", REPO_ROOT / "policies"))
    warehouse_url_override: str | None = field(
        default_factory=lambda: os.environ.get("SANDBOX_WAREHOUSE_URL")
    )
    control_db_url_override: str | None = field(
        default_factory=lambda: os.environ.get("SANDBOX_CONTROL_DB_URL")
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

"""Fixtures of the end-to-end tests: a real JupyterHub + proxy + gateway per test module, and chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.browser import launched_chromium
from e2e.livehub import LiveHub, copy_data, prepared_data, running_hub


@pytest.fixture(scope="session")
def prepared_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``sandbox init --demo`` + ``sandbox synth`` once per session (each hub gets a copy)."""
    return prepared_data(tmp_path_factory.mktemp("e2e"))


@pytest.fixture(scope="module")
def demo_hub(prepared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    """A demo-mode hub (one OS user, not isolated) with the demo accounts and data."""
    data = copy_data(prepared_data_dir, tmp_path_factory.mktemp("demo-hub"), "data")
    with running_hub("demo", data, "demo") as hub:
        yield hub


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless chromium (Playwright), one per test module; skips if chromium or playwright is missing."""
    with launched_chromium() as b:
        yield b

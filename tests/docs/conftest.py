"""Fixtures of the documentation tests: notebooks executed against a live hub and gateway."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.livehub import LiveHub, copy_data, prepared_data, running_hub


@pytest.fixture(scope="module")
def docs_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    """A demo-mode hub for the notebooks (its own copy of the prepared demo data)."""
    prepared = prepared_data(tmp_path_factory.mktemp("docs-prepared"))
    data: Path = copy_data(prepared, tmp_path_factory.mktemp("docs-hub"), "data")
    with running_hub("docs", data, "demo") as hub:
        yield hub

"""Chromium for the browser tests: Debian's binary driven by Playwright (JUPYTERHUB-NOTES §5).

``launched_chromium()`` skips (or fails under ``CI=true``) when chromium or playwright is
missing; the ``browser`` fixture in ``conftest.py`` wraps it. ``hub_login`` signs a page in
at the hub's login form; ``screenshot`` saves a full page under ``test-artifacts/``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from e2e.livehub import ARTIFACTS, LiveHub
from support import require

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextlib.contextmanager
def launched_chromium() -> Iterator[Any]:
    """A headless chromium browser, closed on exit."""
    require(CHROMIUM.exists(), f"chromium missing at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is not installed in this venv")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def hub_login(page: Any, hub: LiveHub, name: str) -> None:
    """Sign ``name`` in at the hub's login form (the page's context keeps the cookies)."""
    page.goto(f"{hub.url}hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", hub.password)
    page.click("#login_submit")
    page.wait_for_load_state()


def screenshot(page: Any, name: str) -> None:
    """A full-page screenshot at ``test-artifacts/{name}.png``."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

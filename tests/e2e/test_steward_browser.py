"""A steward reviews exports in a real browser against a real hub (issue 5 acceptance).

JupyterHub 6.1.1 + configurable-http-proxy + ``sandbox gateway serve`` (API and pages
listeners), started by ``e2e.livehub.running_hub`` with the demo accounts and a small
synthetic warehouse; Debian's chromium driven by Playwright (JUPYTERHUB-NOTES §5).

1. Through the public proxy, ``/services/sandbox/api/v1/...`` is not the API (404 from the
   pages app) and ``/services/sandbox/disclosures`` answers without sign-in; on loopback
   the API answers the kernel's token.
2. alice runs a DP query with the notebook client and asks for two exports.
3. carol signs in at ``/hub/login``, opens ``/services/sandbox/exports``, sees the checks,
   approves one request and rejects the other with a reason.
4. alice downloads the approved file from her notebook client over the gateway API
   (``sb.download_export``: ``GET exports/{id}/download`` and ``.../manifest``) and is
   refused the rejected one (``InvalidTransition``).

Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e.browser import hub_login, screenshot
from e2e.livehub import ARTIFACTS, LiveHub, copy_data, running_hub

from sandbox.errors import InvalidTransition

pytestmark = [pytest.mark.hub, pytest.mark.browser]

PREFIX = "services/sandbox/"
QUERY = "SELECT credit_grade, COUNT(*) AS n FROM enterprise_tax GROUP BY credit_grade"


@pytest.fixture(scope="module")
def pages_hub(prepared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    """A demo hub (its gateway serves the pages on SANDBOX_PAGES_PORT = port + 91, reserved by livehub)."""
    data = copy_data(prepared_data_dir, tmp_path_factory.mktemp("pages-hub"), "data")
    with running_hub("steward-browser", data, "demo") as hub:
        yield hub


def _shot(page: Any, name: str) -> None:
    screenshot(page, f"steward-{name}")


def test_the_api_is_not_behind_the_public_proxy_but_the_pages_are(pages_hub: LiveHub) -> None:
    pages_hub.user("alice").login()  # the hub learns her roles at sign-in
    token = pages_hub.user_token("alice")
    auth = {"Authorization": f"token {token}"}
    for path in ("api/v1/catalog", "api/v1/health", "api/v1/openapi.json", "api/v1/disclosures"):
        r = httpx.get(f"{pages_hub.url}{PREFIX}{path}", headers=auth, follow_redirects=False, timeout=30)
        assert r.status_code == 404, (path, r.status_code)
        assert r.headers["content-type"].startswith("text/html"), path  # the pages app's 404, not JSON
        assert "enterprise_tax" not in r.text and '"datasets"' not in r.text
    public = httpx.get(f"{pages_hub.url}{PREFIX}disclosures", timeout=30)
    assert public.status_code == 200
    assert "Disclosure list" in public.text
    with pages_hub.gateway(token) as gw:  # the API itself, on loopback, for kernels
        assert gw.get("catalog").status_code == 200


def test_steward_reviews_in_the_browser_and_the_requester_downloads_through_the_gate(
    pages_hub: LiveHub, browser: Any, tmp_path: Path
) -> None:
    import sandbox

    # -- alice, from the notebook client: a DP release, then two export requests -----------------
    pages_hub.user("alice").login()
    token = pages_hub.user_token("alice")
    with sandbox.connect(pages_hub.settings.gateway_url, token, project="fin-lab") as sb:
        result = sb.query(QUERY, epsilon=0.5)
        first = sb.export(result, purpose="Figure 2 of the working paper", datasets=["enterprise_tax"])
        frame = result.df.copy()
        frame.attrs.clear()
        second = sb.export(
            frame.head(3), purpose="Appendix table", filename="appendix.csv", datasets=["enterprise_tax"]
        )
    assert first["status"] == "under_review", first
    assert second["status"] == "under_review", second

    # -- carol, in chromium: sign in at the hub, review both ----------------------------------------
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        hub_login(page, pages_hub, "carol")
        page.goto(f"{pages_hub.url}{PREFIX}exports")  # hub OAuth hand-over, then the list
        page.wait_for_url(f"**/{PREFIX}exports")
        assert page.inner_text("#signed-in-as").startswith("carol")
        awaiting = page.inner_text("#awaiting")
        assert f"#{first['id']}" in awaiting and f"#{second['id']}" in awaiting
        _shot(page, "1-awaiting")

        page.click(f"#awaiting tr[data-export-id='{first['id']}'] a.open-request")
        page.wait_for_url(f"**/{PREFIX}exports/{first['id']}")
        checks = page.locator("#checks-table tbody tr")
        assert checks.count() == len(first["checks"]) > 0
        for check in first["checks"]:
            row = page.locator(f"#checks-table tr[data-check='{check['check']}']")
            assert row.get_attribute("data-verdict") == check["verdict"]
        assert page.locator(".preview-table").count() >= 1  # the CSV, shown as a table
        _shot(page, "2-request-checks")
        page.check("#decision-approve")
        page.fill("#reason", "Noisy counts from DP release; fine to publish.")
        page.click("#submit-decision")
        page.wait_for_url(f"**/{PREFIX}exports/{first['id']}?decided=approve")
        assert page.get_attribute("#status", "data-status") == "approved"
        _shot(page, "3-approved")

        page.goto(f"{pages_hub.url}{PREFIX}exports/{second['id']}")
        page.check("#decision-reject")
        page.fill("#reason", "Partial table without its totals; export the whole release instead.")
        page.click("#submit-decision")
        page.wait_for_url(f"**/{PREFIX}exports/{second['id']}?decided=reject")
        assert page.get_attribute("#status", "data-status") == "rejected"
        assert "Partial table without its totals" in page.inner_text("#decision-reason")
        _shot(page, "4-rejected")
    except Exception:
        _shot(page, "failure")
        (ARTIFACTS / "steward-failure.html").write_text(page.content(), encoding="utf-8")
        raise
    finally:
        context.close()

    # -- the public disclosure page, in a browser with no session ------------------------------------
    anonymous = browser.new_context()
    try:
        public = anonymous.new_page()
        response = public.goto(f"{pages_hub.url}{PREFIX}disclosures")
        assert response is not None and response.status == 200
        assert "Disclosure list" in public.inner_text("h1")
        _shot(public, "5-public-disclosures")
    finally:
        anonymous.close()

    # -- alice gets the approved file through the gate, and a refusal for the rejected one ------------
    with sandbox.connect(pages_hub.settings.gateway_url, token, project="fin-lab") as sb:
        target = sb.download_export(first["id"], tmp_path / "figure.csv")
        assert hashlib.sha256(target.read_bytes()).hexdigest() == first["sha256"]
        assert sb.export_status(first["id"])["status"] == "released"
        manifest = sb.export_manifest(first["id"])
        written = json.loads((tmp_path / "figure.csv.manifest.json").read_text(encoding="utf-8"))
        assert written == manifest
        assert manifest["reviewers"][0]["reviewer"] == "carol"
        assert manifest["citation"] and "获取日期" in manifest["citation"][0]
        with pytest.raises(InvalidTransition) as refused:
            sb.download_export(second["id"], tmp_path / "x.csv")
        assert refused.value.code == "invalid_transition" and "rejected" in refused.value.message
    assert not (tmp_path / "x.csv").exists()

    # -- the steward now sees the release with its citation --------------------------------------------
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        hub_login(page, pages_hub, "carol")
        page.goto(f"{pages_hub.url}{PREFIX}exports/{first['id']}")
        page.wait_for_url(f"**/{PREFIX}exports/{first['id']}")
        assert page.get_attribute("#status", "data-status") == "released"
        assert manifest["citation"][0] in page.inner_text("#citation")
        _shot(page, "6-released-citation")
    finally:
        context.close()

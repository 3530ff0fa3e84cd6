"""Governance in a real browser against a real hub (issue 6 acceptance).

JupyterHub 6.1.1 + configurable-http-proxy + ``sandbox gateway serve`` (API and pages
listeners), started by ``e2e.livehub.running_hub`` with the demo accounts (and the demo
enterprise ``ent``) and a small synthetic warehouse; Debian's chromium driven by Playwright
(JUPYTERHUB-NOTES §5).

1. alice (lead of fin-lab) applies over the gateway API for ``outpatient_visits``, a
   restricted dataset her project lacks; her query on it is refused (``no_grant``). Being
   restricted, it is referred to the expert committee: **kai** (a demo expert) signs in and
   records the committee's opinion (kai and lin) in the committee page.
   Its providers are the health commission and Shenkang: sara (a Shenkang steward added
   here; the demo has none) approves over the API, then **dave** (the health commission's
   steward) signs in at ``/hub/login``, opens the application in the governance pages and
   approves it with a reason: the agreement is signed and alice's DP query is answered.
2. frank's notebook server is started through the hub API; alice reports a violation
   against him; **admin** signs in, confirms it in the page with a reason. The gateway
   process applies the sanction with its own hub token (role ``sandbox-gateway``): the hub
   lists no server for frank, his tokens are gone and the gateway refuses them.
3. The public page ``/services/sandbox/disclosures``, in a fresh browser context with no
   sign-in, lists the entry.
4. The demo enterprise ``ent`` signs in to the pages too and sees its authorisation.

Screenshots go to ``test-artifacts/governance-*.png``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e.browser import hub_login, screenshot
from e2e.livehub import ARTIFACTS, LiveHub, copy_data, running_hub

from sandbox.errors import NoGrant

pytestmark = [pytest.mark.hub, pytest.mark.browser]

PREFIX = "services/sandbox/"
DATASET = "outpatient_visits"  # restricted; providers health_commission (dave) and shenkang (sara)
QUERY = f"SELECT sex, COUNT(*) AS n FROM {DATASET} GROUP BY sex"
APPLICATION = {
    "project": "fin-lab",
    "datasets": [DATASET],
    "scenario": "Health costs of SME employees",
    "purpose": "Outpatient visits by sex, to weigh health costs in SME credit models.",
    "duration_days": 180,
    "security_measures": "Sandbox only; DP aggregates; two-person export review.",
    "undertaking": True,
}


@pytest.fixture(scope="module")
def gov_hub(prepared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    """A demo hub with one more steward: sara, for Shenkang (co-provider of outpatient_visits)."""
    from sandbox.access import registry

    data = copy_data(prepared_data_dir, tmp_path_factory.mktemp("gov-browser-hub"), "data")
    with running_hub("governance-browser", data, "demo") as hub:
        with hub.control() as session:
            registry.create_user(
                session,
                "sara",
                "steward",
                password=hub.password,
                organisation="Shenkang",
                department="shenkang",
                actor="admin",
            )
        yield hub


def _shot(page: Any, name: str) -> None:
    screenshot(page, f"governance-{name}")


class SignedIn:
    """A browser context signed in at the hub's login form (its own cookies)."""

    def __init__(self, browser: Any, hub: LiveHub, name: str) -> None:
        self.name = name
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.context.set_default_timeout(30_000)
        self.page = self.context.new_page()
        self.hub = hub

    def __enter__(self) -> SignedIn:
        hub_login(self.page, self.hub, self.name)
        return self

    def open(self, path: str) -> Any:
        """A page under the prefix (the first one goes through the hub's OAuth hand-over)."""
        self.page.goto(f"{self.hub.url}{PREFIX}{path}")
        self.page.wait_for_url(f"**/{PREFIX}{path}")
        assert self.page.inner_text("#signed-in-as") == self.name
        return self.page

    def __exit__(self, kind: object, err: object, tb: object) -> None:
        if kind is not None:
            _shot(self.page, f"failure-{self.name}")
            (ARTIFACTS / f"governance-failure-{self.name}.html").write_text(
                self.page.content(), encoding="utf-8"
            )
        self.context.close()


def _token(hub: LiveHub, name: str) -> str:
    """A hub token for ``name`` (minted by the ops service; users cannot mint their own)."""
    hub.user(name).login()  # the hub learns the account (and its roles) at sign-in
    return hub.user_token(name)


def _server(hub: LiveHub, name: str) -> dict[str, Any]:
    r = hub.hub_api("GET", f"users/{name}")
    r.raise_for_status()
    return dict((r.json().get("servers") or {}).get("", {}))


def test_application_approved_in_the_pages_then_violation_confirmed_closes_access(
    gov_hub: LiveHub, browser: Any
) -> None:
    import sandbox
    from sandbox.governance.sanctions import VIA_SERVICE

    hub = gov_hub
    alice = _token(hub, "alice")

    # -- 1. alice applies over the API; her query is refused until the stewards approve -------------
    with hub.gateway(alice) as gw:
        r = gw.post("applications", json=APPLICATION)
        assert r.status_code == 201, r.text
        application = r.json()
    assert application["status"] == "submitted"
    with (
        sandbox.connect(hub.settings.gateway_url, alice, project="fin-lab") as sb,
        pytest.raises(NoGrant),
    ):
        sb.query(QUERY, epsilon=0.2)

    # -- the committee's favourable opinion comes first (restricted = high-risk, SR-12, SR-37) --------
    from sqlalchemy import select

    from sandbox.governance.committee_models import CommitteeItem

    with hub.control() as session:
        item_id = session.scalars(
            select(CommitteeItem.id).where(CommitteeItem.application_id == application["id"])
        ).one()
    with SignedIn(browser, hub, "kai") as kai:
        page = kai.page  # the pages' own layout: "#signed-in-as" reads "kai (expert)"
        page.goto(f"{hub.url}{PREFIX}committee")
        page.wait_for_url(f"**/{PREFIX}committee")
        assert page.inner_text("#signed-in-as") == "kai (expert)"
        assert page.inner_text("tr[data-queue='high_risk_application'] .open-count") != "0"
        page.click(f"a[href$='committee/{item_id}']")
        page.wait_for_url(f"**/{PREFIX}committee/{item_id}")
        page.check("#opinion-form input[name='members'][value='lin']")
        page.check("#opinion-approve")
        page.fill("#opinion-form textarea[name='reason']", "Public-health scenario; DP aggregates only.")
        _shot(page, "0-committee-opinion")
        page.click("#submit-opinion")
        page.wait_for_url(f"**/{PREFIX}committee/{item_id}*")
        assert page.get_attribute("#status", "data-status") == "opinion_recorded"
        assert page.inner_text("#opinion-members") == "kai, lin"

    sara = _token(hub, "sara")
    with hub.gateway(sara) as gw:
        r = gw.post(
            f"applications/{application['id']}/decisions",
            json={"approve": True, "reason": "Shenkang: scenario and measures fit the conditions."},
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "submitted"  # the health commission has not decided yet

    with SignedIn(browser, hub, "dave") as dave:
        page = dave.open("governance/applications")
        page.click(f"a[href$='governance/applications/{application['id']}']")
        page.wait_for_url(f"**/{PREFIX}governance/applications/{application['id']}")
        assert page.inner_text("#status") == "submitted"
        assert "approved by sara" in page.inner_text("main")
        _shot(page, "1-application-review")
        page.check("#decide input[value='approve']")
        page.fill("#decide textarea[name='reason']", "Health commission: public-health scenario, DP only.")
        page.click("#decide button[type='submit']")
        page.wait_for_url(f"**/{PREFIX}governance/applications/{application['id']}*")
        assert page.inner_text("#status") == "approved"
        assert "Data-use agreement" in page.inner_text("main")
        assert "approved by dave" in page.inner_text("main")
        _shot(page, "2-application-approved")

    with sandbox.connect(hub.settings.gateway_url, alice, project="fin-lab") as sb:
        result = sb.query(QUERY, epsilon=0.2)
    assert result.df.attrs["dataset"] == DATASET and len(result.df) >= 1

    # -- 2. frank's server runs; a report against him; admin confirms it in the page ---------------
    frank = _token(hub, "frank")
    started = hub.hub_api("POST", "users/frank/server")
    assert started.status_code in (201, 202), started.text
    deadline = time.monotonic() + 120
    while not _server(hub, "frank").get("ready"):
        assert time.monotonic() < deadline, "frank's server did not start"
        time.sleep(0.5)
    with hub.gateway(frank) as gw:
        assert gw.get("whoami").status_code == 200
    with hub.gateway(alice) as gw:
        r = gw.post(
            "violations",
            json={
                "subject": "frank",
                "category": "beyond_scenario",
                "dataset": "taxi_trips",
                "description": "Taxi demand figures reused for a commercial pricing tool.",
            },
        )
        assert r.status_code == 201, r.text
        case = r.json()

    summary = "Taxi-trip results used outside the agreed research scenario."
    with SignedIn(browser, hub, "admin") as admin:
        page = admin.open(f"governance/violations/{case['id']}")
        assert page.inner_text("#status") == "reported"
        _shot(page, "3-violation-reported")
        page.check("#decide input[value='confirm']")
        page.fill("#decide textarea[name='reason']", "Confirmed from the query log and the release notes.")
        page.fill("#decide textarea[name='summary']", summary)
        page.click("#decide button[type='submit']")
        page.wait_for_url(f"**/{PREFIX}governance/violations/{case['id']}*")
        assert page.inner_text("#status") == "confirmed"
        measures = page.inner_text("main")
        assert "account revoked" in measures
        assert "servers stopped" in measures or "servers stop_pending" in measures, measures
        _shot(page, "4-violation-confirmed")

    # -- the sanction, applied by the gateway process with its own hub token ----------------------------
    deadline = time.monotonic() + 60
    while _server(hub, "frank") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _server(hub, "frank"), "the hub still lists frank's server"
    admin_token = _token(hub, "admin")
    with hub.gateway(admin_token) as gw:
        record = gw.get(f"violations/{case['id']}").json()
    servers = record["actions"]["servers"]
    assert servers["status"] in ("stopped", "stop_pending"), servers
    assert servers["via"] == VIA_SERVICE, servers  # not the sandbox-ops token of the operator
    assert servers["tokens_deleted"] >= 1, servers
    with hub.gateway(frank) as gw:
        refused = gw.get("whoami")
    # The registry says revoked (403 account_inactive); once the hub's 10 s answer cache expires,
    # the deleted token is unknown to the hub (401 authentication_failed).
    assert refused.status_code in (401, 403), refused.text
    assert refused.json()["error"]["code"] in ("account_inactive", "authentication_failed")
    r = httpx.get(f"{hub.settings.hub_api_url}/user", headers={"Authorization": f"token {frank}"})
    assert r.status_code == 403  # deleted at the hub

    # -- 3. the public disclosure page, in a browser with no session ------------------------------------
    anonymous = browser.new_context()
    try:
        public = anonymous.new_page()
        response = public.goto(f"{hub.url}{PREFIX}disclosures")
        assert response is not None and response.status == 200
        assert "/hub/login" not in public.url
        table = public.inner_text("#disclosures")
        assert "frank" in table and summary in table and "beyond_scenario" in table
        _shot(public, "5-public-disclosures")
    finally:
        anonymous.close()


def test_the_enterprise_signs_in_to_its_authorisations_page(gov_hub: LiveHub, browser: Any) -> None:
    with SignedIn(browser, gov_hub, "ent") as ent:
        page = ent.open("governance/consents")
        text = page.inner_text("main")
        assert "BANK_A" in text and "enterprise_tax" in text
        _shot(page, "6-enterprise-consents")

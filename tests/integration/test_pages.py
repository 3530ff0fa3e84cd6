"""The pages app (steward export review, governance pages, public disclosures) through its ASGI app.

Real code paths everywhere but the hub: a migrated SQLite control DB seeded with
``sandbox.access.demo.seed_demo`` (plus two stewards of the pilot bank for restricted data),
a real DP release in the ledger, real submissions through ``sandbox.export.service``, the
real quarantine. The hub's OAuth is replaced by ``StaticBrowserAuth`` behind the same
``BrowserAuth`` seam: the sign-in still goes through the app's own redirect, state cookie,
``oauth_callback`` and signed session cookie, so those are tested for real.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from sandbox.access import registry
from sandbox.access.demo import seed_demo
from sandbox.config import REPO_ROOT, Settings
from sandbox.control.db import migrate, session_scope
from sandbox.export import service as export_service
from sandbox.export.service import ExportContext
from sandbox.export.states import ExportStatus
from sandbox.gateway.pages import create_pages_app
from sandbox.gateway.pages.auth import StaticBrowserAuth
from sandbox.gateway.pages.csrf import inject_field
from sandbox.ledger import store as ledger
from sandbox.services.queries import ServiceContext

PREFIX = "/services/sandbox/"
COOKIE = "service-sandbox"
CODES = {f"code-{u}": u for u in ("alice", "bob", "carol", "dave", "erin", "admin", "pia", "pete", "zed")}
TABLE_CSV = b"district_code,count\n310101,1523\n310104,2210\n"
DP_RESULT = {
    "columns": ["district_code", "count"],
    "key_columns": ["district_code"],
    "rows": [["310101", 1523.4], ["310104", 2210.1]],
    "ci95": [[None, 39.2], [None, 39.2]],
}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@dataclass
class World:
    settings: Settings
    ctx: ServiceContext
    ectx: ExportContext
    release_id: str
    app: Any

    def submit(
        self, data: bytes = TABLE_CSV, name: str = "table.csv", **kw: Any
    ) -> export_service.ExportRecord:
        args: dict[str, Any] = {"user": "alice", "project": "fin-lab", "purpose": "paper, figure 1"}
        args.update(kw)
        args.setdefault("datasets", ["enterprise_tax"])
        return export_service.submit(self.ectx, filename=name, data=data, **args)

    def status(self, export_id: int) -> ExportStatus:
        return export_service.show(self.ectx, export_id=export_id, user="admin").status


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("pages")
    settings = Settings(
        data_dir=root,
        policy_dir=REPO_ROOT / "policies",
        warehouse_url_override=f"duckdb:///{root / 'warehouse.duckdb'}",  # never opened here
        control_db_url_override=f"sqlite:///{root / 'control.sqlite'}",
    )
    migrate(settings.control_db_url)
    ctx = ServiceContext.from_settings(settings)
    with session_scope(ctx.control_engine, immediate=True) as s:
        seed_demo(s, ctx.catalog, password="pages-test-password")
        for name in ("pia", "pete"):  # restricted sme_loans comes from the pilot bank: two stewards
            registry.create_user(s, name, "steward", department="pilot_bank", actor=None)
        alice = registry.get_user(s, "alice")
        project = registry.get_project(s, "fin-lab")
        party = ledger.Party(alice.id, "alice", project.id, "fin-lab")
    reservation = ledger.reserve(
        ctx.control_engine,
        party,
        dataset="enterprise_tax",
        budgets=ctx.catalog.budgets("enterprise_tax"),
        fingerprint="a" * 64,
        epsilon=Decimal("0.5"),
        charge=Decimal("0.5"),
    )
    ledger.commit(ctx.control_engine, reservation, DP_RESULT)
    app = create_pages_app(settings, ctx=ctx, oauth=StaticBrowserAuth(CODES), prefix=PREFIX)
    ectx = app.state.export_ctx
    yield World(settings, ctx, ectx, reservation.release_id, app)
    ctx.close()


class Browser:
    """A cookie-keeping client of the ASGI app (synchronous facade, no redirects followed)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.cookies = httpx.Cookies()

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://hub.test", cookies=self.cookies
            ) as client:
                response = await client.request(method, path, **kw)
                self.cookies = httpx.Cookies(client.cookies)
                return response

        return asyncio.run(call())

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", PREFIX + path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", PREFIX + path, **kw)

    def sign_in(self, user: str, start: str = "exports") -> httpx.Response:
        """Open a page, follow the app to the (stand-in) hub and back through oauth_callback."""
        first = self.get(start)
        assert first.status_code == 302, first.text
        state = parse_qs(urlparse(first.headers["location"]).query)["state"][0]
        return self.get("oauth_callback", params={"code": f"code-{user}", "state": state})

    def csrf(self, page: httpx.Response) -> str:
        match = re.search(r'name="_csrf" value="([0-9a-f]{64})"', page.text)
        assert match, "no CSRF field on the page"
        return match.group(1)

    def review(
        self, export_id: int, decision: str, reason: str, *, csrf: str | None = "page"
    ) -> httpx.Response:
        data = {"decision": decision, "reason": reason}
        if csrf == "page":
            data["_csrf"] = self.csrf(self.get(f"exports/{export_id}"))
        elif csrf is not None:
            data["_csrf"] = csrf
        return self.post(f"exports/{export_id}/review", data=data)


def signed_in(world: World, user: str) -> Browser:
    browser = Browser(world.app)
    done = browser.sign_in(user)
    assert done.status_code == 302, done.text
    return browser


def error_code(response: httpx.Response) -> str:
    match = re.search(r'id="error" data-code="([a-z_]+)"', response.text)
    assert match, response.text[:2000]
    return match.group(1)


# ------------------------------------------------------------------------------ the listener


def test_pages_app_has_no_api_route_at_all(world: World) -> None:
    paths = [getattr(r, "path", "") for r in world.app.routes]
    assert paths and not [p for p in paths if p.startswith(PREFIX + "api")]
    anonymous = Browser(world.app)
    for path in ("api/v1/catalog", "api/v1/openapi.json", "api/v1/health", "api/v1/disclosures"):
        response = anonymous.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("text/html")
        assert error_code(response) == "not_found"
    assert anonymous.get("openapi.json").status_code == 404
    assert anonymous.request("GET", "/docs").status_code == 404


def test_public_disclosure_page_needs_no_sign_in(world: World) -> None:
    response = Browser(world.app).get("disclosures")
    assert response.status_code == 200
    assert "Disclosure list" in response.text
    assert "违规行为公示" in response.text


def test_every_page_has_the_bilingual_header_and_security_headers(world: World) -> None:
    response = Browser(world.app).get("")
    assert response.status_code == 200
    platform = world.ctx.catalog.platform.name
    assert platform.zh in response.text and platform.en in response.text
    assert f'href="{PREFIX}static/pages.css"' in response.text
    assert "cdn" not in response.text.lower() and "<script" not in response.text.lower()
    assert "script-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    css = Browser(world.app).get("static/pages.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


# ------------------------------------------------------------------------------ sign-in


def test_a_page_sends_the_browser_to_the_hub_and_back_with_a_signed_session(world: World) -> None:
    browser = Browser(world.app)
    first = browser.get("exports?x=1")
    assert first.status_code == 302
    assert first.headers["location"].startswith("/hub/api/oauth2/authorize?")
    state_cookie = first.headers["set-cookie"]
    assert f"{COOKIE}-oauth-state=" in state_cookie and "HttpOnly" in state_cookie
    assert f"Path={PREFIX}" in state_cookie
    state = parse_qs(urlparse(first.headers["location"]).query)["state"][0]
    back = browser.get("oauth_callback", params={"code": "code-carol", "state": state})
    assert back.status_code == 302
    assert back.headers["location"] == f"{PREFIX}exports?x=1"
    session = next(c for c in back.headers.get_list("set-cookie") if c.startswith(f"{COOKIE}="))
    assert "HttpOnly" in session and "SameSite=lax" in session and f"Path={PREFIX}" in session
    assert "code-carol" not in session  # signed and encoded, never the raw token
    page = browser.get("exports")
    assert page.status_code == 200
    assert 'id="signed-in-as">carol' in page.text


def test_callback_refuses_a_state_this_browser_did_not_start(world: World) -> None:
    attacker = Browser(world.app)
    first = attacker.get("exports")
    state = parse_qs(urlparse(first.headers["location"]).query)["state"][0]
    victim = Browser(world.app)  # has no state cookie
    response = victim.get("oauth_callback", params={"code": "code-carol", "state": state})
    assert response.status_code == 401
    assert error_code(response) == "authentication_failed"
    assert COOKIE not in victim.cookies
    wrong = attacker.get("oauth_callback", params={"code": "code-carol", "state": state + "x"})
    assert wrong.status_code == 401


def test_next_url_cannot_leave_the_service(world: World) -> None:
    browser = Browser(world.app)
    for target in ("https://evil.example/", "//evil.example/x", "/hub/admin"):
        first = browser.get("login", params={"next": target})
        state = parse_qs(urlparse(first.headers["location"]).query)["state"][0]
        back = browser.get("oauth_callback", params={"code": "code-carol", "state": state})
        assert back.headers["location"] == PREFIX


def test_a_hub_user_without_a_sandbox_account_gets_the_error_page(world: World) -> None:
    response = Browser(world.app).sign_in("zed")
    assert response.status_code == 403
    assert error_code(response) == "access_denied"
    assert "no account in the data sandbox" in response.text
    assert "Ask the platform operator" in response.text  # the hint


def test_a_tampered_session_cookie_is_a_sign_in_again(world: World) -> None:
    browser = signed_in(world, "carol")
    value = browser.cookies.get(COOKIE, path=PREFIX)
    assert value
    browser.cookies.set(COOKIE, value[:-2] + "xx", domain="hub.test", path=PREFIX)
    assert browser.get("exports").status_code == 302


def test_logout_drops_the_session_and_goes_to_the_hub(world: World) -> None:
    browser = signed_in(world, "carol")
    home = browser.get("")
    response = browser.post("logout", data={"_csrf": browser.csrf(home)})
    assert response.status_code == 303 and response.headers["location"] == "/hub/logout"
    assert browser.get("exports").status_code == 302


# ------------------------------------------------------------------------------ steward review


def test_steward_sees_the_request_awaiting_her_with_checks_preview_and_project(world: World) -> None:
    record = world.submit()
    assert record.status == ExportStatus.UNDER_REVIEW and record.departments == ["tax_bureau"]
    carol = signed_in(world, "carol")
    listing = carol.get("exports")
    awaiting = listing.text.split('id="awaiting"', 1)[1].split("</table>", 1)[0]
    assert f'data-export-id="{record.id}"' in awaiting
    dave = signed_in(world, "dave")  # health commission: not his department's data
    assert f'data-export-id="{record.id}"' not in dave.get("exports").text
    assert dave.get(f"exports/{record.id}").status_code == 403

    page = carol.get(f"exports/{record.id}")
    assert page.status_code == 200
    for check in record.checks:
        assert f'data-check="{check.name}" data-verdict="{check.verdict.value}"' in page.text
        assert check.reason.split("'")[0][:40] in page.text.replace("&#39;", "'")
    assert "<th>district_code</th>" in page.text and "<td>1523</td>" in page.text  # CSV as a table
    assert record.sha256 in page.text
    assert "国家税务总局上海市税务局" in page.text  # provider, in Chinese and English
    assert 'id="grants"' in page.text and "enterprise_tax" in page.text
    budgets = page.text.split('id="budgets"', 1)[1].split("</table>", 1)[0]
    assert "0.5" in budgets  # the DP release this file cites
    assert world.release_id in page.text
    assert 'id="review-form"' in page.text


def test_steward_approves_one_request_and_rejects_another_with_a_reason(world: World) -> None:
    first, second = world.submit(), world.submit(data=TABLE_CSV + b"310105,987\n")
    carol = signed_in(world, "carol")
    done = carol.review(first.id, "approve", "Aggregates from a DP release; fine to publish.")
    assert (
        done.status_code == 303 and done.headers["location"] == f"{PREFIX}exports/{first.id}?decided=approve"
    )
    assert world.status(first.id) == ExportStatus.APPROVED
    page = carol.get(f"exports/{first.id}?decided=approve")
    assert 'data-status="approved"' in page.text and 'id="flash"' in page.text
    assert "Aggregates from a DP release" in page.text
    assert 'id="review-form"' not in page.text

    carol.review(second.id, "reject", "Row 3 is not from a DP release; drop it and resubmit.")
    record = export_service.show(world.ectx, export_id=second.id, user="admin")
    assert record.status == ExportStatus.REJECTED
    assert record.decision_reason == "Row 3 is not from a DP release; drop it and resubmit."
    assert record.reviews[0]["reviewer"] == "carol"


def test_a_decision_needs_a_reason(world: World) -> None:
    record = world.submit()
    carol = signed_in(world, "carol")
    response = carol.review(record.id, "approve", "   ")
    assert response.status_code == 400
    assert "needs a reason" in response.text
    assert world.status(record.id) == ExportStatus.UNDER_REVIEW


def test_nobody_reviews_their_own_request(world: World) -> None:
    record = world.submit()
    alice = signed_in(world, "alice")
    page = alice.get(f"exports/{record.id}")
    assert page.status_code == 200
    assert 'id="review-form"' not in page.text
    assert "Nobody reviews their own request." in page.text
    response = alice.review(record.id, "approve", "looks fine to me")
    assert response.status_code == 409
    assert error_code(response) == "invalid_transition"
    assert "requester" in response.text
    assert world.status(record.id) == ExportStatus.UNDER_REVIEW


def test_requester_and_members_see_status_but_never_the_file_content(world: World) -> None:
    record = world.submit()
    for user in ("alice", "bob"):
        browser = signed_in(world, user)
        page = browser.get(f"exports/{record.id}")
        assert page.status_code == 200
        assert 'id="no-preview"' in page.text and "<td>1523</td>" not in page.text
        raw = browser.get(f"exports/{record.id}/file")
        assert raw.status_code == 403 and error_code(raw) == "access_denied"
        assert b"1523" not in raw.content


def test_auditor_reads_everything_but_gets_no_buttons_and_cannot_decide(world: World) -> None:
    record = world.submit()
    erin = signed_in(world, "erin")
    listing = erin.get("exports")
    assert f'data-export-id="{record.id}"' in listing.text
    assert 'id="awaiting"' not in listing.text
    page = erin.get(f"exports/{record.id}")
    assert page.status_code == 200 and "<td>1523</td>" in page.text
    assert 'id="review-form"' not in page.text
    assert "Auditors read export requests; they do not decide them." in page.text
    response = erin.review(record.id, "approve", "I would approve")
    assert response.status_code == 403
    assert "Auditors read export requests" in response.text
    assert world.status(record.id) == ExportStatus.UNDER_REVIEW


def test_a_form_post_without_the_csrf_token_is_refused(world: World) -> None:
    record = world.submit()
    carol = signed_in(world, "carol")
    missing = carol.review(record.id, "approve", "ok", csrf=None)
    assert missing.status_code == 403 and error_code(missing) == "csrf_refused"
    wrong = carol.review(record.id, "approve", "ok", csrf="0" * 64)
    assert wrong.status_code == 403 and error_code(wrong) == "csrf_refused"
    dave = signed_in(world, "dave")  # another session's token is no good either
    stolen = dave.csrf(dave.get(""))
    assert carol.review(record.id, "approve", "ok", csrf=stolen).status_code == 403
    anonymous = Browser(world.app)
    nobody = anonymous.post(f"exports/{record.id}/review", data={"decision": "approve", "reason": "x"})
    assert nobody.status_code == 403 and error_code(nobody) == "csrf_refused"
    assert world.status(record.id) == ExportStatus.UNDER_REVIEW
    assert export_service.show(world.ectx, export_id=record.id, user="admin").reviews == []


def test_restricted_data_needs_two_different_stewards(world: World) -> None:
    record = world.submit(data=PNG, name="figure.png", datasets=["sme_loans"])
    assert record.status == ExportStatus.UNDER_REVIEW and record.reviewers_required == 2
    pia = signed_in(world, "pia")
    page = pia.get(f"exports/{record.id}")
    assert f'src="{PREFIX}exports/{record.id}/file"' in page.text  # images inline
    image = pia.get(f"exports/{record.id}/file")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == PNG and "sandbox" in image.headers["content-security-policy"]
    assert pia.review(record.id, "approve", "Figure shows DP counts only.").status_code == 303
    assert world.status(record.id) == ExportStatus.UNDER_REVIEW
    page = pia.get(f"exports/{record.id}")
    assert "1 of 2 approvals" in page.text
    assert "another steward must give the remaining approval" in page.text
    again = pia.post(
        f"exports/{record.id}/review",
        data={"decision": "approve", "reason": "again", "_csrf": pia.csrf(page)},
    )
    assert again.status_code == 409 and "already reviewed" in again.text
    assert world.status(record.id) == ExportStatus.UNDER_REVIEW
    pete = signed_in(world, "pete")
    assert f'data-export-id="{record.id}"' in pete.get("exports").text.split('id="others"')[0]
    assert pete.review(record.id, "approve", "Agree with pia.").status_code == 303
    assert world.status(record.id) == ExportStatus.APPROVED


def test_a_released_request_shows_its_manifest_and_citation(world: World) -> None:
    record = world.submit()
    carol = signed_in(world, "carol")
    carol.review(record.id, "approve", "DP aggregates.")
    pending = carol.get(f"exports/{record.id}")
    assert 'id="release-pending"' in pending.text
    got = export_service.download(world.ectx, export_id=record.id, user="alice")
    page = carol.get(f"exports/{record.id}")
    assert 'data-status="released"' in page.text
    citation = page.text.split('id="citation"', 1)[1].split("</div>", 1)[0]
    for line in got.manifest["citation"]:
        assert line in citation
    assert "获取日期" in citation and world.release_id in citation
    assert 'id="manifest"' in page.text and got.manifest["file"]["sha256"] in page.text


def test_unknown_request_renders_the_error_page_with_the_hint(world: World) -> None:
    carol = signed_in(world, "carol")
    response = carol.get("exports/999999")
    assert response.status_code == 404
    assert error_code(response) == "not_found"
    assert 'id="error-message"' in response.text and 'id="error-hint"' in response.text
    assert "sandbox export show ID" in response.text
    bad = carol.get("exports/not-a-number")
    assert bad.status_code == 400 and error_code(bad) == "invalid_request"


# ------------------------------------------------------------------------------ home, governance


def test_home_lists_what_each_role_may_do(world: World) -> None:
    anonymous = Browser(world.app).get("")
    assert 'id="sign-in"' in anonymous.text and f'href="{PREFIX}disclosures"' in anonymous.text
    carol = signed_in(world, "carol").get("")
    rows = dict(re.findall(r'data-action="([a-z_0-9]+)">\s*<td>([^<]+)</td>', carol.text))
    assert "approve_export" in rows and "approve_application" in rows
    assert f'href="{PREFIX}exports"' in carol.text
    assert "dp_query" not in rows  # a steward does not query
    erin = signed_in(world, "erin").get("")
    erin_rows = set(re.findall(r'data-action="([a-z_0-9]+)"', erin.text))
    assert "read_audit" in erin_rows and "approve_export" in erin_rows  # view only
    assert "view only" in erin.text
    alice = signed_in(world, "alice").get("")
    alice_rows = set(re.findall(r'data-action="([a-z_0-9]+)"', alice.text))
    assert {"dp_query", "request_export"} <= alice_rows and "approve_export" not in alice_rows
    assert "sb.query(...)" in alice.text


def test_governance_pages_are_mounted_with_the_browser_session(world: World) -> None:
    assert "governance" in world.app.state.mounted
    anonymous = Browser(world.app)
    assert anonymous.get("governance/").status_code == 302  # sign in first, not a token error
    carol = signed_in(world, "carol")
    page = carol.get("governance/")
    assert page.status_code == 200
    assert carol.get("governance/applications").status_code == 200
    refused = carol.post("governance/applications/1/decide", data={"decision": "approve", "reason": "x"})
    assert refused.status_code == 403 and error_code(refused) == "csrf_refused"


def test_admin_confirms_a_violation_in_the_governance_page_and_the_public_list_shows_it(world: World) -> None:
    assert "governance" in world.app.state.mounted
    from sandbox.governance import sanctions

    case = sanctions.report(
        world.ctx, reporter="bob", subject="frank", description="Shared query results outside the lab."
    )
    admin = signed_in(world, "admin")
    page = admin.get(f"governance/violations/{case.id}")
    assert page.status_code == 200
    form = page.text.split('id="decide"', 1)[1].split("</form>", 1)[0]
    token = admin.csrf(page)
    assert f'name="_csrf" value="{token}"' in form  # added to the governance template's form
    summary = "Results shared outside the joint lab; access closed."
    done = admin.post(
        f"governance/violations/{case.id}/decide",
        data={
            "decision": "confirm",
            "reason": "Confirmed by the lab lead.",
            "summary": summary,
            "_csrf": token,
        },
    )
    assert done.status_code == 303, done.text
    public = Browser(world.app).get("disclosures")
    assert public.status_code == 200 and summary in public.text


def test_csrf_field_is_added_to_every_post_form_that_lacks_it() -> None:
    html = (
        b'<form method="get" action="/a"><input name="q"></form>'
        b'<form class="x" method="post" action="/b"><button>go</button></form>'
        b"<FORM METHOD=POST action='/c'><input type=hidden name=_csrf value=mine></FORM>"
    )
    out = inject_field(html, "t0k")
    assert out.count(b'name="_csrf" value="t0k"') == 1
    assert b'action="/b"><input type="hidden" name="_csrf" value="t0k">' in out
    assert b'<form method="get" action="/a"><input name="q">' in out
    assert b"value=mine" in out

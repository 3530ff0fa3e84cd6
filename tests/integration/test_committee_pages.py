"""The expert committee's workbench pages (SR-37) through the pages app's ASGI app.

A migrated SQLite control DB seeded with ``seed_demo`` (experts kai, lin, mei), a steward of
the pilot bank (pia, provider of the restricted ``sme_loans``), and an application of alice's
for ``sme_loans``, which refers it to the committee. Sign-in goes through the app's own OAuth
hand-over with ``StaticBrowserAuth`` (``test_pages.Browser``), so cookies and CSRF are real.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from test_governance_world import APPLICATION
from test_pages import PREFIX, Browser, error_code

from sandbox.access import registry
from sandbox.access.demo import seed_demo
from sandbox.config import REPO_ROOT, Settings
from sandbox.control.db import migrate, session_scope
from sandbox.gateway.pages import create_pages_app
from sandbox.gateway.pages.auth import StaticBrowserAuth
from sandbox.governance import applications, committee
from sandbox.services.queries import ServiceContext

USERS = ("alice", "bob", "carol", "dave", "erin", "admin", "kai", "lin", "mei", "pia")


@dataclass
class World:
    ctx: ServiceContext
    app: Any

    def refer(self) -> tuple[int, int]:
        """A fresh application of alice's for sme_loans; returns (application id, item id)."""
        project = f"page-lab-{next(_projects)}"
        with session_scope(self.ctx.control_engine, immediate=True) as s:
            registry.create_project(s, project, title="Lab", lead="alice", actor="admin")
        record = applications.submit(
            self.ctx, applicant="alice", project=project, datasets=["sme_loans"], **APPLICATION
        )
        (item,) = [i for i in committee.list_items(self.ctx, user="erin") if i.application_id == record.id]
        return record.id, item.id

    def status(self, item_id: int) -> str:
        return committee.show(self.ctx, user="erin", item_id=item_id).status


_projects = itertools.count(1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("committee-pages")
    settings = Settings(
        data_dir=root,
        policy_dir=REPO_ROOT / "policies",
        warehouse_url_override=f"duckdb:///{root / 'warehouse.duckdb'}",  # never opened here
        control_db_url_override=f"sqlite:///{root / 'control.sqlite'}",
    )
    migrate(settings.control_db_url)
    ctx = ServiceContext.from_settings(settings)
    with session_scope(ctx.control_engine, immediate=True) as s:
        seed_demo(s, ctx.catalog, password="committee-pages-password")
        registry.create_user(s, "pia", "steward", department="pilot_bank", actor=None)
    codes = {f"code-{u}": u for u in USERS}
    app = create_pages_app(settings, ctx=ctx, oauth=StaticBrowserAuth(codes), prefix=PREFIX)
    yield World(ctx, app)
    ctx.close()


def signed_in(world: World, user: str) -> Browser:
    browser = Browser(world.app)
    done = browser.sign_in(user, start="committee")
    assert done.status_code == 302, done.text
    return browser


def opinion_form(browser: Browser, item_id: int, **fields: Any) -> Any:
    data: dict[str, Any] = {"opinion": "approve", "reason": "Proportionate; DP aggregates only."}
    data.update(fields)
    return browser.post(f"committee/{item_id}/opinion", data=data)


# ------------------------------------------------------------------------------ reading


def test_members_see_the_queues_with_counts_and_the_item(world: World) -> None:
    _, item_id = world.refer()
    kai = signed_in(world, "kai")
    page = kai.get("committee")
    assert page.status_code == 200
    assert f'href="{PREFIX}committee" id="nav-committee"' in page.text
    rows = dict(re.findall(r'data-queue="([a-z_]+)" data-open="(\d+)"', page.text))
    assert set(rows) == {
        "classification_dispute",
        "declassification_proposal",
        "high_risk_application",
        "scenario_evaluation",
    }
    expected = len(committee.list_items(world.ctx, user="kai", kind="high_risk_application", status="open"))
    assert int(rows["high_risk_application"]) == expected >= 1
    assert f'data-item-id="{item_id}" data-status="open"' in page.text
    filtered = kai.get("committee?kind=classification_dispute")
    assert f'data-item-id="{item_id}"' not in filtered.text
    item = kai.get(f"committee/{item_id}")
    assert item.status_code == 200
    assert 'id="opinion-form"' in item.text and 'id="application"' in item.text
    assert APPLICATION["scenario"] in item.text
    form = item.text.split('id="opinion-form"', 1)[1].split("</form>", 1)[0]
    assert f'name="_csrf" value="{kai.csrf(item)}"' in form
    assert 'value="lin"' in form and 'value="mei"' in form and 'value="alice"' not in form
    assert 'data-kind="committee.raised"' in item.text  # the case file


def test_supervisor_reads_every_item_but_gets_no_form_and_cannot_decide(world: World) -> None:
    _, item_id = world.refer()
    erin = signed_in(world, "erin")
    assert f'data-item-id="{item_id}"' in erin.get("committee").text
    page = erin.get(f"committee/{item_id}")
    assert page.status_code == 200
    assert 'id="opinion-form"' not in page.text and 'id="withdraw-form"' not in page.text
    assert "Only members of the expert committee" in page.text
    refused = opinion_form(erin, item_id, members=["erin", "kai", "lin"], _csrf=erin.csrf(page))
    assert refused.status_code == 403 and error_code(refused) == "access_denied"
    assert world.status(item_id) == "open"


def test_a_steward_of_other_data_may_not_open_the_item(world: World) -> None:
    _, item_id = world.refer()
    dave = signed_in(world, "dave")
    assert f'data-item-id="{item_id}"' not in dave.get("committee").text
    response = dave.get(f"committee/{item_id}")
    assert response.status_code == 403 and error_code(response) == "access_denied"
    pia = signed_in(world, "pia")  # the provider reads it
    assert pia.get(f"committee/{item_id}").status_code == 200


# ------------------------------------------------------------------------------ deciding


def test_an_opinion_needs_the_csrf_token(world: World) -> None:
    _, item_id = world.refer()
    kai = signed_in(world, "kai")
    missing = opinion_form(kai, item_id, members=["kai", "lin"])
    assert missing.status_code == 403 and error_code(missing) == "csrf_refused"
    wrong = opinion_form(kai, item_id, members=["kai", "lin"], _csrf="0" * 64)
    assert wrong.status_code == 403 and error_code(wrong) == "csrf_refused"
    lin = signed_in(world, "lin")
    stolen = lin.csrf(lin.get("committee"))
    assert opinion_form(kai, item_id, members=["kai", "lin"], _csrf=stolen).status_code == 403
    assert world.status(item_id) == "open"


def test_a_member_records_the_opinion_and_the_steward_may_then_approve(world: World) -> None:
    app_id, item_id = world.refer()
    kai = signed_in(world, "kai")
    page = kai.get(f"committee/{item_id}")
    token = kai.csrf(page)
    alone = opinion_form(kai, item_id, members=["kai"], _csrf=token)
    assert alone.status_code == 400 and "at least 2 members" in alone.text
    done = opinion_form(
        kai,
        item_id,
        opinion="approve_with_conditions",
        members=["kai", "lin"],
        conditions="Only district-level aggregates.",
        decided_on="2025-03-01",
        _csrf=token,
    )
    assert done.status_code == 303 and done.headers["location"] == f"{PREFIX}committee/{item_id}?done=opinion"
    assert world.status(item_id) == "opinion_recorded"
    shown = kai.get(f"committee/{item_id}?done=opinion")
    assert 'id="flash"' in shown.text and 'data-opinion="approve_with_conditions"' in shown.text
    assert 'id="opinion-members">kai, lin<' in shown.text and "2025-03-01" in shown.text
    assert 'id="opinion-form"' not in shown.text
    assert 'data-kind="committee.opinion_recorded"' in shown.text
    again = opinion_form(signed_in(world, "mei"), item_id, members=["mei", "lin"], _csrf=token)
    assert again.status_code == 403  # mei's session: kai's token is no good
    approved = applications.decide(world.ctx, steward="pia", application_id=app_id, approve=True, reason="ok")
    assert approved.status == "approved"


def test_the_raiser_withdraws_in_the_page_and_no_opinion_follows(world: World) -> None:
    _, item_id = world.refer()
    alice = signed_in(world, "alice")  # the applicant raised the referral
    page = alice.get(f"committee/{item_id}")
    assert page.status_code == 200 and 'id="withdraw-form"' in page.text
    assert 'id="opinion-form"' not in page.text
    done = alice.post(
        f"committee/{item_id}/withdraw", data={"reason": "Resubmitting later.", "_csrf": alice.csrf(page)}
    )
    assert done.status_code == 303
    assert world.status(item_id) == "withdrawn"
    kai = signed_in(world, "kai")
    page = kai.get(f"committee/{item_id}")
    assert 'id="opinion-form"' not in page.text and 'id="withdrawn"' in page.text
    late = opinion_form(kai, item_id, members=["kai", "lin"], _csrf=kai.csrf(page))
    assert late.status_code == 409 and error_code(late) == "invalid_transition"


def test_the_home_page_sends_experts_to_the_workbench(world: World) -> None:
    kai = signed_in(world, "kai").get("")
    rows = dict(re.findall(r'data-action="([a-z_0-9]+)">\s*<td>([^<]+)</td>', kai.text))
    assert {"approve_application", "reclassify_to_conditional", "register_dataset"} <= set(rows)
    assert "dp_query" not in rows and "request_export" not in rows
    assert f'href="{PREFIX}committee">open</a>' in kai.text
    bob = signed_in(world, "bob").get("")
    assert 'id="nav-committee"' not in bob.text

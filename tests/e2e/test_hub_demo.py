"""The real hub in demo mode: sign-in through the registry, spawn, kernel, gateway, lock-down.

One hub for the module (``demo_hub``): JupyterHub 6.1.1 + configurable-http-proxy + the
gateway service, the demo accounts of ``sandbox init --demo`` and a small synthetic
warehouse. Code runs in the users' kernels over the kernel REST + websocket API, through
the public proxy, as a browser would.
"""

from __future__ import annotations

import json
import stat
import textwrap

import httpx
import pytest
from e2e.browser import launched_chromium
from e2e.hubclient import LoginRefused
from e2e.livehub import LiveHub

pytestmark = [pytest.mark.hub]

GATEWAY_CALL = textwrap.dedent(
    """
    import json, sandbox
    sb = sandbox.connect()
    def attempt(fn):
        try:
            fn()
            return {"ok": True}
        except Exception as err:
            return {"ok": False, "type": type(err).__name__, "code": getattr(err, "code", None)}
    """
)


def kernel_json(user, code: str):
    result = user.run(GATEWAY_CALL + textwrap.dedent(code))
    assert result.ok, f"kernel error: {result.error}\n{result.stderr}"
    return result.json()


def test_hub_answers_and_reports_its_version(demo_hub: LiveHub) -> None:
    r = httpx.get(f"{demo_hub.url}hub/api/")
    assert r.status_code == 200
    assert r.json()["version"] == "6.1.1"


def test_registry_password_signs_in_and_wrong_or_unknown_do_not(demo_hub: LiveHub) -> None:
    demo_hub.user("alice").login()
    with pytest.raises(LoginRefused):
        demo_hub.user("alice", "not-her-password").login()
    with pytest.raises(LoginRefused):
        demo_hub.user("mallory", demo_hub.password).login()


def test_groups_are_projects_and_every_role_gets_the_gateway_scope(demo_hub: LiveHub) -> None:
    alice = demo_hub.user("alice")
    alice.login()
    me = alice.hub_api("GET", "user").json()
    assert me["groups"] == ["fin-lab"]
    assert "access:services!service=sandbox" in me["scopes"]
    assert "tokens!user=alice" not in me["scopes"]  # no self-minted tokens
    # Admins and enterprises sign in to the pages through hub OAuth, which needs the scope too.
    for name in ("admin", "ent"):
        user = demo_hub.user(name)
        user.login()
        scopes = user.hub_api("GET", "user").json()["scopes"]
        assert "access:services!service=sandbox" in scopes, name
        assert not any(s.startswith("tokens") for s in scopes), name
        assert "access:servers" not in scopes, name  # nobody runs code in another's server
        assert user.hub_api("POST", f"users/{name}/tokens", json={"note": "x"}).status_code == 403


def test_the_scope_is_not_data_admin_and_enterprise_tokens_get_no_dp_result(demo_hub: LiveHub) -> None:
    """The hub scope only lets a token talk to the gateway; the registry decides every call
    (docs/gateway-api.md: the codes below are the documented 403s)."""
    from sandbox.access import registry

    sql = "SELECT credit_grade, COUNT(*) FROM enterprise_tax GROUP BY credit_grade"
    # Even a project of the admin's own, holding a grant, gives the admin role no DP result.
    with demo_hub.control() as session:
        registry.create_project(session, "ops-review", title="Operator test", lead="admin", actor="admin")
        registry.grant_dataset(session, "ops-review", "enterprise_tax", actor="admin", source="e2e test")
    refusals = [
        ("admin", "fin-lab", "not_project_member"),  # not a member of the project named
        ("admin", "ops-review", "access_denied"),  # member with a grant, but not a data user
        ("ent", "fin-lab", "not_project_member"),  # a data-user role, of no project
    ]
    for name, project, code in refusals:
        demo_hub.user(name).login()
        with demo_hub.gateway(demo_hub.user_token(name)) as gw:
            assert gw.get("whoami").status_code == 200, name  # the hub scope is there
            r = gw.post("query", json={"sql": sql, "project": project, "epsilon": "0.1"})
            assert r.status_code == 403, (name, project, r.text)
            assert r.json()["error"]["code"] == code, (name, project, r.text)
            assert "rows" not in r.json()


def test_users_cannot_mint_their_own_tokens(demo_hub: LiveHub) -> None:
    alice = demo_hub.user("alice")
    alice.login()
    r = alice.hub_api("POST", "users/alice/tokens", json={"note": "copy me out"})
    assert r.status_code == 403


def test_gateway_is_not_reachable_through_the_public_proxy(demo_hub: LiveHub) -> None:
    demo_hub.user("alice").login()  # the hub learns her roles at sign-in
    token = demo_hub.user_token("alice")
    for path in (
        "services/sandbox/api/v1/catalog",
        "services/sandbox/api/v1/health",
        "services/sandbox/api/v1/",
    ):
        # No proxy route leads to the API listener: whatever answers there (the hub's catch-all,
        # or the gateway's HTML pages listener) has no API and answers 404.
        r = httpx.get(
            f"{demo_hub.url}{path}", headers={"Authorization": f"token {token}"}, follow_redirects=True
        )
        assert r.status_code == 404, path
        assert not r.headers.get("content-type", "").startswith("application/json"), path
        assert "enterprise_tax" not in r.text
    # ...while it answers on loopback, where kernels reach it.
    with demo_hub.gateway(token) as gw:
        assert gw.get("catalog").status_code == 200


def test_kernel_environment_holds_no_server_settings(demo_hub: LiveHub) -> None:
    alice = demo_hub.signed_in("alice")
    env = alice.run("import os, json; print(json.dumps(dict(os.environ)))").json()
    assert env["SANDBOX_GATEWAY_URL"] == demo_hub.settings.gateway_url
    leaked = {k for k in env if k.startswith("SANDBOX_")} - {"SANDBOX_GATEWAY_URL", "SANDBOX_HUB_MODE"}
    assert not leaked
    data_dir = str(demo_hub.data_dir)
    for key, value in env.items():
        assert "warehouse" not in value.lower(), key
        assert "control.sqlite" not in value, key
        assert demo_hub.password not in value, key
        assert not value.startswith(("duckdb:", "sqlite:", "postgresql")), key
        if key != "HOME" and key != "JUPYTERHUB_ROOT_DIR":
            assert data_dir not in value, key
    assert "CONFIGPROXY_AUTH_TOKEN" not in env


def test_kernel_token_reaches_the_gateway(demo_hub: LiveHub) -> None:
    alice = demo_hub.signed_in("alice")
    out = kernel_json(alice, "print(json.dumps(sb.whoami()))")
    assert out["name"] == "alice"
    assert [p["name"] for p in out["projects"]] == ["fin-lab"]


def test_select_star_on_a_conditional_dataset_is_refused(demo_hub: LiveHub) -> None:
    alice = demo_hub.signed_in("alice")
    out = kernel_json(
        alice,
        """print(json.dumps(attempt(lambda: sb.query("SELECT * FROM enterprise_tax", epsilon=0.1,
                                                     project="fin-lab"))))""",
    )
    assert out == {"ok": False, "type": "QuerySelectStar", "code": "query_select_star"}


def test_query_on_a_dataset_not_granted_to_the_project_is_refused(demo_hub: LiveHub) -> None:
    alice = demo_hub.signed_in("alice")
    out = kernel_json(
        alice,
        """print(json.dumps(attempt(lambda: sb.query("SELECT COUNT(*) FROM outpatient_visits",
                                                     epsilon=0.1, project="fin-lab"))))""",
    )
    assert out == {"ok": False, "type": "NoGrant", "code": "no_grant"}


def test_non_member_of_a_project_is_refused(demo_hub: LiveHub) -> None:
    bob = demo_hub.signed_in("bob")  # bank analyst in fin-lab, not in mobility-lab
    out = kernel_json(
        bob,
        """print(json.dumps(attempt(lambda: sb.query("SELECT COUNT(*) FROM taxi_trips",
                                                     epsilon=0.1, project="mobility-lab"))))""",
    )
    assert out == {"ok": False, "type": "NotProjectMember", "code": "not_project_member"}


def test_a_dp_query_runs_from_the_kernel(demo_hub: LiveHub) -> None:
    alice = demo_hub.signed_in("alice")
    out = kernel_json(
        alice,
        """
        r = sb.query("SELECT credit_grade, COUNT(*) FROM enterprise_tax GROUP BY credit_grade",
                     epsilon=0.1, project="fin-lab")
        print(json.dumps({"rows": len(r.df), "columns": list(r.df.columns)}))
        """,
    )
    assert out["rows"] == 5  # every credit grade of the public domain, also empty ones


def test_revoked_user_cannot_sign_in_and_her_token_is_refused(demo_hub: LiveHub) -> None:
    from sandbox.access import registry

    with demo_hub.control() as session:
        registry.create_user(session, "rita", "researcher", password=demo_hub.password, actor="admin")
        registry.add_member(session, "fin-lab", "rita", actor="admin")
    rita = demo_hub.signed_in("rita")
    token = rita.run("import os; print(os.environ['JUPYTERHUB_API_TOKEN'])").stdout.strip()
    with demo_hub.gateway(token) as gw:
        assert gw.get("whoami").status_code == 200

    with demo_hub.control() as session:
        registry.set_status(session, "rita", "revoked", actor="admin", reason="e2e test")

    with pytest.raises(LoginRefused):
        demo_hub.user("rita").login()
    with demo_hub.gateway(token) as gw:
        r = gw.get("whoami")
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "account_inactive"
        r = gw.post("query", json={"sql": "SELECT COUNT(*) FROM enterprise_tax", "project": "fin-lab"})
        assert r.json()["error"]["code"] == "account_inactive"

    # Closing her access at the hub (SR-32) stops her server and deletes her tokens.
    from sandbox.hub.hubapi import close_hub_access

    closed = close_hub_access("rita", demo_hub.settings)
    assert closed.server_stopped and closed.tokens_deleted >= 1
    r = httpx.get(f"{demo_hub.settings.hub_api_url}/user", headers={"Authorization": f"token {token}"})
    assert r.status_code == 403


def test_single_user_server_is_locked_down(demo_hub: LiveHub) -> None:
    alice = demo_hub.signed_in("alice")
    assert alice.server_api("GET", "api/terminals").status_code == 404
    assert alice.server_api("POST", "api/terminals").status_code == 404
    nb = "notebooks/00-getting-started.ipynb"
    assert alice.server_api("GET", f"api/contents/{nb}").status_code == 200  # Lab needs this one
    assert alice.http.get(f"user/alice/files/{nb}").status_code == 403
    assert alice.http.get(f"user/alice/files/{nb}?download=1").status_code == 403
    assert alice.http.get(f"user/alice/nbconvert/html/{nb}?download=true").status_code == 403
    page = alice.http.get("user/alice/lab").text
    config = json.loads(
        page.split('id="jupyter-config-data" type="application/json">', 1)[1].split("</script>")[0]
    )
    assert "@jupyterlab/docmanager-extension:download" in config["disabledExtensions"]
    assert config["extensionManager"]["can_install"] is False


def test_demo_mode_is_labelled_not_isolated(demo_hub: LiveHub) -> None:
    alice = demo_hub.signed_in("alice")
    assert "not isolated" in httpx.get(f"{demo_hub.url}hub/login").text
    page = alice.http.get("user/alice/lab").text
    assert "custom/custom.css" in page
    css = alice.http.get("user/alice/custom/custom.css")
    assert css.status_code == 200
    assert "not isolated — for trying it out" in css.text


def test_notebooks_are_copied_to_the_home_on_first_spawn(demo_hub: LiveHub) -> None:
    alice = demo_hub.signed_in("alice")
    listing = alice.server_api("GET", "api/contents/notebooks").json()
    names = {item["name"] for item in listing["content"]}
    assert "00-getting-started.ipynb" in names


def test_hub_state_folder_is_private(demo_hub: LiveHub) -> None:
    state = demo_hub.settings.state_dir
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for name in (
        "jupyterhub.sqlite",
        "jupyterhub_cookie_secret",
        "gateway-service.token",
        "ops-service.token",
    ):
        mode = stat.S_IMODE((state / name).stat().st_mode)
        assert mode & 0o077 == 0, f"{name} is {oct(mode)}"


@pytest.mark.browser
@pytest.mark.slow
def test_alice_runs_the_getting_started_notebook_in_jupyterlab(demo_hub: LiveHub) -> None:
    """Sign in with the form, open the notebook in Lab, Run All, find the DP result table."""
    artifacts = demo_hub.log_path.parent
    nb_url = "/hub/user-redirect/lab/tree/notebooks/00-getting-started.ipynb"
    with launched_chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(60_000)
        page = context.new_page()
        try:
            page.goto(f"{demo_hub.url}hub/login?next={nb_url}")
            assert "not isolated" in page.inner_text("body")  # demo announcement on the login page
            page.fill("#username_input", "alice")
            page.fill("#password_input", demo_hub.password)
            page.click("#login_submit")
            page.wait_for_url("**/user/alice/lab/**", timeout=120_000)
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
            banner = page.evaluate("getComputedStyle(document.body, '::after').content")
            assert "not isolated" in banner
            page.click("li.lm-MenuBar-item:has-text('Run')")
            page.click("li.lm-Menu-item:has-text('Run All Cells')")
            result = page.locator(".jp-OutputArea-output:has(table):has-text('DP release')").first
            result.wait_for(timeout=120_000)
            text = result.inner_text()
            assert "enterprises" in text and "±" in text
            page.wait_for_selector(".jp-OutputArea-output:has-text('export request')", timeout=120_000)
            assert (
                page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count()
                == 0
            )
            result.scroll_into_view_if_needed()
        finally:
            page.screenshot(path=str(artifacts / "lab-getting-started.png"))
            context.close()

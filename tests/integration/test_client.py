"""The notebook client against the real gateway served by uvicorn on 127.0.0.1 (random port).

The sandbox (control DB, demo accounts, synthetic warehouse) is built by the real code
paths (``test_gateway.build_sandbox``); only the hub is replaced by fixed tokens.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import matplotlib
import pandas as pd
import pytest
import test_gateway as tg  # sibling module: build_sandbox, SandboxEnv
import uvicorn

import sandbox
from sandbox.client import GatewayUnreachable, QueryResult, Sandbox
from sandbox.client.builder import col, count, mean, table
from sandbox.client.session import BUDGET_COLUMNS, CATALOG_COLUMNS
from sandbox.errors import (
    AccessDenied,
    AccountInactive,
    AuthenticationFailed,
    ConfigError,
    InvalidQuery,
    InvalidTransition,
    NoGrant,
    NotProjectMember,
    QuerySelectStar,
    SandboxError,
    UnknownDataset,
)
from sandbox.export import service as export_service
from sandbox.export.quarantine import QuarantineStore

matplotlib.use("Agg")


class _Server:
    """uvicorn in a thread, on a socket bound to 127.0.0.1:0."""

    def __init__(self, app: object) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{tg.PREFIX}"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tg.SandboxEnv]:
    sandbox_env = tg.build_sandbox(tmp_path_factory.mktemp("client"))
    yield sandbox_env
    sandbox_env.ctx.close()


@pytest.fixture(scope="module")
def server(env: tg.SandboxEnv) -> Iterator[_Server]:
    with _Server(env.app()) as running:
        yield running


def connect_as(server: _Server, env: tg.SandboxEnv, user: str, **kwargs: object) -> Sandbox:
    return sandbox.connect(url=server.url, token=env.tokens[user], **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def sb(server: _Server, env: tg.SandboxEnv) -> Iterator[Sandbox]:
    client = connect_as(server, env, "alice", project="fin-lab")
    yield client
    client.close()


# --------------------------------------------------------------------------- connecting


def test_connect_reads_the_kernel_environment(
    server: _Server, env: tg.SandboxEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_GATEWAY_URL", server.url)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", env.tokens["bob"])
    monkeypatch.setenv("SANDBOX_PROJECT", "fin-lab")
    with sandbox.connect() as sb:
        assert sb.project == "fin-lab"
        me = sb.whoami()
    assert me["name"] == "bob" and me["role"] == "bank"


def test_explicit_arguments_override_the_environment(
    server: _Server, env: tg.SandboxEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_GATEWAY_URL", "http://127.0.0.1:9/nowhere/")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", env.tokens["bob"])
    with sandbox.connect(url=server.url.rstrip("/"), token=env.tokens["frank"], project="mobility-lab") as sb:
        assert sb.whoami()["name"] == "frank"
        assert sb.project == "mobility-lab"


def test_missing_url_or_token_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SANDBOX_GATEWAY_URL", raising=False)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "x")
    with pytest.raises(ConfigError):
        sandbox.connect()
    monkeypatch.setenv("SANDBOX_GATEWAY_URL", "http://127.0.0.1:9/")
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    with pytest.raises(ConfigError):
        sandbox.connect()


def test_unreachable_gateway(env: tg.SandboxEnv) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sb = sandbox.connect(url=f"http://127.0.0.1:{port}/services/sandbox/", token=env.tokens["alice"])
    with pytest.raises(GatewayUnreachable) as info:
        sb.catalog()
    assert env.tokens["alice"] not in str(info.value)


def test_the_token_never_shows(server: _Server, env: tg.SandboxEnv) -> None:
    sb = connect_as(server, env, "alice")
    assert env.tokens["alice"] not in repr(sb)
    assert env.tokens["alice"] not in repr(sb._transport)


# --------------------------------------------------------------------------- catalogue


def test_catalog_is_a_dataframe(sb: Sandbox, env: tg.SandboxEnv) -> None:
    df = sb.catalog()
    assert list(df.columns) == CATALOG_COLUMNS
    assert sorted(df["id"]) == sorted(env.ctx.catalog.datasets)
    assert set(df["tier"]) == {"open", "conditional", "restricted"}


def test_describe_by_id_and_by_name(sb: Sandbox) -> None:
    by_id = sb.describe("enterprise_tax")
    assert by_id.tier == "conditional"
    assert "vat_paid_wan" in set(by_id.columns["name"])
    by_name = sb.describe(by_id["name_zh"])
    assert by_name.id == "enterprise_tax"
    assert "<table" in by_id._repr_html_()
    with pytest.raises(UnknownDataset):
        sb.describe("no such dataset")


# --------------------------------------------------------------------------- DP queries


def test_query_returns_a_dataframe_with_provenance_and_accuracy(sb: Sandbox) -> None:
    result = sb.query(tg.GROUP_SQL, epsilon=0.5)
    assert isinstance(result, QueryResult)
    assert list(result.df.columns) == ["credit_grade", "n", "avg_vat"]
    assert sorted(result.df["credit_grade"]) == sorted(["A", "B", "M", "C", "D"])
    attrs = result.df.attrs
    assert attrs["release_id"] == result.release_id and attrs["dataset"] == "enterprise_tax"
    assert Decimal(attrs["epsilon"]) > 0
    assert set(attrs["ci95"]) == {"n", "avg_vat"} and len(attrs["ci95"]["n"]) == 5
    assert result.ci95.shape == result.df.shape
    assert (result.ci95["n"] > 0).all()
    assert list(result.ci95["credit_grade"]) == list(result.df["credit_grade"])
    html = result._repr_html_()
    assert "±" in html and result.release_id in html
    ax = result.plot(x="credit_grade", y="n")
    assert len(ax.patches) == 5
    assert ax.get_ylabel() == "n"


def test_builder_renders_the_same_query(sb: Sandbox) -> None:
    sql = (
        "SELECT tax_year, COUNT(*), AVG(vat_paid_wan) FROM enterprise_tax "
        "WHERE credit_grade = 'A' GROUP BY tax_year"
    )
    built = (
        table("enterprise_tax")
        .where(col("credit_grade") == "A")
        .group_by("tax_year")
        .agg(count(), mean("vat_paid_wan"))
    )
    assert built.to_sql() == sql
    first = sb.query(sql, epsilon="0.25")
    second = sb.query(built, epsilon="0.25")
    assert second.release_id == first.release_id and second.cached
    assert second.df.equals(first.df)


def test_preview_spends_nothing(sb: Sandbox) -> None:
    before = sb.budget()
    preview = sb.preview("SELECT COUNT(*) FROM enterprise_tax", epsilon="0.3")
    assert preview.dataset == "enterprise_tax" and Decimal(preview.epsilon) > 0
    assert list(preview.df.columns) == ["column", "aggregate", "ci95"] and len(preview.df) == 1
    assert preview.remaining is not None
    assert "Nothing was spent" in preview._repr_html_()
    pd.testing.assert_frame_equal(sb.budget(), before)


def test_budget_is_a_dataframe_of_exact_decimals(sb: Sandbox) -> None:
    df = sb.budget()
    assert list(df.columns) == BUDGET_COLUMNS
    assert (df["project"] == "fin-lab").all()
    row = df[df["dataset"] == "enterprise_tax"].iloc[0]
    assert Decimal(row["user_spent"]) + Decimal(row["user_remaining"]) == Decimal("3")


# --------------------------------------------------------------------------- errors keep their class


def test_select_star_raises_the_same_class_with_the_gateways_words(sb: Sandbox) -> None:
    with pytest.raises(QuerySelectStar) as info:
        sb.query("SELECT * FROM enterprise_tax", epsilon=0.1)
    err = info.value
    assert isinstance(err, InvalidQuery)
    assert err.code == "query_select_star" and err.message and err.hint


def test_no_grant(sb: Sandbox) -> None:
    with pytest.raises(NoGrant):
        sb.query("SELECT COUNT(*) FROM outpatient_visits", epsilon=0.1)


def test_non_member(server: _Server, env: tg.SandboxEnv) -> None:
    with connect_as(server, env, "bob") as sb, pytest.raises(NotProjectMember):
        sb.query("SELECT COUNT(*) FROM transit_trips", epsilon=0.1, project="mobility-lab")


def test_revoked_account(server: _Server, env: tg.SandboxEnv) -> None:
    with connect_as(server, env, "mallory") as sb, pytest.raises(AccountInactive):
        sb.catalog()


def test_bad_token(server: _Server) -> None:
    with sandbox.connect(url=server.url, token="not-a-token") as sb, pytest.raises(AuthenticationFailed):
        sb.whoami()


def test_unknown_codes_still_raise_sandbox_errors(sb: Sandbox) -> None:
    with pytest.raises(SandboxError) as info:
        sb._transport.post("query", {"epsilon": "0.1"})
    assert info.value.code == "invalid_request"


# --------------------------------------------------------------------------- open data


def test_open_table_pages_through_every_row(sb: Sandbox) -> None:
    whole = sb.table("venues").to_pandas()
    paged = sb.table("venues").to_pandas(page_size=7)
    assert len(whole) >= 30
    pd.testing.assert_frame_equal(whole, paged)
    first = sb.table("venues").to_pandas(page_size=4, max_rows=10)
    assert len(first) == 10
    pd.testing.assert_frame_equal(first, whole.head(10))


def test_table_of_a_non_open_dataset_is_refused(sb: Sandbox) -> None:
    with pytest.raises(AccessDenied):
        sb.table("enterprise_tax").to_pandas()


# --------------------------------------------------------------------------- export gate


def test_export_a_release_and_follow_it(sb: Sandbox, tmp_path: Path) -> None:
    result = sb.query(
        "SELECT credit_grade, COUNT(*) AS n FROM enterprise_tax GROUP BY credit_grade", epsilon=0.4
    )
    request = sb.export(result, purpose="Figure 1", description="Counts by credit grade")
    assert request["filename"] == f"release-{result.release_id}.csv"
    assert request["project"] == "fin-lab" and request["status"]
    checks = sb.check_export(request["id"])
    assert list(checks.columns) == ["check", "verdict", "reason"] and len(checks) > 0
    assert checks.attrs["status"] == request["status"]
    path = tmp_path / "notes.txt"
    path.write_text("Summary: grades A and B dominate.\n", encoding="utf-8")
    second = sb.export(path, purpose="Notes for the paper")
    listed = sb.exports()
    assert {request["id"], second["id"]} <= set(listed["id"])


EXPORT_SQL = "SELECT credit_grade, COUNT(*) AS n FROM enterprise_tax GROUP BY credit_grade"


def _export_gate(env: tg.SandboxEnv) -> export_service.ExportContext:
    """The export service on the gateway's control DB and quarantine, for the steward's decisions."""
    return export_service.ExportContext(
        catalog=env.ctx.catalog,
        control_engine=env.ctx.control_engine,
        quarantine=QuarantineStore(env.settings.quarantine_dir),
    )


def test_check_export_is_a_dry_run_before_submitting(sb: Sandbox, tmp_path: Path) -> None:
    before = list(sb.exports()["id"])
    result = sb.query(EXPORT_SQL, epsilon=0.4)
    checks = sb.check_export(result, project="fin-lab")
    assert list(checks.columns) == ["check", "verdict", "reason"]
    assert checks.set_index("check").loc["provenance", "verdict"] == "pass"
    assert checks.attrs["verdict"] == "pass"
    assert checks.attrs["release_ids"] == [result.release_id]
    assert checks.attrs["filename"] == f"release-{result.release_id}.csv"  # provenance in the name too
    path = tmp_path / "contacts.csv"
    path.write_text("credit_grade,contact\nA,11010519491231002X\n", encoding="utf-8")  # §7.6 vector
    bad = sb.check_export(path, datasets=["enterprise_tax"])
    assert bad.attrs["verdict"] == "fail" and bad.attrs["outcome"] == "rejected"
    assert bad.set_index("check").loc["identifiers", "verdict"] == "fail"
    assert list(sb.exports()["id"]) == before  # nothing was submitted


def test_download_export_saves_the_approved_file_with_its_manifest(
    sb: Sandbox, server: _Server, env: tg.SandboxEnv, tmp_path: Path
) -> None:
    gate = _export_gate(env)
    result = sb.query(EXPORT_SQL, epsilon=0.4)
    approved = sb.export(result, purpose="Figure 3", datasets=["enterprise_tax"])
    frame = result.df.head(2).copy()
    frame.attrs.clear()
    rejected = sb.export(frame, purpose="Appendix", filename="appendix.csv", datasets=["enterprise_tax"])
    assert approved["status"] == rejected["status"] == "under_review"
    export_service.review(gate, export_id=approved["id"], reviewer="carol", approve=True, reason="DP counts")
    export_service.review(gate, export_id=rejected["id"], reviewer="carol", approve=False, reason="partial")

    with connect_as(server, env, "frank") as outsider, pytest.raises(AccessDenied):
        outsider.download_export(approved["id"], tmp_path / "stolen.csv")
    assert not (tmp_path / "stolen.csv").exists()

    saved = sb.download_export(approved["id"], tmp_path)
    assert saved == tmp_path / approved["filename"]
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == approved["sha256"]
    written = json.loads(saved.with_name(saved.name + ".manifest.json").read_text(encoding="utf-8"))
    assert written == sb.export_manifest(approved["id"])
    assert written["file"]["sha256"] == approved["sha256"]
    assert written["reviewers"][0]["reviewer"] == "carol"
    assert result.release_id in written["citation"][0] and "获取日期" in written["citation"][0]
    assert sb.export_status(approved["id"])["status"] == "released"

    with pytest.raises(InvalidTransition) as info:
        sb.download_export(rejected["id"], tmp_path / "appendix.csv")
    assert "rejected" in info.value.message
    assert not (tmp_path / "appendix.csv").exists()


def test_lookup_returns_only_the_authorising_enterprises_rows(server: _Server, env: tg.SandboxEnv) -> None:
    from sandbox.errors import ConsentRequired
    from sandbox.governance import consent
    from sandbox.governance.demo import seed_demo_enterprise

    seed = seed_demo_enterprise(env.ctx, env.ctx.warehouse_engine, with_consent=False)
    assert seed.uscc is not None
    with connect_as(server, env, "bob") as bob:
        with pytest.raises(ConsentRequired):
            bob.lookup("enterprise_tax", uscc=seed.uscc)
        record = consent.grant(
            env.ctx, actor=seed.username, bank="BANK_A", datasets=["enterprise_tax"], days=7
        )
        rows = bob.lookup("enterprise_tax", uscc=seed.uscc)
        assert not rows.empty and set(rows["uscc"]) == {seed.uscc}
        assert "_rank" not in rows.columns and rows.attrs["consent_id"] == record.id
        consent.revoke(env.ctx, actor=seed.username, consent_id=record.id)
        with pytest.raises(ConsentRequired):
            bob.lookup("enterprise_tax", uscc=seed.uscc)

"""Every notebook of ``notebooks/`` runs top to bottom against a live gateway (nbclient).

The kernel gets what a hub kernel gets: ``SANDBOX_GATEWAY_URL`` and a hub API token of the
user (minted by the operator's ``sandbox-ops`` service, since users cannot mint their own).

Who runs what (docs/hub.md, "Notebooks"):

* alice (fin-lab): getting started, inclusive finance, and health / culture & tourism, where
  fin-lab has no grant: those two show the documented ``no_grant`` refusal and analyse open data;
* frank (mobility-lab): getting started and transport;
* hana, in a ``health-lab`` project this test creates with grants for the restricted health and
  hotel datasets: the full DP path of the health and culture & tourism notebooks.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from e2e.livehub import LiveHub
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from sandbox.config import REPO_ROOT

pytestmark = [pytest.mark.hub, pytest.mark.slow]

NOTEBOOKS = REPO_ROOT / "notebooks"
ARTIFACTS = REPO_ROOT / "test-artifacts" / "notebooks"

RUNS = [
    ("00-getting-started.ipynb", "alice"),
    ("00-getting-started.ipynb", "frank"),
    ("01-inclusive-finance.ipynb", "alice"),
    ("02-transport.ipynb", "frank"),
    ("03-health.ipynb", "alice"),
    ("03-health.ipynb", "hana"),
    ("04-culture-tourism.ipynb", "alice"),
    ("04-culture-tourism.ipynb", "hana"),
]
GRANTED_TO_HEALTH_LAB = ("outpatient_visits", "inpatient_settlements", "hotel_stays")


def test_every_notebook_is_executed_by_this_module() -> None:
    on_disk = {p.name for p in NOTEBOOKS.glob("*.ipynb")}
    assert on_disk == {name for name, _ in RUNS}


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_names_its_kernel_and_has_no_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"  # else Lab asks "Select Kernel"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs, f"{path.name}: committed with outputs"


@pytest.fixture(scope="module")
def tokens(docs_hub: LiveHub) -> dict[str, str]:
    """Sign the users in once (the hub learns their roles), then mint a token for each."""
    from sandbox.access import registry

    with docs_hub.control() as session:
        registry.create_user(session, "hana", "researcher", password=docs_hub.password, actor="admin")
        registry.create_project(
            session, "health-lab", title="Health services lab", lead="hana", actor="admin"
        )
        for dataset in GRANTED_TO_HEALTH_LAB:
            registry.grant_dataset(session, "health-lab", dataset, actor="admin", source="docs test")
    out = {}
    for name in sorted({user for _, user in RUNS}):
        docs_hub.user(name).login()
        out[name] = docs_hub.user_token(name, note="notebook test")
    return out


def kernel_env(hub: LiveHub, token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SANDBOX_", "JUPYTERHUB_"))}
    env["SANDBOX_GATEWAY_URL"] = hub.settings.gateway_url
    env["JUPYTERHUB_API_TOKEN"] = token
    return env


@pytest.mark.parametrize(("name", "user"), RUNS, ids=[f"{n[:2]}-{u}" for n, u in RUNS])
def test_notebook_runs_against_the_live_gateway(
    name: str, user: str, docs_hub: LiveHub, tokens: dict[str, str], tmp_path: Path
) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        client.execute(env=kernel_env(docs_hub, tokens[user]))
    except CellExecutionError as err:
        pytest.fail(f"{name} as {user}: {err}\n--- hub log ---\n{docs_hub.log_tail(2000)}", pytrace=False)
    finally:
        nbformat.write(nb, ARTIFACTS / f"{Path(name).stem}.{user}.ipynb")
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no chart was drawn"

"""docs/governance.md keeps up with the expert committee: every command, audit kind, queue, the quorum
and the demo members; docs/control-db.md lists its tables."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from sandbox.access.demo import DEMO_USERS
from sandbox.cli import committee_cmd
from sandbox.control.models import UserRole
from sandbox.governance.committee import AUDIT_KINDS
from sandbox.governance.committee_models import COMMITTEE_TABLES
from sandbox.governance.committee_rules import QUORUM, ItemKind, Opinion

DOCS = Path(__file__).resolve().parents[2] / "docs"
GOVERNANCE = (DOCS / "governance.md").read_text(encoding="utf-8")
CONTROL_DB = (DOCS / "control-db.md").read_text(encoding="utf-8")


def test_every_committee_command_is_documented() -> None:
    app = typer.Typer()
    committee_cmd.register(app)
    (group,) = app.registered_groups
    assert group.typer_instance is not None
    names = [f"sandbox committee {c.name}" for c in group.typer_instance.registered_commands]
    assert len(names) == 6
    documented = "\n".join(line for line in GOVERNANCE.splitlines() if line.startswith("sandbox "))
    for name in names:
        assert re.search(rf"^{re.escape(name)}\b", documented, re.MULTILINE), name


def test_kinds_queues_opinions_quorum_and_demo_members_are_documented() -> None:
    for kind in AUDIT_KINDS:
        assert f"`{kind}`" in GOVERNANCE, kind
    for queue in ItemKind:
        assert f"`{queue.value}`" in GOVERNANCE, queue
    for opinion in Opinion:
        assert f"`{opinion.value}`" in GOVERNANCE, opinion
    assert f"`QUORUM = {QUORUM}`" in GOVERNANCE
    experts = [u.username for u in DEMO_USERS if u.role is UserRole.EXPERT]
    assert len(experts) > QUORUM  # one raises, the others still make the quorum
    for name in experts:
        assert f"**`{name}`**" in GOVERNANCE, name
    assert "SR-37 is not built" not in GOVERNANCE


def test_the_committee_tables_are_in_the_control_db_page() -> None:
    for table in COMMITTEE_TABLES:
        assert f"| `{table}` |" in CONTROL_DB, table
    assert "`0006_committee`" in CONTROL_DB

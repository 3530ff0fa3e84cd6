"""docs/governance.md keeps up with the code: the matrix table, every command, path and event kind."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from sandbox.cli import governance_cmd
from sandbox.gateway.routes.governance import API, router
from sandbox.governance import events
from sandbox.governance.permissions import render_matrix

DOC = (Path(__file__).resolve().parents[2] / "docs" / "governance.md").read_text(encoding="utf-8")


def test_the_matrix_table_is_the_rendered_matrix() -> None:
    block = DOC.split("<!-- matrix:start -->\n", 1)[1].split("<!-- matrix:end -->", 1)[0]
    assert block == render_matrix()


def _commands() -> list[str]:
    app = typer.Typer()
    governance_cmd.register(app)
    names = [f"sandbox {c.name}" for c in app.registered_commands]
    for group in app.registered_groups:
        assert group.typer_instance is not None
        for command in group.typer_instance.registered_commands:
            names.append(f"sandbox {group.name} {command.name}")
    return names


def test_every_command_is_documented() -> None:
    commands = _commands()
    assert len(commands) > 20
    documented = "\n".join(line for line in DOC.splitlines() if line.startswith("sandbox "))
    for name in commands:
        assert re.search(rf"^{re.escape(name)}\b", documented, re.MULTILINE), name


def test_every_api_path_is_documented() -> None:
    for route in router.routes:
        path = getattr(route, "path", "")
        if not path.startswith(API):
            continue
        short = re.sub(r"\{\w+\}", "{id}", path.removeprefix(API + "/"))
        for method in sorted(getattr(route, "methods", set()) - {"HEAD"}):
            assert (
                f"`{method} {short}`" in DOC or f"`{method} {short}`," in DOC or f"{method} {short}" in DOC
            ), (
                method,
                short,
            )


def test_every_audit_kind_is_documented() -> None:
    for kind in events.KINDS:
        assert f"`{kind}`" in DOC, kind

"""The `sandbox` command (Typer). Each area registers its own sub-commands.

Errors from the sandbox print ``{"error": {"code", "message", "hint"}}`` on
stdout with ``--json`` (or a readable line on stderr otherwise) and exit 2.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="sandbox",
    help="Data sandbox: policies, synthetic warehouse, DP queries, export gate, governance.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module defines `register(app: typer.Typer) -> None`.
_COMMAND_MODULES = [
    "sandbox.cli.policy_cmd",
    "sandbox.cli.synth_cmd",
    "sandbox.cli.warehouse_cmd",
    "sandbox.cli.init_cmd",
    "sandbox.cli.audit_cmd",
    "sandbox.cli.admin_cmd",
    "sandbox.cli.query_cmd",
    "sandbox.cli.export_cmd",
    "sandbox.cli.governance_cmd",
    "sandbox.cli.committee_cmd",
    "sandbox.cli.gateway_cmd",
    "sandbox.cli.demo_cmd",
]


def _register_all() -> None:
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:
                continue  # area not built yet
            raise
        module.register(app)


_register_all()


def main() -> None:
    app(prog_name="sandbox")


if __name__ == "__main__":  # pragma: no cover
    main()

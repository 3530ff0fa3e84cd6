"""Import boundaries of the trust zones (docs/architecture.md, STYLE.md).

* ``sandbox.client`` (runs in the untrusted kernel) never imports the server side:
  no sqlalchemy, no opendp, no ``sandbox.dp`` / ``services`` / ``gateway`` / ``control`` ...
* ``import sandbox; sandbox.connect`` loads nothing but the client.
* ``opendp`` is imported only under ``sandbox/dp``.
* Nothing imports ``sandbox.gateway`` except ``sandbox.cli`` and the gateway itself.

Checked twice: statically (AST of every module, including imports inside functions)
and dynamically (a fresh interpreter's ``sys.modules``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "sandbox"

SERVER_PACKAGES = (
    "sandbox.access",
    "sandbox.audit",
    "sandbox.catalog",
    "sandbox.cli",
    "sandbox.control",
    "sandbox.dp",
    "sandbox.export",
    "sandbox.gateway",
    "sandbox.hub",
    "sandbox.ledger",
    "sandbox.policy",
    "sandbox.services",
    "sandbox.synth",
    "sandbox.config",
)
SERVER_LIBRARIES = (
    "sqlalchemy",
    "opendp",
    "alembic",
    "duckdb",
    "psycopg",
    "sqlglot",
    "fastapi",
    "jupyterhub",
)
CLIENT_ALLOWED_SANDBOX = ("sandbox.client", "sandbox.errors")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[str]:
    """Every module a file imports, anywhere in it (top level, functions, TYPE_CHECKING excluded)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module = _module_name(path)
    is_pkg = path.name == "__init__.py"
    type_checking_nodes: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                for sub in ast.walk(child):
                    type_checking_nodes.add(id(sub))
    for node in ast.walk(tree):
        if id(node) in type_checking_nodes:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_pkg:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target
            for alias in node.names:
                yield f"{target}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", None) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _files(under: Path) -> list[Path]:
    return sorted(under.rglob("*.py"))


def test_client_sources_import_no_server_module() -> None:
    offenders = []
    for path in _files(PACKAGE / "client"):
        for name in _imports(path):
            server_side = _within(name, SERVER_PACKAGES) or _within(name, SERVER_LIBRARIES)
            unlisted = name.startswith("sandbox.") and not _within(name, CLIENT_ALLOWED_SANDBOX)
            if server_side or unlisted:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_errors_module_is_stdlib_only() -> None:
    """The client imports sandbox.errors, so it must stay dependency-free."""
    names = set(_imports(PACKAGE / "errors.py"))
    assert not {n for n in names if n.startswith("sandbox") or _within(n, SERVER_LIBRARIES)}


def test_package_init_imports_nothing_at_import_time() -> None:
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    top_level = [
        n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom) and n.module != "__future__"
    ]
    assert all(isinstance(n, ast.ImportFrom) and n.module == "typing" for n in top_level), (
        "sandbox/__init__.py must import the client lazily (inside connect())"
    )


_PROBE = """
import json, sys
import sandbox
before = sorted(sys.modules)
sb = sandbox.connect(url="http://127.0.0.1:9/services/sandbox/", token="not-a-real-token", project="p")
from sandbox.client import builder, results, session, transport  # the whole client
print(json.dumps({"before": before, "after": sorted(sys.modules)}))
"""


def test_connect_loads_no_server_module_at_runtime() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, cwd=ROOT, timeout=120
    )
    loaded = json.loads(out.stdout)
    before = [m for m in loaded["before"] if m.startswith("sandbox")]
    assert before == ["sandbox"], "import sandbox must not load any submodule"
    after = loaded["after"]
    bad = [m for m in after if _within(m, SERVER_PACKAGES) or _within(m, SERVER_LIBRARIES)]
    assert bad == []
    assert "sandbox.client.session" in after


def test_opendp_is_imported_only_under_dp() -> None:
    offenders = []
    for path in _files(PACKAGE):
        if _module_name(path).startswith("sandbox.dp"):
            continue
        offenders += [
            f"{path.relative_to(ROOT)} imports {n}" for n in _imports(path) if _within(n, ("opendp",))
        ]
    assert offenders == []


def test_only_cli_imports_the_gateway() -> None:
    offenders = []
    for path in _files(PACKAGE):
        module = _module_name(path)
        if _within(module, ("sandbox.gateway", "sandbox.cli")):
            continue
        offenders += [
            f"{path.relative_to(ROOT)} imports {n}"
            for n in _imports(path)
            if _within(n, ("sandbox.gateway",))
        ]
    assert offenders == []


@pytest.mark.parametrize("package", ["sandbox.dp", "sandbox.services", "sandbox.control", "sandbox.policy"])
def test_server_core_never_imports_the_client(package: str) -> None:
    folder = PACKAGE.joinpath(*package.split(".")[1:])
    offenders = []
    for path in _files(folder):
        offenders += [
            f"{path.relative_to(ROOT)} imports {n}" for n in _imports(path) if _within(n, ("sandbox.client",))
        ]
    assert offenders == []

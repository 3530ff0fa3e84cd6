"""Small helpers over sqlglot trees shared by the validator modules."""

from __future__ import annotations

from typing import Any

import sqlglot.expressions as exp

from sandbox.errors import QuerySyntax

__all__ = ["_ident", "_name", "_set_args", "_snippet", "_unparen"]


def _snippet(node: exp.Expr | None, limit: int = 80) -> str:
    if node is None:
        return ""
    try:
        text = node.sql()
    except Exception:
        text = node.key.upper()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _name(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _set_args(node: exp.Expr) -> set[str]:
    return {k for k, v in node.args.items() if v is not None and v is not False and v != []}


def _unparen(node: Any) -> Any:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _ident(node: Any, use: str) -> str:
    """Normalised identifier text: unquoted identifiers are case-insensitive (lower-cased)."""
    if isinstance(node, exp.Identifier) and isinstance(node.this, str):
        return node.this if node.quoted else node.this.lower()
    raise QuerySyntax(f"{use}: expected a name, got {_snippet(node)!r}.")

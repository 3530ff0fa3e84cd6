"""The DP SQL subset: parse with sqlglot (never by hand), validate, return a QuerySpec.

Supported (docs/dp.md)::

    SELECT <keys and aggregates> FROM <dataset> [WHERE <predicate>]
    [GROUP BY <keys>] [ORDER BY <outputs>] [LIMIT n]

This module reads the text (one statement, no tokens sqlglot would skip); the tree is
validated by :mod:`sandbox.dp.validator`.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal, InvalidOperation

import sqlglot
import sqlglot.errors
import sqlglot.expressions as exp

from sandbox.errors import QueryMultipleStatements, QuerySyntax

from ._ast import _name
from .schema import CatalogLike
from .spec import QuerySpec
from .validator import validate_ast

__all__ = ["MAX_SQL_LENGTH", "parse_sql", "validate_ast"]

MAX_SQL_LENGTH = 20_000


def parse_sql(sql: str, catalog: CatalogLike) -> QuerySpec:
    """Parse one query of the DP subset into a validated :class:`QuerySpec`.

    Raises an ``InvalidQuery`` subclass (stable ``code``) for anything outside the subset.
    """
    if not isinstance(sql, str):
        raise QuerySyntax("The query must be a string of SQL.")
    if len(sql) > MAX_SQL_LENGTH:
        raise QuerySyntax(f"The query is longer than {MAX_SQL_LENGTH} characters.")
    try:
        statements = [s for s in sqlglot.parse(sql) if s is not None]
    except sqlglot.errors.ParseError as err:
        raise QuerySyntax(f"The query could not be parsed: {_parse_error_text(err)}") from None
    except RecursionError:
        raise QuerySyntax("The query is nested too deeply to parse.") from None
    except Exception:  # sqlglot raises assorted errors (TokenError, ValueError…) on garbage
        raise QuerySyntax("The query could not be parsed as SQL.") from None
    _check_tokens(sql)
    if not statements:
        raise QuerySyntax("The query is empty.")
    if len(statements) > 1:
        raise QueryMultipleStatements(f"The query holds {len(statements)} statements; send exactly one.")
    spec = validate_ast(statements[0], catalog)
    _check_consumed(sql, statements[0])
    return spec


_CLAUSE_TOKENS = frozenset({"FROM", "WHERE", "GROUP_BY", "ORDER_BY", "LIMIT", "HAVING", "R_PAREN", "COMMA"})


def _check_tokens(sql: str) -> None:
    """Refuse stray commas, which sqlglot silently skips (``COUNT(, *)``, ``IN (1,)``), and empty
    statements around a semicolon."""
    try:
        kinds = [t.token_type.name for t in sqlglot.tokenize(sql)]
    except Exception:
        raise QuerySyntax("The query could not be parsed as SQL.") from None
    for i, kind in enumerate(kinds):
        following = kinds[i + 1] if i + 1 < len(kinds) else "SEMICOLON"
        if kind == "SEMICOLON" and any(k != "SEMICOLON" for k in kinds[i:]):
            raise QueryMultipleStatements("The query holds several statements; send exactly one.")
        if kind == "COMMA" and (following in _CLAUSE_TOKENS or following == "SEMICOLON"):
            raise QuerySyntax(f"The query has a stray comma (token {i + 1}).")
        if kind in ("L_PAREN", "SELECT") and following == "COMMA":
            raise QuerySyntax(f"The query has a stray comma (token {i + 2}).")


_UNCOUNTED_TOKENS = frozenset({"L_PAREN", "R_PAREN", "COMMA", "SEMICOLON", "ALIAS", "ALL", "ASC"})


def _significant_tokens(sql: str) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for token in sqlglot.tokenize(sql):
        kind = token.token_type.name
        if kind in _UNCOUNTED_TOKENS:
            continue
        if kind in ("VAR", "IDENTIFIER"):
            out["NAME", token.text.lower()] += 1
        elif kind == "STRING":
            out["STRING", token.text] += 1
        elif kind == "NUMBER":
            try:
                out["NUMBER", str(Decimal(token.text).normalize())] += 1
            except InvalidOperation:
                out["NUMBER", token.text] += 1
        else:
            out[kind, ""] += 1
    return out


def _check_consumed(sql: str, tree: exp.Expr) -> None:
    """Every significant token of the query must survive into sqlglot's tree.

    sqlglot is lenient: it skips some tokens it cannot place (a unary ``+``, ``FROM t *``). An
    accepted query must mean exactly what it says, so a token missing from the regenerated SQL
    is a syntax error.
    """
    try:
        regenerated = _significant_tokens(tree.sql())
        written = _significant_tokens(sql)
    except Exception:
        raise QuerySyntax("The query could not be parsed as SQL.") from None
    missing = written - regenerated
    if missing:
        (kind, text), _ = sorted(missing.items())[0]
        raise QuerySyntax(f"The query has a token the SQL subset does not use: {_name(text or kind)!r}.")


def _parse_error_text(err: sqlglot.errors.ParseError) -> str:
    if err.errors:
        first = err.errors[0]
        where = f"line {first.get('line')}, column {first.get('col')}"
        return f"{first.get('description', 'invalid syntax')} ({where})."
    return "invalid syntax."

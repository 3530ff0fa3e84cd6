"""Errors a caller can act on.

Every error carries a stable ``code``, an HTTP ``status``, a message (what
happened) and a ``hint`` (what to do next). Stdlib only: the notebook client
imports this module too and maps ``code`` back to the same class, so a notebook
shows ``BudgetExceeded`` with the same words the gateway used.

Rule for DP paths (STYLE.md): a message may depend on the query, the policy,
public metadata and the caller's own ledger, never on private rows.
"""

from __future__ import annotations

from typing import Any, ClassVar


class SandboxError(Exception):
    """Base class of every error a user or operator can act on."""

    code: ClassVar[str] = "sandbox_error"
    status: ClassVar[int] = 400
    default_hint: ClassVar[str] = ""

    def __init__(self, message: str, *, hint: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The one JSON error shape: ``{"error": {"code", "message", "hint"}}``."""
        body: dict[str, Any] = {"code": self.code, "message": self.message, "hint": self.hint}
        if self.details:
            body["details"] = self.details
        return {"error": body}

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class InternalError(SandboxError):
    """A bug in the sandbox, not the caller's fault."""

    code = "internal_error"
    status = 500
    default_hint = "This is a bug in the sandbox; report it with the request id."


class ConfigError(SandboxError):
    code = "config_error"
    status = 500
    default_hint = "Check the SANDBOX_* environment variables and the policy directory."


class InvalidRequest(SandboxError):
    """A request with a bad value (name, role, date, ...), outside the DP query path."""

    code = "invalid_request"
    status = 400


class AlreadyExists(SandboxError):
    code = "already_exists"
    status = 409
    default_hint = "List the existing entries with `sandbox user|project|grant list`."


class PolicyError(SandboxError):
    """A policy file is invalid; ``problems`` lists every ``file: path: message``."""

    code = "policy_invalid"
    status = 500
    default_hint = "Run `sandbox policy check` and fix every problem it lists."


class MethodNotAllowed(SandboxError):
    code = "method_not_allowed"
    status = 405
    default_hint = "See the OpenAPI description for the methods each path accepts."


class HubUnavailable(SandboxError):
    """JupyterHub could not be asked who the caller is."""

    code = "hub_unavailable"
    status = 503
    default_hint = "Try again in a minute; if it persists, tell the platform operator."


class NotFound(SandboxError):
    code = "not_found"
    status = 404


class UnknownDataset(NotFound):
    code = "unknown_dataset"
    default_hint = "Call sb.catalog() (or `sandbox catalog`) for the dataset ids."


class AuthenticationFailed(SandboxError):
    code = "authentication_failed"
    status = 401
    default_hint = "Sign in again; a notebook kernel authenticates with its hub token."


class AccessDenied(SandboxError):
    code = "access_denied"
    status = 403


class AccountInactive(AccessDenied):
    code = "account_inactive"
    default_hint = "Your account is suspended or revoked; contact the platform operator."


class NotProjectMember(AccessDenied):
    code = "not_project_member"
    default_hint = "Use a project you belong to; sb.budget() lists them."


class NoGrant(AccessDenied):
    code = "no_grant"
    default_hint = "Your project needs an approved application (data-use agreement) for this dataset."


class InvalidQuery(SandboxError):
    """The query is outside the supported SQL subset or the dataset's policy."""

    code = "invalid_query"
    status = 400
    default_hint = (
        "Allowed: SELECT <public keys>, COUNT(*), COUNT(DISTINCT <unit>), SUM(col), AVG(col), "
        "MEDIAN(col), PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY col) FROM <dataset> "
        "[WHERE ...] [GROUP BY <public keys>] [ORDER BY ...] [LIMIT n]."
    )


class BudgetExceeded(SandboxError):
    code = "budget_exceeded"
    status = 403
    default_hint = "Ask for fewer statistics or coarser groups, or apply for more budget."


class BudgetFrozen(BudgetExceeded):
    """The user's privacy budget is frozen by a confirmed violation (SR-31)."""

    code = "budget_frozen"
    default_hint = (
        "A confirmed violation froze this budget; only a decision on appeal that reinstates the "
        "account lifts it (see the disclosure list and `sandbox violation appeal`)."
    )


class EpsilonTooLarge(BudgetExceeded):
    code = "epsilon_too_large"
    default_hint = "Lower epsilon to at most the dataset's per-query maximum (see sb.describe())."


class QueryFailed(SandboxError):
    """Execution failed after validation; details are in the audit log only."""

    code = "query_failed"
    status = 500
    default_hint = "Try again; if it persists, give the operator the request id."


class QueryTimeout(QueryFailed):
    """The warehouse statement ran past ``SANDBOX_QUERY_TIMEOUT`` and was stopped (charge kept)."""

    code = "query_timeout"
    status = 504
    default_hint = (
        "Ask for less work: a narrower WHERE filter or time window, fewer grouping keys, or "
        "aggregates the dataset's cube answers (COUNT/SUM/AVG over public-domain keys); the "
        "operator can rebuild the derived tables with `sandbox warehouse prepare`."
    )


class ExportRejected(SandboxError):
    code = "export_invalid"
    status = 400


class InvalidTransition(SandboxError):
    code = "invalid_transition"
    status = 409


class ConsentRequired(AccessDenied):
    code = "consent_required"
    default_hint = "The enterprise must authorise your bank for this dataset first (sandbox consent grant)."


def error_classes() -> dict[str, type[SandboxError]]:
    """Map every stable ``code`` to its class (used by the client and tests)."""
    out: dict[str, type[SandboxError]] = {}
    stack: list[type[SandboxError]] = [SandboxError]
    while stack:
        cls = stack.pop()
        out[cls.code] = cls
        stack.extend(cls.__subclasses__())
    return out


# --------------------------------------------------------------------------------------------
# DP query language (owned by sandbox/dp; see docs/dp.md "Error codes"). One class per stable
# code so the client maps every code back to the same class. Messages name the clause; texts
# never depend on data.


class QuerySyntax(InvalidQuery):
    code = "query_syntax"
    default_hint = "Write one SELECT statement of the supported subset (see docs/dp.md)."


class QueryMultipleStatements(InvalidQuery):
    code = "query_multiple_statements"
    default_hint = "Send exactly one SELECT statement per query."


class QueryNotSelect(InvalidQuery):
    code = "query_not_select"
    default_hint = "Only SELECT queries are allowed; the warehouse is read-only."


class QuerySelectStar(InvalidQuery):
    code = "query_select_star"
    default_hint = "List public grouping keys and aggregates, e.g. SELECT district_code, COUNT(*) ..."


class QueryDistinct(InvalidQuery):
    code = "query_distinct"
    default_hint = (
        "Drop DISTINCT; group by public keys instead. Only COUNT(DISTINCT <privacy unit>) is allowed."
    )


class QueryJoin(InvalidQuery):
    code = "query_join"
    default_hint = "Query one dataset per statement; joins are not supported."


class QuerySubquery(InvalidQuery):
    code = "query_subquery"
    default_hint = "Subqueries and WITH are not supported; filter with WHERE on the dataset's columns."


class QueryUnion(InvalidQuery):
    code = "query_union"
    default_hint = "UNION/INTERSECT/EXCEPT are not supported; send separate queries."


class QueryWindow(InvalidQuery):
    code = "query_window"
    default_hint = "Window functions (OVER, WINDOW, QUALIFY) are not supported; use GROUP BY public keys."


class QueryHaving(InvalidQuery):
    code = "query_having"
    default_hint = "HAVING is not supported; filter the released rows yourself (post-processing)."


class QueryMinMax(InvalidQuery):
    code = "query_min_max"
    default_hint = (
        "MIN/MAX are not supported; use a quantile such as PERCENTILE_CONT(0.99) WITHIN GROUP (ORDER BY col)."
    )


class QueryUnknownFunction(InvalidQuery):
    code = "query_unknown_function"
    default_hint = (
        "Allowed functions: COUNT(*), COUNT(DISTINCT <unit>), SUM, AVG, MEDIAN, QUANTILE(col, q), "
        "PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY col), BIN(col)."
    )


class QueryUnknownColumn(InvalidQuery):
    code = "query_unknown_column"
    default_hint = "Use a column of the dataset; sb.describe(<dataset>) lists them."


class QueryUnknownDataset(InvalidQuery):
    code = "query_unknown_dataset"
    default_hint = "FROM takes one dataset id; sb.catalog() lists them."


class QueryIdentifierColumn(InvalidQuery):
    code = "query_identifier_column"
    default_hint = "Identifier columns may appear only as COUNT(DISTINCT <privacy unit>)."


class QueryNonPublicKey(InvalidQuery):
    code = "query_non_public_key"
    default_hint = "Group by columns with a public domain, or BIN(col) over a column with declared bins."


class QueryBareColumn(InvalidQuery):
    code = "query_bare_column"
    default_hint = "A column outside an aggregate must be a public key listed in GROUP BY."


class QueryGroupBy(InvalidQuery):
    code = "query_group_by"
    default_hint = "GROUP BY lists public keys (columns or BIN(col)) that are also selected."


class QueryNoAggregate(InvalidQuery):
    code = "query_no_aggregate"
    default_hint = "Select at least one aggregate: COUNT(*), SUM(col), AVG(col), MEDIAN(col), ..."


class QueryCountDistinct(InvalidQuery):
    code = "query_count_distinct"
    default_hint = (
        "Use COUNT(*) for rows or COUNT(DISTINCT <privacy unit>) for units; other COUNT"
        " forms are not supported."
    )


class QueryNotNumeric(InvalidQuery):
    code = "query_not_numeric"
    default_hint = "SUM, AVG and quantiles need a numeric column with public bounds (see sb.describe())."


class QueryNoBins(InvalidQuery):
    code = "query_no_bins"
    default_hint = "BIN(col) needs a numeric column whose policy declares bins."


class QueryQuantile(InvalidQuery):
    code = "query_quantile"
    default_hint = (
        "Write PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY col) or QUANTILE(col, q) with a literal 0 < q < 1."
    )


class QueryWhere(InvalidQuery):
    code = "query_where"
    default_hint = (
        "WHERE compares one column with literals: =, <>, <, <=, >, >=, IN (...), BETWEEN, IS [NOT] NULL, "
        "combined with AND, OR, NOT."
    )


class QueryTimeWindowRequired(InvalidQuery):
    """The dataset's policy sets a query window and WHERE does not bound its column on both sides."""

    code = "query_time_window_required"
    default_hint = (
        "Bound the dataset's window column from below and above with top-level AND conditions, "
        "e.g. WHERE txn_time >= '2018-01-01' AND txn_time < '2018-02-01' (sb.describe() shows the window)."
    )


class QueryTimeWindowTooLong(InvalidQuery):
    """The WHERE bounds the window column, but over more days than the policy allows."""

    code = "query_time_window_too_long"
    default_hint = (
        "Narrow the date range to the dataset's query window and ask several queries for a longer period."
    )


class QueryTypeMismatch(InvalidQuery):
    code = "query_type_mismatch"
    default_hint = (
        "Compare a column with a literal of its type (numbers, 'text', TRUE/FALSE, DATE 'YYYY-MM-DD')."
    )


class QueryExpression(InvalidQuery):
    code = "query_expression"
    default_hint = (
        "SELECT lists public keys and aggregates of plain columns; compute derived values afterwards."
    )


class QueryOrderBy(InvalidQuery):
    code = "query_order_by"
    default_hint = "ORDER BY names selected outputs (alias, column or position), optionally ASC/DESC."


class QueryLimit(InvalidQuery):
    code = "query_limit"
    default_hint = "LIMIT takes a non-negative integer literal; OFFSET is not supported."


class QueryUnsupportedClause(InvalidQuery):
    code = "query_unsupported_clause"
    default_hint = "Allowed clauses: SELECT, FROM, WHERE, GROUP BY, ORDER BY, LIMIT."


class QueryNoPrivacyUnit(InvalidQuery):
    code = "query_no_privacy_unit"
    default_hint = "This dataset is open (no privacy unit); read its rows directly instead of a DP query."


class QueryDuplicateName(InvalidQuery):
    code = "query_duplicate_name"
    default_hint = "Give each output column a distinct name with AS."


class QueryTooManyCells(InvalidQuery):
    code = "query_too_many_cells"
    default_hint = "Group by fewer or coarser public keys."


class QueryEpsilon(InvalidQuery):
    code = "query_epsilon"
    default_hint = (
        "Pass a positive decimal budget with at most 12 decimal places, e.g. epsilon=Decimal('0.1')."
    )


class QueryAccuracyTarget(InvalidQuery):
    code = "query_accuracy_target"
    default_hint = (
        "Give a positive ci95 target for COUNT, SUM or COUNT(DISTINCT) statistics, and/or a positive "
        "rank_error95 target (number of values) for MEDIAN, QUANTILE or PERCENTILE_CONT."
    )

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


class PolicyError(SandboxError):
    """A policy file is invalid; ``problems`` lists every ``file: path: message``."""

    code = "policy_invalid"
    status = 500
    default_hint = "Run `sandbox policy check` and fix every problem it lists."


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


class EpsilonTooLarge(BudgetExceeded):
    code = "epsilon_too_large"
    default_hint = "Lower epsilon to at most the dataset's per-query maximum (see sb.describe())."


class QueryFailed(SandboxError):
    """Execution failed after validation; details are in the audit log only."""

    code = "query_failed"
    status = 500
    default_hint = "Try again; if it persists, give the operator the request id."


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

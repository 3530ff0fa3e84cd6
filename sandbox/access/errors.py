"""Errors of account and project administration (not on the query path).

They subclass ``SandboxError`` like every actionable error; the query path raises
the shared ``AccountInactive`` / ``NotProjectMember`` / ``NoGrant`` from
``sandbox.errors``.
"""

from __future__ import annotations

from sandbox.errors import SandboxError


class InvalidRequest(SandboxError):
    """An administrative request with a bad value (name, role, date, ...)."""

    code = "invalid_request"
    status = 400


class AlreadyExists(SandboxError):
    code = "already_exists"
    status = 409
    default_hint = "List the existing entries with `sandbox user|project|grant list`."


__all__ = ["AlreadyExists", "InvalidRequest"]

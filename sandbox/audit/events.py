"""Typed audit events: a registry of kinds, each with a version and required fields.

``store.append`` accepts only registered kinds, checks the required fields, refuses
field names that would carry personal data or secrets, and stamps the kind's
version into the payload as ``"_v"`` (inside the hashed body).

Areas register their own kinds at import time::

    from sandbox.audit.events import register_kind
    register_kind("ledger.reserved", 1, "Budget reserved for a query.", required=("project", "dataset"))

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.errors import InternalError

VERSION_KEY = "_v"
_KIND_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")

# Field names that would put personal data or secrets into the log (STYLE.md: log
# pseudonymous ids, never personal data). Checked at every nesting level.
FORBIDDEN_FIELDS = frozenset(
    {
        "password",
        "password_hash",
        "token",
        "api_token",
        "secret",
        "email",
        "phone",
        "mobile",
        "id_number",
        "resident_id",
        "real_name",
        "full_name",
        "address",
    }
)


@dataclass(frozen=True)
class EventKind:
    name: str
    version: int
    description: str
    required: frozenset[str]


_KINDS: dict[str, EventKind] = {}


def register_kind(name: str, version: int, description: str, *, required: Iterable[str] = ()) -> EventKind:
    """Register an event kind and return it.

    The area that owns a kind may re-register it (e.g. to add required fields or
    bump the version); lowering the version raises ``InternalError``.
    """
    if not _KIND_RE.match(name) or len(name) > 64:
        raise InternalError(f"audit event kind {name!r} must look like 'area.event' (lowercase, dots)")
    if version < 1:
        raise InternalError(f"audit event kind {name!r}: version must be >= 1")
    kind = EventKind(name, version, description, frozenset(required))
    existing = _KINDS.get(name)
    if existing is not None and kind.version < existing.version:
        raise InternalError(
            f"audit event kind {name!r} is already registered with version {existing.version}"
        )
    _KINDS[name] = kind
    return kind


def event_kind(name: str) -> EventKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise InternalError(
            f"unknown audit event kind {name!r}",
            hint="Register it with sandbox.audit.events.register_kind(name, version, description).",
        ) from None


def kinds() -> dict[str, EventKind]:
    """All registered kinds by name (a copy)."""
    return dict(_KINDS)


def _forbidden_keys(value: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if str(key).lower() in FORBIDDEN_FIELDS:
                found.append(where)
            found.extend(_forbidden_keys(item, where))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found.extend(_forbidden_keys(item, f"{path}[{index}]"))
    return found


def build_payload(name: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``data`` for kind ``name`` and return the payload to store (with ``_v``)."""
    kind = event_kind(name)
    reserved = sorted(key for key in data if str(key).startswith("_"))
    if reserved:
        raise InternalError(f"audit event {name!r}: keys starting with '_' are reserved: {reserved}")
    missing = sorted(kind.required - set(data))
    if missing:
        raise InternalError(f"audit event {name!r} is missing required fields {missing}")
    forbidden = _forbidden_keys(data)
    if forbidden:
        raise InternalError(
            f"audit event {name!r} carries fields that may hold personal data or secrets: {forbidden}",
            hint="Log pseudonymous ids (usernames, uscc_hmac, release ids), never personal data.",
        )
    return {**data, VERSION_KEY: kind.version}


# --- the kinds of the foundation (SR-28) and of the areas that follow ------------------------

_BUILTIN: list[tuple[str, str, tuple[str, ...]]] = [
    # system
    ("system.migrated", "Control DB migrated to a new revision.", ("from_revision", "to_revision")),
    ("policy.loaded", "Policies loaded with a new content digest.", ("digest",)),
    # accounts and projects (sandbox.access)
    ("user.created", "Account created.", ("user", "role")),
    ("user.status_changed", "Account approved, suspended, revoked or reinstated.", ("user", "status")),
    ("user.password_set", "Account password set or changed (the hash is not logged).", ("user",)),
    ("user.login", "Sign-in seen by the gateway or hub.", ("user",)),
    ("user.login_failed", "Failed sign-in.", ("user",)),
    ("session.started", "Notebook server started.", ("user",)),
    ("session.stopped", "Notebook server stopped.", ("user",)),
    ("project.created", "Project created with its lead.", ("project", "lead")),
    ("project.member_added", "User added to a project.", ("project", "user")),
    ("project.member_removed", "User removed from a project.", ("project", "user")),
    ("grant.added", "Dataset granted to a project.", ("grant_id", "project", "dataset")),
    ("grant.revoked", "Grant revoked.", ("grant_id", "project", "dataset")),
    # queries and budget (sandbox.services, sandbox.ledger)
    ("query.released", "DP query answered; release stored.", ("project", "dataset")),
    ("query.rejected", "Query refused (access, validation or budget).", ("dataset",)),
    ("query.failed", "Query failed during execution (details here only).", ("dataset",)),
    (
        "query.cache_hit",
        "Identical query answered from its stored release at no cost.",
        ("project", "dataset"),
    ),
    ("budget.reserved", "Privacy budget reserved (spent) before a query runs.", ("project", "dataset")),
    ("budget.charged", "Privacy budget charged.", ("project", "dataset")),
    (
        "budget.abandoned",
        "Reservation left in flight by a dead process marked abandoned; its charge is kept.",
        ("release_id", "project", "dataset"),
    ),
    # export gate (sandbox.export)
    ("export.submitted", "Export request submitted to quarantine.", ("export_id",)),
    ("export.checked", "Automatic export checks ran.", ("export_id",)),
    ("export.decided", "Steward decision on an export.", ("export_id",)),
    ("export.released", "Export released with its manifest.", ("export_id",)),
    # governance
    ("application.submitted", "Access application submitted.", ("application_id",)),
    ("application.decided", "Access application decided.", ("application_id",)),
    ("agreement.signed", "Data-use agreement signed.", ("agreement_id",)),
    ("consent.granted", "Enterprise authorised a bank.", ("consent_id",)),
    ("consent.revoked", "Enterprise withdrew an authorisation.", ("consent_id",)),
    ("consent.used", "Record look-up under an enterprise authorisation.", ("consent_id",)),
    ("violation.recorded", "Violation recorded.", ("violation_id",)),
    ("classification.changed", "Dataset tier or grade changed.", ("dataset",)),
]

for _name, _description, _required in _BUILTIN:
    register_kind(_name, 1, _description, required=_required)


__all__ = [
    "FORBIDDEN_FIELDS",
    "VERSION_KEY",
    "EventKind",
    "build_payload",
    "event_kind",
    "kinds",
    "register_kind",
]

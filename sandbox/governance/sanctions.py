"""Violation reports, sanctions and the public disclosure list (SR-31, SR-32).

* :func:`report`: anyone signed in reports a suspected violation (举报) against an account.
* :func:`confirm` / :func:`dismiss`: decided with reasons. Confirming is recording the
  violation *and* publishing it, so it needs both matrix rows ("Record violation, restrict
  or close access" and "Publish disclosure list"): in practice the operator. A confirmation
  closes access **at once**, in one transaction: the account becomes ``revoked`` (the
  gateway reads the registry on every request, so the next call with the user's token is
  refused), the user's budget is frozen (``budget_freezes``), and an entry is published on
  the disclosure list. Then, outside the transaction, the user's notebook servers are
  stopped through the hub API (:class:`ServerStopper`) and their pending export requests are
  withdrawn (:class:`ExportWithdrawer`); what happened is recorded (``sanction.applied``).
* :func:`appeal` / :func:`decide_appeal`: the sanctioned user appeals; the operator upholds
  the sanction or reinstates the account (budget unfrozen, disclosure annotated, never
  deleted).
* :func:`disclosures`: the public list; no sign-in needed.

The hub calls are ``sandbox.hub.hubapi.close_access`` (the code of ``close_hub_access``):
the user's tokens are deleted and their servers stopped, with a token holding
``admin:servers``, ``read:users`` and ``tokens``: ``$SANDBOX_HUB_STOP_TOKEN_FILE``; in the
gateway, its own ``sandbox`` service token (hub role ``sandbox-gateway``); else the
``sandbox-ops`` token of this host's hub when readable (see docs/governance.md).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.access import registry
from sandbox.audit.store import append
from sandbox.control.models import User, UserRole, UserStatus
from sandbox.errors import AccessDenied, InvalidTransition, NotFound, SandboxError
from sandbox.governance.agreements import username_of
from sandbox.governance.common import (
    GovContext,
    account,
    choice,
    dataset_resource,
    iso,
    now_or,
    reading,
    text,
    writing,
)
from sandbox.governance.models import (
    BudgetFreeze,
    Disclosure,
    DisclosureStatus,
    Violation,
    ViolationCategory,
    ViolationStatus,
    dump,
    load,
)
from sandbox.governance.permissions import Action, Resource, check_can

log = logging.getLogger("sandbox.governance.sanctions")

DEFAULT_MEASURES = (
    "Access closed: account revoked, notebook servers stopped, budget frozen, pending exports withdrawn."
)
HUB_TOKEN_FILE_ENV = "SANDBOX_HUB_STOP_TOKEN_FILE"  # noqa: S105 - the name of the variable
GATEWAY_SERVICE_NAME = "sandbox"
"""The gateway's hub service name (``sandbox.hub.settings.SERVICE_NAME``)."""


# --------------------------------------------------------------------------- side effects


@dataclass(frozen=True)
class StopOutcome:
    """What the hub said when asked to close a user's access (servers stopped, tokens deleted)."""

    status: str  # stopped / stop_pending / not_running / no_hub_user / failed / not_configured
    servers: list[str] = field(default_factory=list)
    detail: str = ""
    tokens_deleted: int = 0
    via: str = ""  # which credential was used (a label, never the token)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "servers": self.servers,
            "detail": self.detail,
            "tokens_deleted": self.tokens_deleted,
            "via": self.via,
        }


class ServerStopper(Protocol):
    """Stops every notebook server of a user (injectable; tests use a fake)."""

    def stop_servers(self, username: str) -> StopOutcome: ...


class NullServerStopper:
    """No hub configured (CLI without a hub): nothing is stopped, and that is recorded."""

    def stop_servers(self, username: str) -> StopOutcome:
        return StopOutcome("not_configured", [], "no JupyterHub API configured")


VIA_TOKEN_FILE = f"${HUB_TOKEN_FILE_ENV}"
VIA_SERVICE = "hub service 'sandbox' (the gateway's own token)"
VIA_OPS = "hub service 'sandbox-ops' (state folder)"
VIA_ENV = "$JUPYTERHUB_API_TOKEN"


class HttpxServerStopper:
    """Closes a user's access at the hub with :func:`sandbox.hub.hubapi.close_access`.

    The same code as ``close_hub_access`` (``sandbox.hub.hubapi``): delete the user's API
    tokens, then ``DELETE {api_url}/users/{name}/server`` (and each named server). The token
    needs ``admin:servers`` (list and stop servers), ``read:users`` and ``tokens`` (without
    it the servers are still stopped; the detail says the tokens were kept). JupyterHub
    answers 204 when stopped, 202 while stopping (after its ``slow_stop_timeout``, 10 s, so
    the timeout here is longer).
    """

    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        via: str = "",
    ) -> None:
        self._api = api_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._transport = transport
        self.via = via

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> HttpxServerStopper | None:
        """From ``JUPYTERHUB_API_URL`` and the token in ``$SANDBOX_HUB_STOP_TOKEN_FILE``.

        Without that file the process's own hub token (``JUPYTERHUB_API_TOKEN``) is used: in the
        gateway, the ``sandbox`` service's token.
        """
        env = dict(os.environ) if environ is None else environ
        url = env.get("JUPYTERHUB_API_URL")
        token = env.get("JUPYTERHUB_API_TOKEN", "")
        token_file = env.get(HUB_TOKEN_FILE_ENV)
        if token_file:
            via = VIA_TOKEN_FILE
            try:
                token = Path(token_file).read_text(encoding="utf-8").strip()
            except OSError:
                log.warning("cannot read %s", HUB_TOKEN_FILE_ENV)
                token = ""
        elif env.get("JUPYTERHUB_SERVICE_NAME") == GATEWAY_SERVICE_NAME:
            via = VIA_SERVICE
        else:
            via = VIA_ENV
        if not url or not token:
            return None
        return cls(url, token, via=via)

    @classmethod
    def from_hub_settings(cls) -> HttpxServerStopper | None:
        """The ``sandbox-ops`` service token and hub API URL of this host's hub (``sandbox.hub.settings``).

        Works where that token file is readable (the operator's shell on the hub machine).
        """
        try:
            from sandbox.hub.hubapi import operator_token
            from sandbox.hub.settings import load_hub_settings

            hub = load_hub_settings()
            token = operator_token(hub)
        except Exception:  # no hub configured here, or the token is not ours to read
            return None
        return cls(hub.hub_api_url, token, via=VIA_OPS)

    def stop_servers(self, username: str) -> StopOutcome:
        from sandbox.hub.hubapi import close_access, hub_client

        try:
            with hub_client(self._api, self._token, timeout=self._timeout, transport=self._transport) as hub:
                closed = close_access(hub, username)
        except NotFound:
            return StopOutcome("no_hub_user", [], "the hub has no such user", via=self.via)
        except SandboxError as err:  # hub down or refusing; the message never holds the token
            return StopOutcome("failed", [], str(err), via=self.via)
        except httpx.HTTPError as err:
            return StopOutcome("failed", [], f"hub call failed ({type(err).__name__})", via=self.via)
        servers = list(closed.servers)
        tokens = f"{closed.tokens_deleted} token(s) deleted"
        if closed.tokens_kept:
            tokens += f", {closed.tokens_kept} kept"
        if closed.tokens_error:
            tokens += f"; tokens kept: {closed.tokens_error}"
        detail = f"hub answered {list(closed.stop_statuses)}; {tokens}"
        if closed.stop_failed:
            status = "failed"
        elif not servers:
            status, detail = "not_running", f"no server was running; {tokens}"
        else:
            status = "stop_pending" if closed.stop_pending else "stopped"
        return StopOutcome(status, servers, detail, tokens_deleted=closed.tokens_deleted, via=self.via)


@dataclass(frozen=True)
class WithdrawOutcome:
    status: str  # withdrawn / none_pending / recorded (no export service) / failed
    export_ids: list[int] = field(default_factory=list)
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "export_ids": self.export_ids, "detail": self.detail}


class ExportWithdrawer(Protocol):
    """Withdraws a user's pending export requests."""

    def withdraw_pending(self, username: str, *, actor: str) -> WithdrawOutcome: ...


class ServiceExportWithdrawer:
    """Through ``sandbox.export.service.withdraw`` (the operator may withdraw any pending request)."""

    def __init__(self, ctx: GovContext) -> None:
        self._ctx = ctx

    def withdraw_pending(self, username: str, *, actor: str) -> WithdrawOutcome:
        try:
            from sandbox.export import service
            from sandbox.export.models import ExportRequest
            from sandbox.export.quarantine import QuarantineStore
            from sandbox.export.states import FINAL_STATES
        except ImportError:
            return WithdrawOutcome("recorded", [], "no export service installed; nothing to withdraw")
        with reading(self._ctx) as session:
            user = registry.find_user(session, username)
            if user is None:
                return WithdrawOutcome("none_pending")
            final = [s.value for s in FINAL_STATES]
            pending = list(
                session.scalars(
                    select(ExportRequest.id)
                    .where(ExportRequest.requester_id == user.id, ExportRequest.status.not_in(final))
                    .order_by(ExportRequest.id)
                )
            )
        if not pending:
            return WithdrawOutcome("none_pending")
        settings = getattr(self._ctx, "settings", None)
        if settings is None:
            from sandbox.config import get_settings

            settings = get_settings()
        export_ctx = service.ExportContext(
            catalog=self._ctx.catalog,
            control_engine=self._ctx.control_engine,
            quarantine=QuarantineStore(settings.quarantine_dir),
        )
        done, failed = [], []
        for export_id in pending:
            try:
                service.withdraw(export_ctx, export_id=export_id, user=actor)
                done.append(export_id)
            except Exception as err:  # one failure must not stop the others
                log.warning("withdrawing export %s failed: %s", export_id, type(err).__name__)
                failed.append(export_id)
        if failed:
            return WithdrawOutcome("failed", done, f"could not withdraw {failed}")
        return WithdrawOutcome("withdrawn", done)


@dataclass
class SanctionServices:
    """The side effects of a confirmation, injectable (gateway and tests pass their own)."""

    stopper: ServerStopper
    withdrawer: ExportWithdrawer

    @classmethod
    def default(cls, ctx: GovContext) -> SanctionServices:
        """The hub stopper with the first token found, in this order:

        1. the file named by ``$SANDBOX_HUB_STOP_TOKEN_FILE`` (with ``$JUPYTERHUB_API_URL``);
        2. in the gateway (``$JUPYTERHUB_SERVICE_NAME`` is ``sandbox``): its own service token,
           whose hub role ``sandbox-gateway`` holds the scopes (``sandbox.hub.services``);
        3. the ``sandbox-ops`` token of this host's hub (the operator's shell on the hub machine);
        4. any other ``$JUPYTERHUB_API_TOKEN``.

        None of them: nothing is stopped (recorded as ``not_configured``)."""
        in_gateway = os.environ.get("JUPYTERHUB_SERVICE_NAME") == GATEWAY_SERVICE_NAME
        if os.environ.get(HUB_TOKEN_FILE_ENV) or in_gateway:
            found = HttpxServerStopper.from_env()
        else:
            found = HttpxServerStopper.from_hub_settings() or HttpxServerStopper.from_env()
        return cls(found or NullServerStopper(), ServiceExportWithdrawer(ctx))


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ViolationRecord:
    id: int
    reporter: str
    subject: str
    dataset: str | None
    project: str | None
    category: str
    description: str
    status: str
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    actions: dict[str, Any] | None
    appeal_grounds: str | None
    appeal_reason: str | None
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "decided_at": iso(self.decided_at), "created_at": iso(self.created_at)}


@dataclass(frozen=True)
class DisclosureRecord:
    """A public entry: the account's pseudonymous id and organisation, never personal data."""

    id: int
    violation_id: int
    subject: str
    organisation: str | None
    category: str
    summary: str
    measures: str
    status: str
    note: str | None
    published_at: datetime
    updated_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "published_at": iso(self.published_at), "updated_at": iso(self.updated_at)}


def _violation_record(session: Session, row: Violation) -> ViolationRecord:
    return ViolationRecord(
        id=row.id,
        reporter=username_of(session, row.reporter_id) or "?",
        subject=username_of(session, row.subject_id) or "?",
        dataset=row.dataset,
        project=row.project,
        category=row.category,
        description=row.description,
        status=row.status,
        decided_by=username_of(session, row.decided_by),
        decided_at=row.decided_at,
        decision_reason=row.decision_reason,
        actions=load(row.actions),
        appeal_grounds=row.appeal_grounds,
        appeal_reason=row.appeal_reason,
        created_at=row.created_at,
    )


def _disclosure_record(row: Disclosure) -> DisclosureRecord:
    return DisclosureRecord(
        id=row.id,
        violation_id=row.violation_id,
        subject=row.subject,
        organisation=row.organisation,
        category=row.category,
        summary=row.summary,
        measures=row.measures,
        status=row.status,
        note=row.note,
        published_at=row.published_at,
        updated_at=row.updated_at,
    )


def _get(session: Session, violation_id: int) -> Violation:
    row = session.get(Violation, violation_id)
    if row is None:
        raise NotFound(f"No violation report {violation_id}.")
    return row


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _check_decider(ctx: GovContext, user: User, row: Violation) -> None:
    """Confirming records the violation and publishes it: both matrix rows must allow it."""
    resource = dataset_resource(ctx.catalog, row.dataset, label=f"violation {row.id}")
    check_can(user, Action.RECORD_VIOLATION, resource)
    check_can(user, Action.PUBLISH_DISCLOSURE, Resource.of(label=f"violation {row.id}"))


# --------------------------------------------------------------------------- report


def report(
    ctx: GovContext,
    *,
    reporter: str,
    subject: str,
    description: str,
    category: str = ViolationCategory.OTHER.value,
    dataset: str | None = None,
    project: str | None = None,
    now: datetime | None = None,
) -> ViolationRecord:
    """File a report (举报) against ``subject``; opens a case for the operator and the provider."""
    category = choice(ViolationCategory, category, "category").value
    description = text(description, "description", minimum=10)
    if dataset is not None:
        ctx.catalog.dataset(dataset)  # UnknownDataset
    with writing(ctx) as session:
        filer = account(session, reporter)
        check_can(filer, Action.FILE_REPORT)
        target = registry.get_user(session, subject)
        if project is not None:
            registry.get_project(session, project)
        row = Violation(
            reporter_id=filer.id,
            subject_id=target.id,
            dataset=dataset,
            project=project,
            category=category,
            description=description,
            status=ViolationStatus.REPORTED.value,
            created_at=now_or(now),
        )
        session.add(row)
        session.flush()
        append(
            session,
            "violation.reported",
            filer.username,
            {
                "violation_id": row.id,
                "subject": target.username,
                "category": category,
                "dataset": dataset,
                "project": project,
                # The free text stays in the case file; the chain pins it by hash.
                "description_sha256": _digest(description),
            },
        )
        return _violation_record(session, row)


# --------------------------------------------------------------------------- decide


def confirm(
    ctx: GovContext,
    *,
    actor: str,
    violation_id: int,
    reason: str,
    summary: str | None = None,
    measures: str = DEFAULT_MEASURES,
    services: SanctionServices | None = None,
    now: datetime | None = None,
) -> ViolationRecord:
    """Confirm a report: close the subject's access at once and publish a disclosure entry."""
    reason = text(reason, "reason")
    now = now_or(now)
    services = services or SanctionServices.default(ctx)
    with writing(ctx) as session:
        admin = account(session, actor)
        row = _get(session, violation_id)
        _check_decider(ctx, admin, row)
        if row.status != ViolationStatus.REPORTED:
            raise InvalidTransition(f"Violation report {violation_id} is already {row.status}.")
        subject = session.get(User, row.subject_id)
        assert subject is not None
        if subject.id == admin.id:
            raise AccessDenied("Nobody decides a report about themselves.", hint="Another operator decides.")
        row.status = ViolationStatus.CONFIRMED.value
        row.decided_by = admin.id
        row.decided_at = now
        row.decision_reason = reason
        session.flush()
        append(
            session,
            "violation.recorded",
            admin.username,
            {
                "violation_id": row.id,
                "subject": subject.username,
                "decision": "confirmed",
                "category": row.category,
                "reason": reason,
            },
        )
        previous_status = subject.status
        registry.set_status(
            session, subject.username, UserStatus.REVOKED, actor=admin.username, reason=f"violation {row.id}"
        )
        projects = [p.name for p in registry.user_projects(session, subject.username)]
        session.add(BudgetFreeze(user_id=subject.id, violation_id=row.id, frozen_at=now))
        session.flush()
        append(
            session,
            "budget.frozen",
            admin.username,
            {"user": subject.username, "violation_id": row.id, "projects": projects},
        )
        disclosure = Disclosure(
            violation_id=row.id,
            subject=subject.username,
            organisation=subject.organisation,
            category=row.category,
            summary=text(summary, "summary") if summary else _default_summary(row),
            measures=measures.strip() or DEFAULT_MEASURES,
            status=DisclosureStatus.PUBLISHED.value,
            published_at=now,
            published_by=admin.id,
        )
        session.add(disclosure)
        session.flush()
        append(
            session,
            "disclosure.published",
            admin.username,
            {
                "disclosure_id": disclosure.id,
                "violation_id": row.id,
                "subject": subject.username,
                "organisation": subject.organisation,
                "category": row.category,
            },
        )
        subject_name = subject.username
    # Outside the transaction: the account is already closed, whatever the hub says.
    stopped = services.stopper.stop_servers(subject_name)
    withdrawn = services.withdrawer.withdraw_pending(subject_name, actor=actor)
    actions = {
        "account": {"status": UserStatus.REVOKED.value, "previous": previous_status},
        "budget": "frozen",
        "servers": stopped.to_dict(),
        "exports": withdrawn.to_dict(),
        "disclosure_id": disclosure.id,
    }
    with writing(ctx) as session:
        row = _get(session, violation_id)
        row.actions = dump(actions)
        session.flush()
        append(
            session,
            "sanction.applied",
            actor,
            {
                "violation_id": row.id,
                "user": subject_name,
                "servers": stopped.to_dict(),
                "exports": withdrawn.to_dict(),
            },
        )
        return _violation_record(session, row)


def _default_summary(row: Violation) -> str:
    labels = {
        ViolationCategory.ILLEGAL_ACQUISITION.value: "Data obtained illegally",
        ViolationCategory.BEYOND_SCENARIO.value: "Data used beyond the agreed scenario",
        ViolationCategory.INFRINGEMENT.value: "Rights of others infringed",
        ViolationCategory.OTHER.value: "Violation of the data-use agreement",
    }
    where = f" ({row.dataset})" if row.dataset else ""
    return labels[row.category] + where + "."


def dismiss(
    ctx: GovContext, *, actor: str, violation_id: int, reason: str, now: datetime | None = None
) -> ViolationRecord:
    """Dismiss a report with reasons; nothing else changes."""
    reason = text(reason, "reason")
    with writing(ctx) as session:
        admin = account(session, actor)
        row = _get(session, violation_id)
        check_can(
            admin,
            Action.RECORD_VIOLATION,
            dataset_resource(ctx.catalog, row.dataset, label=f"violation {row.id}"),
        )
        if row.status != ViolationStatus.REPORTED:
            raise InvalidTransition(f"Violation report {violation_id} is already {row.status}.")
        row.status = ViolationStatus.DISMISSED.value
        row.decided_by = admin.id
        row.decided_at = now_or(now)
        row.decision_reason = reason
        session.flush()
        append(session, "violation.dismissed", admin.username, {"violation_id": row.id, "reason": reason})
        return _violation_record(session, row)


# --------------------------------------------------------------------------- appeal


def appeal(
    ctx: GovContext, *, user: str, violation_id: int, grounds: str, now: datetime | None = None
) -> ViolationRecord:
    """The sanctioned user (whose account is revoked) appeals, or the operator records an appeal received."""
    grounds = text(grounds, "grounds", minimum=10)
    with writing(ctx) as session:
        filer = account(session, user, active=False)
        row = _get(session, violation_id)
        if filer.id != row.subject_id and filer.role != UserRole.ADMIN:
            raise AccessDenied("Only the sanctioned account appeals (or the operator records its appeal).")
        if filer.role == UserRole.ADMIN and filer.status != UserStatus.APPROVED:
            raise AccessDenied(f"Account {filer.username!r} is {filer.status}.")
        if row.status != ViolationStatus.CONFIRMED:
            raise InvalidTransition(
                f"Only a confirmed violation can be appealed; {violation_id} is {row.status}."
            )
        row.status = ViolationStatus.APPEALED.value
        row.appeal_grounds = grounds
        row.appealed_at = now_or(now)
        session.flush()
        append(
            session,
            "violation.appealed",
            filer.username,
            {"violation_id": row.id, "grounds_sha256": _digest(grounds)},
        )
        return _violation_record(session, row)


def decide_appeal(
    ctx: GovContext,
    *,
    actor: str,
    violation_id: int,
    reinstate: bool,
    reason: str,
    now: datetime | None = None,
) -> ViolationRecord:
    """Uphold the sanction, or reinstate: account approved, budget unfrozen, disclosure annotated."""
    reason = text(reason, "reason")
    now = now_or(now)
    with writing(ctx) as session:
        admin = account(session, actor)
        row = _get(session, violation_id)
        _check_decider(ctx, admin, row)
        if row.status != ViolationStatus.APPEALED:
            raise InvalidTransition(f"Violation {violation_id} has no pending appeal (it is {row.status}).")
        subject = session.get(User, row.subject_id)
        assert subject is not None
        row.status = (ViolationStatus.REINSTATED if reinstate else ViolationStatus.UPHELD).value
        row.appeal_decided_by = admin.id
        row.appeal_decided_at = now
        row.appeal_reason = reason
        session.flush()
        append(
            session,
            "violation.appeal_decided",
            admin.username,
            {"violation_id": row.id, "decision": row.status, "reason": reason, "subject": subject.username},
        )
        disclosure = session.scalars(select(Disclosure).where(Disclosure.violation_id == row.id)).first()
        if reinstate:
            registry.set_status(
                session,
                subject.username,
                UserStatus.APPROVED,
                actor=admin.username,
                reason=f"appeal {row.id}",
            )
            for freeze in session.scalars(
                select(BudgetFreeze).where(
                    BudgetFreeze.violation_id == row.id, BudgetFreeze.lifted_at.is_(None)
                )
            ):
                freeze.lifted_at = now
                session.flush()
                append(
                    session,
                    "budget.unfrozen",
                    admin.username,
                    {"user": subject.username, "violation_id": row.id},
                )
        if disclosure is not None:
            outcome = "reinstated on appeal" if reinstate else "appeal refused"
            disclosure.note = f"{now:%Y-%m-%d}: {outcome}. {reason}"
            if reinstate:
                disclosure.status = DisclosureStatus.REINSTATED.value
            disclosure.updated_at = now
            session.flush()
            append(
                session,
                "disclosure.updated",
                admin.username,
                {"disclosure_id": disclosure.id, "violation_id": row.id, "status": disclosure.status},
            )
        return _violation_record(session, row)


# --------------------------------------------------------------------------- reading


def disclosures(ctx: GovContext) -> list[DisclosureRecord]:
    """The public disclosure list, newest first (no sign-in)."""
    with reading(ctx) as session:
        rows = session.scalars(
            select(Disclosure).order_by(Disclosure.published_at.desc(), Disclosure.id.desc())
        )
        return [_disclosure_record(r) for r in rows]


def _visible(ctx: GovContext, user: User, row: Violation) -> bool:
    if user.role in (UserRole.ADMIN, UserRole.AUDITOR):
        return True
    if user.id in (row.reporter_id, row.subject_id):
        return True
    if user.role == UserRole.STEWARD and row.dataset:
        return user.department in ctx.catalog.dataset(row.dataset).provider
    return False


def list_violations(ctx: GovContext, *, user: str, status: str | None = None) -> list[ViolationRecord]:
    """Cases ``user`` may see: admins and auditors all; stewards their datasets'; others their own."""
    with reading(ctx) as session:
        viewer = account(session, user)
        query = select(Violation).order_by(Violation.id.desc())
        if status is not None:
            query = query.where(Violation.status == status)
        return [_violation_record(session, r) for r in session.scalars(query) if _visible(ctx, viewer, r)]


def get_violation(ctx: GovContext, *, user: str, violation_id: int) -> ViolationRecord:
    with reading(ctx) as session:
        viewer = account(session, user, active=False)
        row = _get(session, violation_id)
        if not _visible(ctx, viewer, row):
            raise NotFound(f"No violation report {violation_id} that you may see.")
        return _violation_record(session, row)


def is_frozen(session: Session, username: str) -> bool:
    """Whether ``username``'s budget is frozen by a sanction (for the ledger to refuse charges)."""
    user = registry.find_user(session, username)
    if user is None:
        return False
    row = session.scalars(
        select(BudgetFreeze.id)
        .where(BudgetFreeze.user_id == user.id, BudgetFreeze.lifted_at.is_(None))
        .limit(1)
    ).first()
    return row is not None


__all__ = [
    "DEFAULT_MEASURES",
    "HUB_TOKEN_FILE_ENV",
    "DisclosureRecord",
    "ExportWithdrawer",
    "HttpxServerStopper",
    "NullServerStopper",
    "SanctionServices",
    "ServerStopper",
    "ServiceExportWithdrawer",
    "StopOutcome",
    "ViolationRecord",
    "WithdrawOutcome",
    "appeal",
    "confirm",
    "decide_appeal",
    "disclosures",
    "dismiss",
    "get_violation",
    "is_frozen",
    "list_violations",
    "report",
]

"""``sandbox init [--demo]``: data dir, control DB migrations, policies, demo accounts.

Idempotent: a second run changes nothing and appends no audit entry. Every change
(migration, new policy digest, each demo user, project, member, grant) is an
audit entry.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import select
from sqlalchemy.engine import make_url

from sandbox.access.demo import DEMO_PASSWORD_ENV, seed_demo
from sandbox.audit import store
from sandbox.cli.output import emit_json, fail
from sandbox.config import Settings, get_settings
from sandbox.control.db import current_revision, make_engine, migrate, session_scope
from sandbox.control.models import AuditEntry
from sandbox.errors import SandboxError


@dataclass
class InitReport:
    data_dir: Path
    control_db: str
    revision_before: str | None
    revision: str | None
    policies: str
    created: list[str] = field(default_factory=list)
    passwords: dict[str, str] = field(default_factory=dict)  # generated now, shown once
    users_with_env_password: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "data_dir": str(self.data_dir),
            "control_db": self.control_db,
            "revision_before": self.revision_before,
            "revision": self.revision,
            "policies": self.policies,
            "created": self.created,
            "passwords": self.passwords,
            "users_with_env_password": self.users_with_env_password,
        }


def policy_digest(policy_dir: Path) -> str:
    """SHA-256 over the policy files (names and bytes), in name order."""
    digest = hashlib.sha256()
    for path in sorted(policy_dir.glob("*.yaml")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _load_catalog(settings: Settings) -> tuple[Any | None, str]:
    try:
        from sandbox.policy.loader import load_policies
    except ModuleNotFoundError as err:
        if err.name != "sandbox.policy.loader":
            raise
        return None, "skipped (policy loader not installed)"
    catalog = load_policies(settings.policy_dir)  # PolicyError lists every problem
    return catalog, f"{len(catalog.datasets)} datasets from {settings.policy_dir}"


def _last_policy_digest(session: Any) -> str | None:
    row = session.scalars(
        select(AuditEntry).where(AuditEntry.kind == "policy.loaded").order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    return None if row is None else str(row.payload().get("digest"))


def _make_data_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


def run_init(settings: Settings, *, demo: bool = False, demo_password: str | None = None) -> InitReport:
    """Everything ``sandbox init`` does; returns what changed (used by ``sandbox demo`` too)."""
    _make_data_dir(settings.data_dir)
    url = settings.control_db_url
    engine = make_engine(url)
    try:
        before = current_revision(engine)
        migrate(engine)
        after = current_revision(engine)
        catalog, policies = _load_catalog(settings)
        report = InitReport(
            data_dir=settings.data_dir,
            control_db=make_url(url).render_as_string(hide_password=True),
            revision_before=before,
            revision=after,
            policies=policies,
        )
        with session_scope(engine, immediate=True) as session:
            if before != after:
                store.append(
                    session, "system.migrated", None, {"from_revision": before, "to_revision": after}
                )
                report.created.append(f"control DB migrated {before or 'empty'} -> {after}")
            if catalog is not None:
                digest = policy_digest(settings.policy_dir)
                if _last_policy_digest(session) != digest:
                    store.append(
                        session,
                        "policy.loaded",
                        None,
                        {"digest": digest, "datasets": sorted(catalog.datasets)},
                    )
                    report.created.append(f"policies loaded (digest {digest[:12]})")
            if demo:
                seeded = seed_demo(session, catalog, password=demo_password)
                report.created.extend(seeded.created)
                if seeded.password_from_env:
                    report.users_with_env_password = list(seeded.passwords)
                else:
                    report.passwords = seeded.passwords
        return report
    finally:
        engine.dispose()


def _print_report(report: InitReport) -> None:
    typer.echo(f"data dir    {report.data_dir} (mode 0700)")
    typer.echo(f"control DB  {report.control_db} at revision {report.revision}")
    typer.echo(f"policies    {report.policies}")
    if not report.created:
        typer.echo("nothing to do: already initialised")
        return
    for line in report.created:
        typer.echo(f"created     {line}")
    if report.passwords:
        typer.echo("demo passwords (shown only now; stored as argon2id hashes):")
        width = max(len(name) for name in report.passwords)
        for name, secret in report.passwords.items():
            typer.echo(f"  {name:<{width}}  {secret}")
    if report.users_with_env_password:
        users = ", ".join(report.users_with_env_password)
        typer.echo(f"demo passwords: the value of {DEMO_PASSWORD_ENV} for {users}")


def init(
    demo: Annotated[
        bool, typer.Option("--demo", help="Also seed the demo users, projects and grants.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Create the data dir, migrate the control DB, load policies; with --demo seed demo accounts.

    Safe to run again: nothing changes and no audit entry is written when all is in place.
    Demo passwords come from SANDBOX_DEMO_PASSWORD, else are generated and printed once.
    """
    try:
        report = run_init(get_settings(), demo=demo)
    except SandboxError as err:
        fail(err, as_json=as_json)
    if as_json:
        emit_json(report.to_dict())
    else:
        _print_report(report)


def register(app: typer.Typer) -> None:
    app.command("init")(init)


__all__ = ["InitReport", "policy_digest", "register", "run_init"]

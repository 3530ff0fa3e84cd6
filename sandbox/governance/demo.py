"""The demo enterprise (SR-16 pilot): an ``enterprise`` account whose USCC is a synthetic one.

Call :func:`seed_demo_enterprise` **after** the warehouse exists (``sandbox synth``): it picks
the first enterprise of ``enterprise_registry`` (by USCC order, a 企业 code ``91…`` that has tax
records when ``enterprise_tax`` is there), creates the account ``ent`` with that USCC, and has
it authorise the demo bank (``BANK_A``, bob's organisation) for its tax and social-insurance
records for 90 days, so ``sandbox lookup --as bob --dataset enterprise_tax --uscc <code>``
works at once. Idempotent: an existing ``ent`` account keeps its USCC and nothing is added.

``sandbox consent demo-enterprise`` runs it from the command line.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, MetaData, func, select

from sandbox.access import registry
from sandbox.access.demo import DEMO_PASSWORD_ENV
from sandbox.catalog.warehouse import dataset_table
from sandbox.control.db import session_scope
from sandbox.control.models import UserRole
from sandbox.errors import ConfigError
from sandbox.governance import consent
from sandbox.governance.common import GovContext

DEMO_ENTERPRISE = "ent"
DEMO_BANK = "BANK_A"
DEMO_CONSENT_DATASETS = ("enterprise_tax", "social_insurance")
DEMO_CONSENT_DAYS = 90


@dataclass
class EnterpriseSeed:
    username: str
    uscc: str | None
    created: list[str] = field(default_factory=list)
    password: str | None = None  # generated now (shown once); None when from the env or not created

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def demo_enterprise_uscc(catalog: Any, warehouse: Engine) -> str:
    """The USCC of the demo enterprise: the first ``91…`` registry code with tax records."""
    try:
        registry_table = dataset_table(catalog.dataset("enterprise_registry"), MetaData())
        codes = select(func.min(registry_table.c.uscc)).where(registry_table.c.uscc.startswith("91"))
        if "enterprise_tax" in catalog.datasets:
            tax = dataset_table(catalog.dataset("enterprise_tax"), MetaData())
            codes = codes.where(registry_table.c.uscc.in_(select(tax.c.uscc)))
        with warehouse.connect() as conn:
            code = conn.execute(codes).scalar()
    except Exception as err:  # missing tables, unreadable file
        raise ConfigError(
            "Cannot read enterprise_registry from the warehouse.",
            hint="Run `sandbox synth` first, then seed the demo enterprise.",
        ) from err
    if not code:
        raise ConfigError(
            "The warehouse has no enterprise in enterprise_registry.", hint="Run `sandbox synth` first."
        )
    return str(code)


def seed_demo_enterprise(
    ctx: GovContext, warehouse: Engine, *, password: str | None = None, with_consent: bool = True
) -> EnterpriseSeed:
    """Create the demo enterprise account (and its authorisation of the demo bank) if missing."""
    with session_scope(ctx.control_engine) as session:
        existing = registry.find_user(session, DEMO_ENTERPRISE)
        if existing is not None:
            return EnterpriseSeed(DEMO_ENTERPRISE, existing.uscc)
    uscc = demo_enterprise_uscc(ctx.catalog, warehouse)
    password = password if password is not None else os.environ.get(DEMO_PASSWORD_ENV) or None
    secret = password or secrets.token_urlsafe(12)
    seed = EnterpriseSeed(DEMO_ENTERPRISE, uscc, password=None if password else secret)
    with session_scope(ctx.control_engine, immediate=True) as session:
        registry.create_user(
            session,
            DEMO_ENTERPRISE,
            UserRole.ENTERPRISE,
            password=secret,
            organisation="Demo enterprise (synthetic, 合成)",
            uscc=uscc,
            actor=None,
        )
    seed.created.append(f"user {DEMO_ENTERPRISE} (enterprise, USCC {uscc})")
    if with_consent and all(d in ctx.catalog.datasets for d in DEMO_CONSENT_DATASETS):
        with session_scope(ctx.control_engine) as session:
            bank_known = registry.list_users(session, role=UserRole.BANK.value)
        if any(u.organisation == DEMO_BANK for u in bank_known):
            record = consent.grant(
                ctx,
                actor=DEMO_ENTERPRISE,
                bank=DEMO_BANK,
                datasets=list(DEMO_CONSENT_DATASETS),
                days=DEMO_CONSENT_DAYS,
            )
            seed.created.append(
                f"authorisation {record.id}: {DEMO_ENTERPRISE} → {DEMO_BANK} for "
                f"{', '.join(DEMO_CONSENT_DATASETS)} ({DEMO_CONSENT_DAYS} days)"
            )
    return seed


__all__ = [
    "DEMO_BANK",
    "DEMO_CONSENT_DATASETS",
    "DEMO_ENTERPRISE",
    "EnterpriseSeed",
    "demo_enterprise_uscc",
    "seed_demo_enterprise",
]

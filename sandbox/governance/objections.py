"""Objections and complaints of data subjects (权益保护, SR-30).

Any account files one (REQUIREMENTS §4, "File demand, correction, 举报": ✔ for every role; a
data subject "can file 权益保护 objections or corrections"): an enterprise about the records of
its own enterprise, anyone about data that concerns them. An objection names a dataset, its
grounds, and optionally what it is about (``ObjectionSubject``):

* ``lookup``: a bank's record look-up, by the seq of its audit entry (``consent.used`` or
  ``lookup.refused``);
* ``consent``: an enterprise authorisation of a bank, by id;
* ``release``: a DP release, by id.

The subject must exist and concern the dataset; an enterprise may name only look-ups and
authorisations about itself. The objection is routed to the dataset's first provider and may be
answered by a steward of any of its provider departments, or the operator
(``channels.respond``): ``acknowledged``, then an outcome ``upheld`` / ``partly_upheld`` /
``rejected`` with a reason. It lives in ``channel_requests`` (kind ``objection``) with an SLA clock
like the other channels; its title, grounds and response reach the audit chain only as SHA-256
digests (they can hold personal complaints). Only the filer, the providers' stewards, the
operator and supervisors see it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from sandbox.access.errors import InvalidRequest
from sandbox.control.models import AuditEntry, User, UserRole
from sandbox.governance.channels import ChannelRecord, file_request
from sandbox.governance.common import GovContext, choice
from sandbox.governance.models import ChannelKind, Consent, ObjectionSubject
from sandbox.ledger.models import Release

LOOKUP_KINDS = ("consent.used", "lookup.refused")


def _not_found(subject: ObjectionSubject, ref: str, dataset: str) -> InvalidRequest:
    return InvalidRequest(
        f"No {subject.value} {ref!r} about {dataset!r} that you may object to.",
        hint="Consents: the id in your consent log; look-ups: the audit entry's seq; releases: the id.",
    )


def _subject_check(subject: ObjectionSubject, ref: str, dataset: str) -> Callable[[Session, User], None]:
    def check(session: Session, filer: User) -> None:
        enterprise = filer.role == UserRole.ENTERPRISE
        if subject is ObjectionSubject.CONSENT:
            consent = session.get(Consent, int(ref)) if ref.isdigit() else None
            if (
                consent is None
                or dataset not in consent.dataset_ids()
                or (enterprise and consent.uscc != filer.uscc)
            ):
                raise _not_found(subject, ref, dataset)
        elif subject is ObjectionSubject.LOOKUP:
            entry = session.get(AuditEntry, int(ref)) if ref.isdigit() else None
            data = entry.payload() if entry is not None and entry.kind in LOOKUP_KINDS else None
            if (
                data is None
                or data.get("dataset") != dataset
                or (enterprise and data.get("enterprise") != filer.username)
            ):
                raise _not_found(subject, ref, dataset)
        else:
            release = session.get(Release, ref)
            if release is None or release.dataset != dataset:
                raise _not_found(subject, ref, dataset)

    return check


def file_objection(
    ctx: GovContext,
    *,
    user: str,
    dataset: str,
    grounds: str,
    title: str | None = None,
    subject: str | None = None,
    subject_ref: str | int | None = None,
    now: datetime | None = None,
) -> ChannelRecord:
    """SR-30: object to or complain about a dataset (and a look-up, consent or release in it)."""
    kind: ObjectionSubject | None = None
    ref: str | None = None
    check = None
    if subject is not None or subject_ref is not None:
        if subject is None or subject_ref is None or not str(subject_ref).strip():
            raise InvalidRequest(
                "An objection's subject needs both its kind and its id.",
                hint="Give subject (lookup, consent or release) and subject_ref, or neither.",
            )
        kind = choice(ObjectionSubject, subject, "objection subject")
        ref = str(subject_ref).strip()[:64]
        ctx.catalog.dataset(dataset)  # UnknownDataset before the subject is looked up
        check = _subject_check(kind, ref, dataset)
    return file_request(
        ctx,
        ChannelKind.OBJECTION,
        user=user,
        title=title or f"Objection about {dataset}",
        description=grounds,
        dataset=dataset,
        columns=None,
        scenario=None,
        department=None,
        now=now,
        subject_kind=kind.value if kind is not None else None,
        subject_ref=ref,
        check_subject=check,
        description_field="grounds",
    )


__all__ = ["LOOKUP_KINDS", "file_objection"]

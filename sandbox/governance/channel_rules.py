"""Rules of the channels (SR-07, SR-30), pure: moves, answers, SLA clocks, KPIs, who may what.

Three kinds share ``channel_requests``: demand requests (开放需求), data-correction reports
(数据纠错) and objections (权益保护). Moves per kind (a table of valid transitions)::

    demand      received ─► answered ─► opened / refused
                   └──────────────────► opened / refused
    correction  received ─► acknowledged ─► corrected / rejected
                   └───────────────────────► corrected / rejected
    objection   received ─► acknowledged ─► upheld / partly_upheld / rejected
                   └───────────────────────► upheld / partly_upheld / rejected

**SLA clocks.** A request is due ``sla_days[kind]`` days after it is filed (``channels.sla_days``
in platform.yaml; defaults :data:`DEFAULT_SLA_DAYS`). The clock stops the first time the request
reaches one of its kind's :data:`ANSWERS` (an acknowledgement does not stop it). A request is
``overdue`` while unanswered past its due date, ``answered_late`` when the answer came after it.

**Who may what** (REQUIREMENTS §4 in the matrix's terms). Filing is "File demand, correction,
举报" (✔ for every role, :data:`~sandbox.governance.permissions.Action.FILE_REPORT`). Answering is
the provider's for *own data* (a steward of one of the request's departments) or the operator's;
supervisors read and change nothing (SR-38). Reading: the filer, the request's departments'
stewards, the operator and supervisors; nobody else (objections can hold personal complaints).

Rules come in pairs: ``check_can_*`` raises with the reason, ``can_*`` answers.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sandbox.errors import AccessDenied, AccountInactive, InvalidTransition
from sandbox.governance.models import ChannelKind, CorrectionStatus, DemandStatus, ObjectionStatus
from sandbox.governance.permissions import ActorLike, Resource, Scope, scope_matches

DEFAULT_SLA_DAYS: dict[ChannelKind, int] = {
    ChannelKind.DEMAND: 15,
    ChannelKind.CORRECTION: 10,
    ChannelKind.OBJECTION: 15,
}
"""[D] Days to answer, per kind, when platform.yaml sets none (kept equal to the policy model's
defaults, ``sandbox.policy.models.ChannelSla``)."""

MOVES: dict[ChannelKind, dict[str, frozenset[str]]] = {
    ChannelKind.DEMAND: {
        DemandStatus.RECEIVED: frozenset({DemandStatus.ANSWERED, DemandStatus.OPENED, DemandStatus.REFUSED}),
        DemandStatus.ANSWERED: frozenset({DemandStatus.OPENED, DemandStatus.REFUSED}),
    },
    ChannelKind.CORRECTION: {
        CorrectionStatus.RECEIVED: frozenset(
            {CorrectionStatus.ACKNOWLEDGED, CorrectionStatus.CORRECTED, CorrectionStatus.REJECTED}
        ),
        CorrectionStatus.ACKNOWLEDGED: frozenset({CorrectionStatus.CORRECTED, CorrectionStatus.REJECTED}),
    },
    ChannelKind.OBJECTION: {
        ObjectionStatus.RECEIVED: frozenset(
            {
                ObjectionStatus.ACKNOWLEDGED,
                ObjectionStatus.UPHELD,
                ObjectionStatus.PARTLY_UPHELD,
                ObjectionStatus.REJECTED,
            }
        ),
        ObjectionStatus.ACKNOWLEDGED: frozenset(
            {ObjectionStatus.UPHELD, ObjectionStatus.PARTLY_UPHELD, ObjectionStatus.REJECTED}
        ),
    },
}

#: The statuses that answer a request of each kind (they stop its SLA clock).
ANSWERS: dict[ChannelKind, frozenset[str]] = {
    ChannelKind.DEMAND: frozenset({DemandStatus.ANSWERED, DemandStatus.OPENED, DemandStatus.REFUSED}),
    ChannelKind.CORRECTION: frozenset({CorrectionStatus.CORRECTED, CorrectionStatus.REJECTED}),
    ChannelKind.OBJECTION: frozenset(
        {ObjectionStatus.UPHELD, ObjectionStatus.PARTLY_UPHELD, ObjectionStatus.REJECTED}
    ),
}

#: Statuses whose response must give a reason (at least 3 characters).
NEEDS_REASON: frozenset[str] = frozenset(
    {DemandStatus.REFUSED, CorrectionStatus.REJECTED, *ANSWERS[ChannelKind.OBJECTION]}
)


class Clock(StrEnum):
    OPEN = "open"
    OVERDUE = "overdue"
    ANSWERED_ON_TIME = "answered_on_time"
    ANSWERED_LATE = "answered_late"


def sla_days(kind: ChannelKind | str, configured: Mapping[str, int] | None = None) -> int:
    """Days to answer a request of ``kind``: the policy's value, else the default."""
    kind = ChannelKind(kind)
    if configured and kind.value in configured:
        return int(configured[kind.value])
    return DEFAULT_SLA_DAYS[kind]


def due_at(filed_at: datetime, days: int) -> datetime:
    return filed_at + timedelta(days=days)


def clock(due: datetime, answered: datetime | None, now: datetime) -> Clock:
    """The state of a request's clock at ``now``."""
    if answered is not None:
        return Clock.ANSWERED_LATE if answered > due else Clock.ANSWERED_ON_TIME
    return Clock.OVERDUE if now > due else Clock.OPEN


def stops_clock(kind: ChannelKind | str, status: str) -> bool:
    return status in ANSWERS[ChannelKind(kind)]


def check_move(kind: ChannelKind | str, current: str, new: str) -> None:
    """Raise ``InvalidTransition`` unless a ``kind`` request may move from ``current`` to ``new``."""
    kind = ChannelKind(kind)
    allowed = MOVES[kind].get(current, frozenset())
    if new not in allowed:
        raise InvalidTransition(
            f"A {kind.value} request that is {current} cannot become {new!r}.",
            hint=f"Allowed now: {', '.join(sorted(allowed)) or 'nothing (closed)'}.",
        )


# --------------------------------------------------------------------------- who may what


@dataclass(frozen=True)
class RequestFacts:
    """What the rules read of a request."""

    id: int
    kind: str
    filed_by: str
    departments: frozenset[str]  # who answers; empty: the operator

    def label(self) -> str:
        return ", ".join(sorted(self.departments)) or "the operator"


def _active(actor: ActorLike) -> None:
    if actor.status != "approved":
        raise AccountInactive(f"Account {actor.username!r} is {actor.status}.")


def check_can_answer(actor: ActorLike, request: RequestFacts) -> None:
    """A steward of one of the request's departments (*own data*) or the operator answers."""
    _active(actor)
    if actor.role == "admin":
        return
    if actor.role == "steward" and scope_matches(
        actor, Scope.OWN_DATA, Resource.of(departments=request.departments)
    ):
        return
    hint = "A steward of that department (or the operator) answers."
    if actor.role == "auditor":
        hint = "Supervisors read; they change nothing (SR-38)."
    raise AccessDenied(
        f"Request {request.id} is routed to {request.label()}; {actor.username!r} cannot answer it.",
        hint=hint,
    )


def can_answer(actor: ActorLike, request: RequestFacts) -> bool:
    try:
        check_can_answer(actor, request)
    except AccessDenied:
        return False
    return True


def can_see(actor: ActorLike, request: RequestFacts) -> bool:
    """The filer, the request's departments' stewards, the operator and supervisors."""
    if actor.status != "approved":
        return False
    if actor.role in ("admin", "auditor") or request.filed_by == actor.username:
        return True
    return actor.role == "steward" and scope_matches(
        actor, Scope.OWN_DATA, Resource.of(departments=request.departments)
    )


# --------------------------------------------------------------------------- KPIs


@dataclass(frozen=True)
class ClockFacts:
    kind: str
    filed_at: datetime
    due_at: datetime
    answered_at: datetime | None


@dataclass(frozen=True)
class SlaSummary:
    """Per kind: how the clocks stand (SR-30, a KPI of the supervisor's view, SR-38)."""

    kind: str
    sla_days: int
    filed: int
    open: int  # unanswered, not yet due
    overdue: int  # unanswered, past due
    answered_on_time: int
    answered_late: int
    median_days_to_answer: float | None  # filing to answer, in days (2 decimals)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def summarise(
    requests: Iterable[ClockFacts], *, now: datetime, configured: Mapping[str, int] | None = None
) -> list[SlaSummary]:
    """One :class:`SlaSummary` per kind (every kind, in :class:`ChannelKind` order)."""
    by_kind: dict[str, list[ClockFacts]] = {k.value: [] for k in ChannelKind}
    for r in requests:
        by_kind[ChannelKind(r.kind).value].append(r)
    out: list[SlaSummary] = []
    for kind, rows in by_kind.items():
        states = [clock(r.due_at, r.answered_at, now) for r in rows]
        days = [
            (r.answered_at - r.filed_at).total_seconds() / 86_400 for r in rows if r.answered_at is not None
        ]
        out.append(
            SlaSummary(
                kind=kind,
                sla_days=sla_days(kind, configured),
                filed=len(rows),
                open=states.count(Clock.OPEN),
                overdue=states.count(Clock.OVERDUE),
                answered_on_time=states.count(Clock.ANSWERED_ON_TIME),
                answered_late=states.count(Clock.ANSWERED_LATE),
                median_days_to_answer=round(statistics.median(days), 2) if days else None,
            )
        )
    return out


__all__ = [
    "ANSWERS",
    "DEFAULT_SLA_DAYS",
    "MOVES",
    "NEEDS_REASON",
    "Clock",
    "ClockFacts",
    "RequestFacts",
    "SlaSummary",
    "can_answer",
    "can_see",
    "check_can_answer",
    "check_move",
    "clock",
    "due_at",
    "sla_days",
    "stops_clock",
    "summarise",
]

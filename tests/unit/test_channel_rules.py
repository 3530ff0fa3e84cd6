"""The channels' pure rules: moves, SLA clocks, the per-kind summary, who answers and sees (SR-30)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from sandbox.errors import AccessDenied, AccountInactive, InvalidTransition
from sandbox.governance import channel_rules as r
from sandbox.policy.models import ChannelSla

T0 = datetime(2025, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Actor:
    username: str
    role: str
    department: str | None = None
    uscc: str | None = None
    status: str = "approved"


REQ = r.RequestFacts(
    id=7, kind="objection", filed_by="ent", departments=frozenset({"tax_bureau", "housing_fund"})
)


def test_the_defaults_match_the_policy_model() -> None:
    assert {k: v for k, v in ChannelSla().model_dump().items()} == r.DEFAULT_SLA_DAYS
    assert r.sla_days("correction") == 10 and r.sla_days("correction", {"correction": 3}) == 3


def test_the_clock_at_and_around_the_due_date() -> None:
    due = r.due_at(T0, 10)
    assert due == T0 + 10 * DAY
    assert r.clock(due, None, due) is r.Clock.OPEN  # due today is not yet overdue
    assert r.clock(due, None, due + timedelta(seconds=1)) is r.Clock.OVERDUE
    assert r.clock(due, due, due + 5 * DAY) is r.Clock.ANSWERED_ON_TIME
    assert r.clock(due, due + timedelta(seconds=1), due) is r.Clock.ANSWERED_LATE


def test_moves_and_answers() -> None:
    r.check_move("objection", "received", "partly_upheld")
    r.check_move("objection", "acknowledged", "rejected")
    with pytest.raises(InvalidTransition, match="nothing"):
        r.check_move("objection", "upheld", "rejected")
    with pytest.raises(InvalidTransition):
        r.check_move("correction", "received", "upheld")
    assert r.stops_clock("objection", "upheld") and not r.stops_clock("objection", "acknowledged")
    assert r.stops_clock("demand", "answered") and not r.stops_clock("correction", "acknowledged")
    assert {"upheld", "partly_upheld", "rejected", "refused"} <= r.NEEDS_REASON


def test_who_answers_and_who_sees() -> None:
    carol = Actor("carol", "steward", "tax_bureau")
    hana = Actor("hana", "steward", "housing_fund")
    dave = Actor("dave", "steward", "health_commission")
    assert r.can_answer(carol, REQ) and r.can_answer(hana, REQ) and r.can_answer(Actor("op", "admin"), REQ)
    assert not r.can_answer(dave, REQ) and not r.can_answer(Actor("ent", "enterprise", uscc="91x"), REQ)
    with pytest.raises(AccessDenied, match="change nothing"):
        r.check_can_answer(Actor("erin", "auditor"), REQ)
    with pytest.raises(AccountInactive):
        r.check_can_answer(Actor("carol", "steward", "tax_bureau", status="suspended"), REQ)
    assert r.can_see(Actor("ent", "enterprise"), REQ) and r.can_see(Actor("erin", "auditor"), REQ)
    assert r.can_see(carol, REQ) and not r.can_see(dave, REQ)
    assert not r.can_see(Actor("alice", "researcher"), REQ) and not r.can_see(Actor("kai", "expert"), REQ)
    unrouted = r.RequestFacts(id=8, kind="demand", filed_by="bob", departments=frozenset())
    assert not r.can_answer(carol, unrouted) and r.can_answer(Actor("op", "admin"), unrouted)


def test_the_summary_counts_each_clock_and_the_median() -> None:
    facts = [
        r.ClockFacts("demand", T0, T0 + 15 * DAY, T0 + 1 * DAY),
        r.ClockFacts("demand", T0, T0 + 15 * DAY, T0 + 20 * DAY),
        r.ClockFacts("demand", T0, T0 + 15 * DAY, T0 + 4 * DAY),
        r.ClockFacts("demand", T0, T0 + 15 * DAY, None),
        r.ClockFacts("objection", T0, T0 + 15 * DAY, None),
    ]
    by_kind = {s.kind: s for s in r.summarise(facts, now=T0 + 16 * DAY)}
    assert list(by_kind) == ["demand", "correction", "objection"]
    d = by_kind["demand"]
    assert (d.filed, d.open, d.overdue, d.answered_on_time, d.answered_late) == (4, 0, 1, 2, 1)
    assert d.median_days_to_answer == 4.0
    assert by_kind["correction"].filed == 0 and by_kind["correction"].median_days_to_answer is None
    assert by_kind["objection"].overdue == 1
    early = {s.kind: s for s in r.summarise(facts, now=T0 + 2 * DAY, configured={"objection": 30})}
    assert (early["objection"].open, early["objection"].sla_days) == (1, 30)

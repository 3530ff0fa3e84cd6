"""Exact budget arithmetic (sandbox.ledger.values)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sandbox.errors import BudgetExceeded, EpsilonTooLarge, InvalidQuery
from sandbox.ledger import values as v
from sandbox.ledger.values import Account, BudgetStatus, ReleaseStatus, Scope
from sandbox.policy.models import Budgets


def _budgets(per_query: str = "1", user: str = "2", project: str = "3", global_: str = "5") -> Budgets:
    return Budgets.model_validate(
        {"per_query_max": per_query, "per_user": user, "per_project": project, "global": global_}
    )


def test_tenths_add_up_exactly_where_floats_do_not() -> None:
    assert sum([0.1] * 10) != 1.0
    assert v.exact_sum(["0.1"] * 10) == Decimal(1)
    assert v.fits("0.1", v.exact_sum(["0.1"] * 9), "1")
    assert not v.fits("0.1", v.exact_sum(["0.1"] * 10), "1")


def test_to_decimal_reads_strings_ints_fractions_and_float_reprs() -> None:
    assert v.to_decimal("0.50") == Decimal("0.5")
    assert str(v.to_decimal("10")) == "10"
    assert str(v.to_decimal("1E+1")) == "10"
    assert v.to_decimal(Fraction(1, 8)) == Decimal("0.125")
    assert v.to_decimal(0.1) == Decimal("0.1")
    assert v.to_decimal(3) == Decimal(3)


@pytest.mark.parametrize("bad", ["nan", "inf", "-1", "abc", ""])
def test_to_decimal_refuses_non_amounts(bad: str) -> None:
    with pytest.raises(ValueError):
        v.to_decimal(bad)


def test_fraction_without_finite_decimal_is_refused() -> None:
    with pytest.raises(ValueError):
        v.to_decimal(Fraction(1, 3))


@pytest.mark.parametrize("bad", ["0", "-0.5", "x", "NaN"])
def test_parse_epsilon_refuses_non_positive_or_garbage(bad: str) -> None:
    with pytest.raises(InvalidQuery):
        v.parse_epsilon(bad)


def test_subtract_floors_at_zero() -> None:
    assert v.subtract("1", "1.5") == 0
    assert v.subtract("1.5", "0.25") == Decimal("1.25")


def test_epsilon_above_per_query_max_is_too_large() -> None:
    budgets = _budgets(per_query="0.5")
    assert v.check_epsilon_allowed("0.5", budgets, dataset="d") == Decimal("0.5")
    with pytest.raises(EpsilonTooLarge) as info:
        v.check_epsilon_allowed("0.50001", budgets, dataset="d")
    assert info.value.code == "epsilon_too_large"
    assert "0.5" in info.value.message


def test_check_admits_names_the_tightest_scope() -> None:
    budgets = _budgets(user="2", project="3", global_="5")
    v.check_admits(
        "1", {Scope.USER: "1", Scope.PROJECT: "2", Scope.DATASET: "4"}, budgets, dataset="d", project="p"
    )
    with pytest.raises(BudgetExceeded) as info:
        v.check_admits("1", {Scope.USER: "1.5"}, budgets, dataset="d", project="p")
    assert info.value.details["scope"] == "user"
    assert info.value.details["remaining"] == "0.5"
    with pytest.raises(BudgetExceeded) as info:
        v.check_admits("1", {Scope.PROJECT: "2.5"}, budgets, dataset="d", project="p")
    assert info.value.details["scope"] == "project"
    with pytest.raises(BudgetExceeded) as info:
        v.check_admits("1", {Scope.DATASET: "4.01"}, budgets, dataset="d", project="p")
    assert info.value.details["scope"] == "dataset"
    assert not isinstance(info.value, EpsilonTooLarge)


def test_budget_status_from_spent_and_json_form() -> None:
    status = BudgetStatus.from_spent(_budgets(), {Scope.USER: "0.5", Scope.PROJECT: "1", Scope.DATASET: "6"})
    assert status == BudgetStatus(Decimal("1.5"), Decimal(2), Decimal(0))
    assert status.available == 0
    assert status.to_dict() == {"user_remaining": "1.5", "project_remaining": "2", "dataset_remaining": "0"}


def test_fingerprint_ignores_key_order() -> None:
    assert v.fingerprint({"a": 1, "b": [1, 2]}) == v.fingerprint({"b": [1, 2], "a": 1})
    assert v.fingerprint({"a": 1}) != v.fingerprint({"a": 2})


decimals = st.decimals(min_value=Decimal("0.001"), max_value=Decimal(3), places=3, allow_nan=False)


@given(st.lists(decimals, max_size=30))
def test_exact_sum_matches_fraction_sum(amounts: list[Decimal]) -> None:
    assert Fraction(v.exact_sum(amounts)) == sum((Fraction(a) for a in amounts), Fraction(0))


@given(decimals, decimals)
def test_subtract_is_never_negative(a: Decimal, b: Decimal) -> None:
    assert v.subtract(a, b) >= 0


class LedgerInterleavings(RuleBasedStateMachine):
    """Any interleaving of reserve / commit / fail keeps every scope within its cap."""

    def __init__(self) -> None:
        super().__init__()
        self.accounts = {
            Scope.USER: Account.open("1"),
            Scope.PROJECT: Account.open("1.5"),
            Scope.DATASET: Account.open("2"),
        }
        self.next_key = 0
        self.open_keys: list[str] = []
        self.charged: dict[str, Decimal] = {}

    @rule(charge=decimals)
    def reserve(self, charge: Decimal) -> None:
        key = f"r{self.next_key}"
        self.next_key += 1
        status = BudgetStatus(
            self.accounts[Scope.USER].remaining,
            self.accounts[Scope.PROJECT].remaining,
            self.accounts[Scope.DATASET].remaining,
        )
        admitted = v.fits(charge, 0, status.available)
        if admitted:
            for account in self.accounts.values():
                assert account.reserve(key, charge)
            self.open_keys.append(key)
            self.charged[key] = charge
        else:
            assert any(not v.fits(charge, a.spent, a.cap) for a in self.accounts.values())

    @precondition(lambda self: bool(self.open_keys))
    @rule(data=st.data(), commit=st.booleans())
    def finish(self, data: st.DataObject, commit: bool) -> None:
        key = data.draw(st.sampled_from(self.open_keys))
        self.open_keys.remove(key)
        for account in self.accounts.values():
            assert account.commit(key) if commit else account.fail(key)
            # a second finish of the same reservation is refused
            assert not account.commit(key)

    @invariant()
    def never_negative_and_charges_kept(self) -> None:
        expected = v.exact_sum(self.charged.values())
        for account in self.accounts.values():
            assert account.remaining >= 0
            assert Fraction(account.spent) <= Fraction(account.cap)
            assert account.spent == expected
            statuses = {status for _, status in account.charges.values()}
            assert statuses <= set(ReleaseStatus)


LedgerInterleavings.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_ledger_interleavings = LedgerInterleavings.TestCase

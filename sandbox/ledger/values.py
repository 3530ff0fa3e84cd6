"""Exact privacy-budget arithmetic (pure: no I/O, no floats).

Budgets are epsilons (or rho for zCDP datasets) held per user, per project and
per dataset (global cap), each against one dataset. Every amount is a
:class:`~decimal.Decimal` parsed from its string form; sums go through
:class:`~fractions.Fraction`, so adding and comparing is exact whatever the
number of digits (STYLE.md: "never float sums").

What counts as spent: every charge that has been *reserved*, whether the
release was later committed, failed, or never finished (a crashed process;
swept later as *abandoned*). A failure after reserving keeps the charge: the
warehouse may already have seen the query, so the privacy loss may already
have happened.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from fractions import Fraction
from typing import Any

from sandbox.errors import BudgetExceeded, EpsilonTooLarge, InvalidQuery
from sandbox.policy.models import Budgets

ZERO = Decimal(0)

AmountLike = Decimal | Fraction | int | str


class Scope(StrEnum):
    """The three budgets a charge is drawn from, in the order they are locked."""

    DATASET = "dataset"
    PROJECT = "project"
    USER = "user"


class ReleaseStatus(StrEnum):
    """``reserved`` (in flight) → ``committed`` | ``failed`` | ``abandoned`` (terminal).

    ``abandoned``: still ``reserved`` long after any query could have finished (its
    process died between reserve and commit); set by ``sandbox.ledger.store.sweep_reservations``.
    """

    RESERVED = "reserved"
    COMMITTED = "committed"
    FAILED = "failed"
    ABANDONED = "abandoned"


# Every status still holds its charge (see module docstring).
CHARGED_STATUSES = frozenset(
    {ReleaseStatus.RESERVED, ReleaseStatus.COMMITTED, ReleaseStatus.FAILED, ReleaseStatus.ABANDONED}
)


def to_decimal(value: AmountLike | float) -> Decimal:
    """Parse an amount exactly: strings, ints and Decimals as they are.

    A float goes through ``str`` (its shortest repr), never through its binary
    value; a Fraction must have a finite decimal expansion. NaN, infinities and
    negative amounts are refused.
    """
    if isinstance(value, bool):
        raise TypeError("a budget amount cannot be a bool")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, Fraction):
        result = _fraction_to_decimal(value)
    elif isinstance(value, float):
        result = _parse(repr(value))
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        result = _parse(value)
    else:
        raise TypeError(f"cannot read a budget amount from {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"budget amount must be finite, got {value!r}")
    if result < 0:
        raise ValueError(f"budget amount must not be negative, got {value!r}")
    return _normalise(result)


def parse_epsilon(text: str | Decimal | int | float) -> Decimal:
    """Read a user-supplied epsilon; anything not a positive finite number is an InvalidQuery."""
    try:
        value = to_decimal(text)
    except (TypeError, ValueError) as err:
        raise InvalidQuery(
            f"epsilon must be a positive number, got {text!r}.",
            hint="Pass epsilon as a decimal string, e.g. --epsilon 0.5.",
        ) from err
    if value <= 0:
        raise InvalidQuery(
            f"epsilon must be greater than zero, got {text!r}.",
            hint="Pass epsilon as a decimal string, e.g. --epsilon 0.5.",
        )
    return value


def _parse(text: str) -> Decimal:
    try:
        return Decimal(text.strip())
    except InvalidOperation as err:
        raise ValueError(f"not a decimal number: {text!r}") from err


def _fraction_to_decimal(value: Fraction) -> Decimal:
    den = value.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den != 1:
        raise ValueError(f"{value} has no finite decimal expansion")
    digits = max(twos, fives)
    scaled = value * 10**digits  # an integer now
    assert scaled.denominator == 1
    return Decimal(scaled.numerator).scaleb(-digits)


def _normalise(value: Decimal) -> Decimal:
    """Drop trailing zeros but never use an exponent for integers (``Decimal('1E+1')``)."""
    if value == 0:
        return ZERO
    norm = value.normalize()
    sign, digits, exponent = norm.as_tuple()
    if isinstance(exponent, int) and exponent > 0:
        return Decimal((sign, (*digits, *([0] * exponent)), 0))
    return norm


def add(*amounts: AmountLike) -> Decimal:
    """Exact sum of amounts."""
    return exact_sum(amounts)


def exact_sum(amounts: Iterable[AmountLike]) -> Decimal:
    total = Fraction(0)
    for amount in amounts:
        total += Fraction(to_decimal(amount))
    return _fraction_to_decimal(total)


def subtract(minuend: AmountLike, subtrahend: AmountLike) -> Decimal:
    """``minuend - subtrahend`` floored at zero (a remaining budget is never negative)."""
    diff = Fraction(to_decimal(minuend)) - Fraction(to_decimal(subtrahend))
    if diff <= 0:
        return ZERO
    return _fraction_to_decimal(diff)


def fits(charge: AmountLike, spent: AmountLike, cap: AmountLike) -> bool:
    """Whether ``spent + charge <= cap`` exactly."""
    return Fraction(to_decimal(spent)) + Fraction(to_decimal(charge)) <= Fraction(to_decimal(cap))


def format_amount(value: AmountLike) -> str:
    """The canonical string form stored in the ledger and shown to users."""
    return str(to_decimal(value))


def caps_of(budgets: Budgets) -> dict[Scope, Decimal]:
    """The three caps of a dataset's policy, by scope."""
    return {
        Scope.DATASET: to_decimal(budgets.global_cap),
        Scope.PROJECT: to_decimal(budgets.per_project),
        Scope.USER: to_decimal(budgets.per_user),
    }


@dataclass(frozen=True)
class BudgetStatus:
    """What is left of a dataset's three budgets for one user in one project."""

    user_remaining: Decimal
    project_remaining: Decimal
    dataset_remaining: Decimal

    @classmethod
    def from_spent(cls, budgets: Budgets, spent: Mapping[Scope, AmountLike]) -> BudgetStatus:
        caps = caps_of(budgets)
        return cls(
            user_remaining=subtract(caps[Scope.USER], spent.get(Scope.USER, ZERO)),
            project_remaining=subtract(caps[Scope.PROJECT], spent.get(Scope.PROJECT, ZERO)),
            dataset_remaining=subtract(caps[Scope.DATASET], spent.get(Scope.DATASET, ZERO)),
        )

    @property
    def available(self) -> Decimal:
        """The most one more charge may be: the smallest of the three."""
        return min(self.user_remaining, self.project_remaining, self.dataset_remaining)

    def remaining(self, scope: Scope) -> Decimal:
        return {
            Scope.USER: self.user_remaining,
            Scope.PROJECT: self.project_remaining,
            Scope.DATASET: self.dataset_remaining,
        }[scope]

    def to_dict(self) -> dict[str, str]:
        """JSON form: exact decimal strings (never floats)."""
        return {
            "user_remaining": format_amount(self.user_remaining),
            "project_remaining": format_amount(self.project_remaining),
            "dataset_remaining": format_amount(self.dataset_remaining),
        }


def check_epsilon_allowed(epsilon: AmountLike, budgets: Budgets, *, dataset: str) -> Decimal:
    """Refuse a per-query epsilon above the policy's ``per_query_max`` (EpsilonTooLarge)."""
    value = to_decimal(epsilon)
    limit = to_decimal(budgets.per_query_max)
    if Fraction(value) > Fraction(limit):
        raise EpsilonTooLarge(
            f"epsilon={format_amount(value)} is above the per-query maximum "
            f"{format_amount(limit)} of dataset {dataset!r}.",
            dataset=dataset,
            per_query_max=format_amount(limit),
        )
    return value


_SCOPE_WORDS = {
    Scope.USER: "your own budget",
    Scope.PROJECT: "the project's budget",
    Scope.DATASET: "the dataset's global budget",
}


def check_admits(
    charge: AmountLike,
    spent: Mapping[Scope, AmountLike],
    budgets: Budgets,
    *,
    dataset: str,
    project: str,
) -> None:
    """Raise BudgetExceeded naming the tightest scope unless all three budgets admit ``charge``.

    The message depends only on the policy and the caller's own ledger.
    """
    caps = caps_of(budgets)
    for scope in (Scope.USER, Scope.PROJECT, Scope.DATASET):
        used = spent.get(scope, ZERO)
        if not fits(charge, used, caps[scope]):
            left = subtract(caps[scope], used)
            raise BudgetExceeded(
                f"This query needs epsilon={format_amount(charge)} on {dataset!r}; "
                f"{_SCOPE_WORDS[scope]} in project {project!r} has {format_amount(left)} left.",
                dataset=dataset,
                scope=scope.value,
                needed=format_amount(charge),
                remaining=format_amount(left),
            )


def fingerprint(normalised: Any) -> str:
    """SHA-256 of the canonical JSON of a normalised query spec (sorted keys, no spaces)."""
    body = json.dumps(normalised, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


@dataclass
class Account:
    """In-memory model of one scope's ledger: reference semantics for the store (and its tests).

    ``reserve`` refuses what the cap does not admit; ``commit`` and ``fail``
    only change the status: the charge stays spent either way.
    """

    cap: Decimal
    charges: dict[str, tuple[Decimal, ReleaseStatus]]

    @classmethod
    def open(cls, cap: AmountLike) -> Account:
        return cls(cap=to_decimal(cap), charges={})

    @property
    def spent(self) -> Decimal:
        return exact_sum(amount for amount, status in self.charges.values() if status in CHARGED_STATUSES)

    @property
    def remaining(self) -> Decimal:
        return subtract(self.cap, self.spent)

    def reserve(self, key: str, charge: AmountLike) -> bool:
        amount = to_decimal(charge)
        if key in self.charges or not fits(amount, self.spent, self.cap):
            return False
        self.charges[key] = (amount, ReleaseStatus.RESERVED)
        return True

    def _finish(self, key: str, status: ReleaseStatus) -> bool:
        current = self.charges.get(key)
        if current is None or current[1] is not ReleaseStatus.RESERVED:
            return False
        self.charges[key] = (current[0], status)
        return True

    def commit(self, key: str) -> bool:
        return self._finish(key, ReleaseStatus.COMMITTED)

    def fail(self, key: str) -> bool:
        return self._finish(key, ReleaseStatus.FAILED)

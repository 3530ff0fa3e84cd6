"""GB 32100 unified social credit codes (REQUIREMENTS §7.2, vectors of §7.6).

The check below is written again here, independently of ``sandbox.synth.uscc``, straight from
the standard's description: W_i = 3^(i-1) mod 31, C18 = 31 - (sum mod 31), 31 -> 0.
All codes in this file are synthetic (SR-40, 合成/SYNTHETIC).
"""

from __future__ import annotations

import numpy as np
import pytest

from sandbox.synth import uscc

_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]


def independent_is_valid(code: str) -> bool:
    if len(code) != 18 or any(ch not in _ALPHABET for ch in code):
        return False
    if not code[2:8].isdigit():
        return False
    total = sum(_ALPHABET.index(ch) * w for ch, w in zip(code[:17], _WEIGHTS, strict=True))
    value = 31 - total % 31
    return _ALPHABET[0 if value == 31 else value] == code[17]


def independent_org_check(body8: str) -> str:
    weights = [3, 7, 9, 10, 5, 8, 4, 2]
    values = [int(ch) if ch.isdigit() else ord(ch) - ord("A") + 10 for ch in body8]
    c = 11 - sum(v * w for v, w in zip(values, weights, strict=True)) % 11
    return "X" if c == 10 else "0" if c == 11 else str(c)


VECTORS = [
    ("91350100M000100Y43", True),
    ("91350100M000100Y4Z", False),
    ("91512081MA62K0260E", True),
    ("91310115MA1K3AB001", True),
]


@pytest.mark.parametrize(("code", "expected"), VECTORS)
def test_requirement_vectors(code: str, expected: bool) -> None:
    assert uscc.is_valid(code) is expected
    assert independent_is_valid(code) is expected


def test_weights_are_powers_of_three_mod_31() -> None:
    assert list(uscc.WEIGHTS) == _WEIGHTS


def test_worked_example_check_character() -> None:
    assert uscc.check_character("91350100M000100Y4") == "3"


@pytest.mark.parametrize(("body", "check"), [("M000100Y", "4"), ("MA62K026", "0"), ("MA1K3AB0", "0")])
def test_organisation_code_check_matches_the_worked_examples(body: str, check: str) -> None:
    assert uscc.org_check_character(body) == check == independent_org_check(body)


def test_make_uscc_builds_the_pudong_fixture() -> None:
    assert uscc.make_uscc("91", "310115", "MA1K3AB0") == "91310115MA1K3AB001"


@pytest.mark.parametrize(
    "bad", ["", "91350100M000100Y", "91350100M000100Y4I", "9135O100M000100Y43", "x" * 18]
)
def test_malformed_codes_are_invalid(bad: str) -> None:
    assert not uscc.is_valid(bad)


def test_check_character_rejects_letters_outside_the_alphabet() -> None:
    with pytest.raises(ValueError, match="alphabet"):
        uscc.check_character("91350100M000100YI")
    with pytest.raises(ValueError, match="17"):
        uscc.check_character("9135")


def test_make_codes_vectorised_matches_independent_checks() -> None:
    rng = np.random.default_rng(0)
    n = 5_000
    prefix = rng.choice(np.array(["91", "92", "93", "12", "52"]), n)
    division = rng.choice(np.array(["310101", "310115", "310151"]), n)
    numbers = rng.choice(31**6, size=n, replace=False)
    codes = uscc.make_codes(prefix, division, numbers)
    assert len(set(codes)) == n
    for code, p, d in zip(codes, prefix, division, strict=True):
        assert independent_is_valid(code), code
        assert code[:2] == p and code[2:8] == d and code[8:10] == "MA"
        assert independent_org_check(code[8:16]) == code[16]
        assert uscc.PATTERN.match(code)


def test_make_codes_extremes_and_range_check() -> None:
    codes = uscc.make_codes("91", np.array(["310115", "310115"]), np.array([0, 31**6 - 1]))
    assert all(independent_is_valid(c) for c in codes)
    with pytest.raises(ValueError):
        uscc.make_codes("91", np.array(["310115"]), np.array([31**6]))
    with pytest.raises(ValueError):
        uscc.make_codes("9I", np.array(["310115"]), np.array([1]))

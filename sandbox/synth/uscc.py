"""Unified social credit codes (统一社会信用代码, GB 32100-2015), REQUIREMENTS §7.2.

A code has 18 characters from a 31-symbol alphabet (no I, O, Z, S, V):

* position 1: registration authority (``9`` 工商 / market regulation, ``1`` 机构编制, ``5`` 民政);
* position 2: organisation category (``91`` enterprise, ``92`` 个体工商户, ``93`` co-operative,
  ``12`` 事业单位, ``52`` 民办非企业单位);
* positions 3-8: the registering authority's GB/T 2260 division code;
* positions 9-17: the organisation code (GB 11714, its own check character in position 17);
* position 18: the check character, ``31 - (sum(c_i * 3^(i-1) mod 31) mod 31)`` with 31 -> ``0``.

Scalar helpers validate and build single codes; ``make_codes`` builds many at once with numpy
(the synthetic generators need hundreds of thousands). Every code this module makes is synthetic
(SR-40): the organisation codes come from a seeded random draw, never from a registry.
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
VALUES: dict[str, int] = {ch: i for i, ch in enumerate(ALPHABET)}
WEIGHTS: tuple[int, ...] = tuple(pow(3, i, 31) for i in range(17))
PATTERN = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")

# GB 11714 organisation code (positions 9-17): digits 0-9, letters A=10 .. Z=35.
ORG_WEIGHTS: tuple[int, ...] = (3, 7, 9, 10, 5, 8, 4, 2)

# Code points as uint32 so that (n, 18) matrices view directly as numpy "U18" strings.
_ALPHABET_CODES = np.array([ord(ch) for ch in ALPHABET], dtype=np.uint32)
_WEIGHTS_ARRAY = np.array(WEIGHTS, dtype=np.int64)
_ORG_WEIGHTS_ARRAY = np.array(ORG_WEIGHTS, dtype=np.int64)
# GB 32100 alphabet value -> GB 11714 value (the letters skip I, O, S, V, Z in the former only).
_ORG_VALUE_OF = np.array([int(ch, 36) for ch in ALPHABET], dtype=np.int64)


def check_character(body: str) -> str:
    """The GB 32100 check character (position 18) of a 17-character body.

    >>> check_character("91350100M000100Y4")
    '3'
    """
    if len(body) != 17:
        raise ValueError(f"a USCC body has 17 characters, got {len(body)}")
    try:
        total = sum(VALUES[ch] * w for ch, w in zip(body.upper(), WEIGHTS, strict=True))
    except KeyError as err:
        raise ValueError(f"character {err.args[0]!r} is not in the GB 32100 alphabet") from err
    return ALPHABET[(31 - total % 31) % 31]


def is_valid(code: str) -> bool:
    """Whether ``code`` is an 18-character GB 32100 code with a correct check character.

    >>> is_valid("91350100M000100Y43"), is_valid("91350100M000100Y4Z")
    (True, False)
    """
    code = code.strip().upper()
    if not PATTERN.match(code):
        return False
    return check_character(code[:17]) == code[17]


def org_check_character(body: str) -> str:
    """The GB 11714 check character of an 8-character organisation-code body (position 17)."""
    if len(body) != 8:
        raise ValueError(f"an organisation-code body has 8 characters, got {len(body)}")
    total = sum(int(ch, 36) * w for ch, w in zip(body.upper(), ORG_WEIGHTS, strict=True))
    value = 11 - total % 11
    return {10: "X", 11: "0"}.get(value, str(value))


def make_uscc(authority_category: str, division: str, org_body: str) -> str:
    """Build one valid code from ``91``-style prefix, 6-digit division and 8-character org body."""
    if len(authority_category) != 2 or len(division) != 6 or not division.isdigit():
        raise ValueError("expected a 2-character prefix and a 6-digit division code")
    body = authority_category + division + org_body + org_check_character(org_body)
    return body + check_character(body)


def make_codes(
    prefix: npt.NDArray[np.str_] | str,
    division: npt.NDArray[np.str_],
    org_numbers: npt.NDArray[np.int64],
    org_lead: str = "MA",
) -> npt.NDArray[np.str_]:
    """Build many valid codes at once.

    ``prefix`` is the 2-character authority + category (one per row, or one for all);
    ``division`` the 6-digit division codes; ``org_numbers`` distinct integers in
    ``[0, 31**6)`` that become positions 11-16 (base 31) after the fixed ``org_lead``
    (positions 9-10). Position 17 is the GB 11714 check character of positions 9-16 and
    position 18 the GB 32100 check character. Distinct ``org_numbers`` give distinct codes.
    """
    n = len(division)
    if len(org_lead) != 2:
        raise ValueError("org_lead must have 2 characters")
    if n and (org_numbers.min() < 0 or org_numbers.max() >= 31**6):
        raise ValueError("org_numbers must lie in [0, 31**6)")
    lookup = np.full(128, -1, dtype=np.int64)
    lookup[_ALPHABET_CODES] = np.arange(31)
    values = np.empty((n, 17), dtype=np.int64)
    prefixes = np.broadcast_to(np.asarray(prefix, dtype="U2"), (n,))
    values[:, 0:2] = lookup[np.minimum(_code_points(prefixes, 2), 127)]
    division_points = _code_points(np.asarray(division, dtype="U6"), 6).astype(np.int64)
    if ((division_points < ord("0")) | (division_points > ord("9"))).any():
        raise ValueError("division codes must be 6 digits")
    values[:, 2:8] = division_points - ord("0")
    values[:, 8:10] = [VALUES[ch] for ch in org_lead]
    if (values[:, :10] < 0).any():
        raise ValueError("a prefix holds a character outside the GB 32100 alphabet")
    rest = np.asarray(org_numbers, dtype=np.uint32).copy()
    for pos in range(15, 9, -1):
        values[:, pos] = rest % 31
        rest //= 31
    # GB 11714 check over positions 9-16 (digits 0-9, letters A=10 .. Z=35).
    org_values = np.where(values[:, 8:16] <= 9, values[:, 8:16], _ORG_VALUE_OF[values[:, 8:16]])
    org_check = 11 - (org_values @ _ORG_WEIGHTS_ARRAY) % 11
    values[:, 16] = np.where(org_check == 10, VALUES["X"], np.where(org_check == 11, 0, org_check))
    chars = np.empty((n, 18), dtype=np.uint32)
    chars[:, :17] = _ALPHABET_CODES[values]
    # GB 32100 check over positions 1-17.
    chars[:, 17] = _ALPHABET_CODES[(31 - (values @ _WEIGHTS_ARRAY) % 31) % 31]
    return np.ascontiguousarray(chars).view("U18").ravel()


def _code_points(values: npt.NDArray[np.str_], width: int) -> npt.NDArray[np.uint32]:
    fixed = np.ascontiguousarray(values, dtype=f"U{width}")
    points = fixed.view(np.uint32).reshape(-1, width)
    if (points == 0).any():
        raise ValueError(f"expected values of exactly {width} characters")
    return points

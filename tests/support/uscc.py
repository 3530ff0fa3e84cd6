"""An independent USCC check for tests of generated codes (not sandbox's own code)."""

from __future__ import annotations

_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def independent_is_valid(code: str) -> bool:
    """GB 32100 check written from the standard (independent of sandbox.synth.uscc)."""
    if len(code) != 18 or any(ch not in _ALPHABET for ch in code) or not code[2:8].isdigit():
        return False
    total = sum(_ALPHABET.index(ch) * pow(3, i, 31) for i, ch in enumerate(code[:17]))
    return _ALPHABET[(31 - total % 31) % 31] == code[17]

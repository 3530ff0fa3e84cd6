"""Identifier detectors for the export gate (REQUIREMENTS §7, SR-25.1). Pure, no I/O.

Text is first normalised (§7): full-width characters become ASCII, ASCII
letters are upper-cased (so a lower-case ``x`` check character counts), and
the separators space, ``-`` and ``.`` may appear inside a candidate. A
candidate must have non-alphanumeric (ASCII) boundaries on both sides, so a
number inside a longer digit run never matches. Chinese characters count as
boundaries: ``身份证号11010519491231002X`` is found.

Candidates are built from *chains* of ASCII alphanumeric groups joined by one
separator. A candidate is a run of whole groups of a chain; where it spans
several groups, the grouping must be one people write for that kind of number
(``138 0013 8000``, ``6217 0000 0000 0000 004``, ``110105 19491231 002X``), so
a list of short numbers does not glue into a false identifier. A ``.`` between
two digit groups is a decimal point: a candidate never starts or ends at one
(``0.13800138000`` is not a phone number), except a trailing all-zero fraction
(``13800138000.0``, a phone number stored as a float).

Severities and their verdicts per tier are in :func:`verdict_for`; findings
never carry the full identifier, only :func:`mask`'s form of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from sandbox.export.results import Verdict
from sandbox.policy.models import Tier


class Severity(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class IdentifierKind(StrEnum):
    RESIDENT_ID = "resident_id"
    USCC = "uscc"
    MOBILE = "mobile"
    LANDLINE = "landline"
    BANK_CARD = "bank_card"
    PLATE = "plate"
    EMAIL = "email"
    PASSPORT = "passport"
    COLUMN_NAME = "column_name"


_LABELS = {
    IdentifierKind.RESIDENT_ID: "resident ID number",
    IdentifierKind.USCC: "unified social credit code",
    IdentifierKind.MOBILE: "mobile number",
    IdentifierKind.LANDLINE: "Shanghai landline number",
    IdentifierKind.BANK_CARD: "bank card number",
    IdentifierKind.PLATE: "licence plate",
    IdentifierKind.EMAIL: "e-mail address",
    IdentifierKind.PASSPORT: "passport / travel permit number",
    IdentifierKind.COLUMN_NAME: "identifier-like column name",
}


@dataclass(frozen=True)
class Finding:
    """One suspected identifier. ``masked`` never shows the whole value."""

    kind: IdentifierKind
    severity: Severity
    masked: str
    detail: str
    location: str = ""
    start: int = -1
    end: int = -1
    pi_adjacent: bool = False

    @property
    def reason(self) -> str:
        where = f" at {self.location}" if self.location else ""
        return f"{_LABELS[self.kind]} {self.masked}{where} ({self.detail}; {self.severity.value})"


# ---------------------------------------------------------------- normalisation

_FULLWIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
_FULLWIDTH[0x3000] = 0x20  # ideographic space
_UPPER = {code: code - 32 for code in range(ord("a"), ord("z") + 1)}
_TABLE = {**_FULLWIDTH}
for _src, _dst in list(_FULLWIDTH.items()):
    if ord("a") <= _dst <= ord("z"):
        _TABLE[_src] = _dst - 32
_TABLE.update(_UPPER)


def normalise(text: str) -> str:
    """Full-width → ASCII and ASCII letters upper-cased, one character for one (positions are kept)."""
    return text.translate(_TABLE)


def mask(value: str) -> str:
    """Keep the first three and last two characters of an identifier, star the rest."""
    compact = re.sub(r"[ \-.]", "", value)
    if len(compact) <= 6:
        return compact[:1] + "*" * (len(compact) - 1)
    return compact[:3] + "*" * (len(compact) - 5) + compact[-2:]


def _mask_email(value: str) -> str:
    local, _, domain = value.partition("@")
    return f"{local[:1]}***@{domain.lower()}"


# ---------------------------------------------------------------- resident ID (GB 11643, §7.1)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_MIN_BIRTH_YEAR = 1800
_MAX_BIRTH_YEAR = 2099


def resident_id_check_char(body: str) -> str:
    """ISO 7064 MOD 11-2 check character for the 17-digit body."""
    if len(body) != 17 or not body.isdigit():
        raise ValueError("a resident ID body is 17 digits")
    total = sum(int(ch) * w for ch, w in zip(body, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def _valid_date(yyyy: int, mm: int, dd: int) -> bool:
    if not _MIN_BIRTH_YEAR <= yyyy <= _MAX_BIRTH_YEAR:
        return False
    try:
        date(yyyy, mm, dd)
    except ValueError:
        return False
    return True


def resident_id_date_valid(value: str) -> bool:
    """Positions 7–14 (18-digit) or 7–12 (15-digit, 19YY) form a real calendar date."""
    if len(value) == 18:
        return _valid_date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    if len(value) == 15:
        return _valid_date(1900 + int(value[6:8]), int(value[8:10]), int(value[10:12]))
    return False


_ID18 = re.compile(r"\d{17}[\dX]")


def is_valid_resident_id(value: str) -> bool:
    """18 characters, a valid birth date and a valid check character (address code not checked)."""
    v = normalise(value)
    return bool(_ID18.fullmatch(v)) and resident_id_date_valid(v) and resident_id_check_char(v[:17]) == v[17]


def legacy_to_18(value: str) -> str:
    """Convert a 15-digit (GB 11643-1989) number: insert ``19`` before YYMMDD, append the check."""
    v = normalise(value)
    if len(v) != 15 or not v.isdigit():
        raise ValueError("a legacy resident ID is 15 digits")
    body = v[:6] + "19" + v[6:]
    return body + resident_id_check_char(body)


# ---------------------------------------------------------------- USCC (GB 32100, §7.2)

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
_USCC_RE = re.compile(r"[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}")
_USCC_AUTHORITIES = frozenset("123456789ANY")
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def uscc_check_char(body: str) -> str:
    """GB 32100 check character for the 17-character body."""
    if len(body) != 17 or any(ch not in USCC_ALPHABET for ch in body):
        raise ValueError("a USCC body is 17 characters of the 31-symbol alphabet")
    total = sum(USCC_ALPHABET.index(ch) * w for ch, w in zip(body, _USCC_WEIGHTS, strict=True))
    check = 31 - total % 31
    return USCC_ALPHABET[0 if check == 31 else check]


def is_valid_uscc(value: str) -> bool:
    """Pattern, registration authority (position 1) and check character."""
    v = normalise(value)
    return bool(_USCC_RE.fullmatch(v)) and v[0] in _USCC_AUTHORITIES and uscc_check_char(v[:17]) == v[17]


def org_code_check_char(body: str) -> str:
    """GB 11714 organisation-code check character for an 8-character body (digits, A=10 … Z=35)."""
    if len(body) != 8 or not all(ch.isdigit() or "A" <= ch <= "Z" for ch in body):
        raise ValueError("an organisation-code body is 8 characters 0-9 / A-Z")
    total = sum(int(ch, 36) * w for ch, w in zip(body, _ORG_WEIGHTS, strict=True))
    check = 11 - total % 11
    return "X" if check == 10 else "0" if check == 11 else str(check)


def uscc_org_code_valid(value: str) -> bool:
    """Secondary check on positions 9–17; a confidence booster only, never a reason to reject."""
    v = normalise(value)
    if len(v) != 18:
        return False
    try:
        return org_code_check_char(v[8:16]) == v[16]
    except ValueError:
        return False


# ---------------------------------------------------------------- Luhn (§7.4)


def luhn_valid(digits: str) -> bool:
    """ISO/IEC 7812-1: double every second digit from the right; valid iff the sum ≡ 0 (mod 10)."""
    if not digits.isdigit():
        return False
    total = 0
    for pos, ch in enumerate(reversed(digits), start=1):
        d = int(ch)
        if pos % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def luhn_check_digit(payload: str) -> str:
    """The digit that makes ``payload + digit`` Luhn-valid."""
    partial = sum(
        (2 * int(ch) - 9 if 2 * int(ch) > 9 else 2 * int(ch)) if pos % 2 == 0 else int(ch)
        for pos, ch in enumerate(reversed(payload + "0"), start=1)
    )
    return str((10 - partial % 10) % 10)


# ---------------------------------------------------------------- candidate chains

_CHAIN = re.compile(r"[0-9A-Z]+(?:[ \-.][0-9A-Z]+)*")
_GROUP = re.compile(r"[0-9A-Z]+")
_MAX_CANDIDATE = 19
_MOBILE_RE = re.compile(r"1[3-9]\d{9}")
_LANDLINE_RE = re.compile(r"0?21\d{8}")
_PASSPORT_RE = re.compile(r"[EG]\d{8}|E[A-HJ-NP-Z]\d{7}")
_PERMIT_RE = re.compile(r"[CH]\d{8}")

_MOBILE_CONTEXT = re.compile(r"手机|电话|联系|(?<![A-Z])(?:TEL|MOBILE|PHONE|CELL|CELLPHONE|CONTACT)(?![A-Z])")
_PASSPORT_CONTEXT = re.compile(r"护照|通行证|证件|(?<![A-Z])PASSPORT(?![A-Z])")

_ID_GROUPINGS = {(18,), (6, 8, 4)}
_LEGACY_GROUPINGS = {(15,), (6, 6, 3)}
_PHONE_GROUPINGS = {(11,), (3, 4, 4), (3, 8), (7, 4)}
_LANDLINE_GROUPINGS = {(10,), (11,), (2, 8), (3, 8), (2, 4, 4), (3, 4, 4)}


@dataclass(frozen=True)
class _Candidate:
    text: str  # separators removed
    lengths: tuple[int, ...]
    start: int
    end: int

    def finding(
        self, kind: IdentifierKind, severity: Severity, value: str, detail: str, *, pi_adjacent: bool = False
    ) -> Finding:
        """A finding over this candidate's span, showing ``value`` masked."""
        return Finding(
            kind, severity, mask(value), detail, start=self.start, end=self.end, pi_adjacent=pi_adjacent
        )


def _is_decimal_point(chain: str, groups: list[re.Match[str]], k: int) -> bool:
    """Is the separator between groups k and k+1 a decimal point (``.`` between digit groups)?"""
    sep = chain[groups[k].end()]
    left, right = groups[k].group(), groups[k + 1].group()
    if sep != "." or not (left.isdigit() and right.isdigit()):
        return False
    trailing_zero = k + 1 == len(groups) - 1 and set(right) == {"0"}
    return not trailing_zero


def _candidates(text: str) -> Iterable[_Candidate]:
    for chain_m in _CHAIN.finditer(text):
        chain = chain_m.group()
        if not any(ch.isdigit() for ch in chain):
            continue
        groups = list(_GROUP.finditer(chain))
        n = len(groups)
        for i in range(n):
            if i > 0 and _is_decimal_point(chain, groups, i - 1):
                continue
            parts: list[str] = []
            for j in range(i, n):
                parts.append(groups[j].group())
                if sum(map(len, parts)) > _MAX_CANDIDATE:
                    break
                if j < n - 1 and _is_decimal_point(chain, groups, j):
                    continue
                yield _Candidate(
                    "".join(parts),
                    tuple(len(p) for p in parts),
                    chain_m.start() + groups[i].start(),
                    chain_m.start() + groups[j].end(),
                )


def _context_window(text: str, start: int, end: int) -> str:
    return text[max(0, start - 24) : end + 12]


def _phone_number(cand: _Candidate) -> tuple[str, tuple[int, ...], bool] | None:
    """Strip a +86 / 0086 / 86 prefix; return (number, remaining grouping, had_prefix)."""
    text, lengths = cand.text, list(cand.lengths)
    for prefix in ("0086", "86"):
        if text.startswith(prefix) and len(text) - len(prefix) in (10, 11, 12):
            rest = text[len(prefix) :]
            if lengths[0] == len(prefix):
                lengths = lengths[1:]
            elif lengths[0] > len(prefix):
                lengths[0] -= len(prefix)
            else:
                return None
            return rest, tuple(lengths), True
    return text, tuple(lengths), False


def _check_ids(cand: _Candidate) -> list[Finding]:
    out: list[Finding] = []
    t = cand.text
    if len(t) == 18 and _ID18.fullmatch(t) and cand.lengths in _ID_GROUPINGS and resident_id_date_valid(t):
        if resident_id_check_char(t[:17]) == t[17]:
            out.append(
                cand.finding(
                    IdentifierKind.RESIDENT_ID,
                    Severity.HIGH,
                    t,
                    "18 characters, valid birth date and check character",
                )
            )
        else:
            out.append(
                cand.finding(
                    IdentifierKind.RESIDENT_ID,
                    Severity.MEDIUM,
                    t,
                    "ID-shaped with a valid birth date but a wrong check character (possibly a mistyped ID)",
                )
            )
    if len(t) == 15 and t.isdigit() and cand.lengths in _LEGACY_GROUPINGS and resident_id_date_valid(t):
        out.append(
            cand.finding(
                IdentifierKind.RESIDENT_ID,
                Severity.MEDIUM,
                t,
                "legacy 15-digit ID shape with a valid YYMMDD birth date",
            )
        )
    return out


def _check_uscc(cand: _Candidate) -> list[Finding]:
    t = cand.text
    if cand.lengths != (18,) or not is_valid_uscc(t):
        return []
    detail = "valid GB 32100 check character"
    if uscc_org_code_valid(t):
        detail += " and organisation-code check"
    pi = t.startswith("92")
    if pi:
        detail += "; 个体工商户 code, relates to a natural person"
    return [cand.finding(IdentifierKind.USCC, Severity.HIGH, t, detail, pi_adjacent=pi)]


def _check_phones(cand: _Candidate, text: str, context: str) -> list[Finding]:
    parsed = _phone_number(cand)
    if parsed is None:
        return []
    number, lengths, had_prefix = parsed
    window = _context_window(text, cand.start, cand.end) + " " + context
    has_context = bool(_MOBILE_CONTEXT.search(window))
    out: list[Finding] = []
    if _MOBILE_RE.fullmatch(number) and lengths in _PHONE_GROUPINGS:
        grouped = len(lengths) > 1
        strong = has_context or had_prefix or grouped
        why = [
            w
            for w, on in (
                ("context word", has_context),
                ("+86 prefix", had_prefix),
                ("3-4-4 grouping", grouped),
            )
            if on
        ]
        out.append(
            cand.finding(
                IdentifierKind.MOBILE,
                Severity.HIGH if strong else Severity.MEDIUM,
                number,
                "pattern 1[3-9] + 9 digits" + (f", {', '.join(why)}" if why else ", no check digit exists"),
            )
        )
    elif _LANDLINE_RE.fullmatch(number) and lengths in _LANDLINE_GROUPINGS:
        has_zero = number.startswith("0")
        if has_zero or had_prefix or has_context:
            out.append(
                cand.finding(IdentifierKind.LANDLINE, Severity.MEDIUM, number, "021 area code + 8 digits")
            )
    return out


def _bank_grouping_ok(lengths: tuple[int, ...]) -> bool:
    if len(lengths) == 1:
        return True
    return all(n == 4 for n in lengths[:-1]) and 1 <= lengths[-1] <= 4


def _check_bank_card(cand: _Candidate) -> list[Finding]:
    t = cand.text
    if not t.isdigit() or not 13 <= len(t) <= 19 or not _bank_grouping_ok(cand.lengths):
        return []
    valid = luhn_valid(t)
    major = t.startswith(("62", "4", "5", "9"))
    if 16 <= len(t) <= 19 and valid and major:
        sev, detail = (
            Severity.HIGH,
            f"{len(t)} digits, Luhn-valid, card-issuer prefix {t[:1] if t[0] != '6' else '62'}",
        )
    elif 16 <= len(t) <= 19 and not valid and t.startswith("62"):
        sev, detail = (
            Severity.MEDIUM,
            f"{len(t)} digits with UnionPay prefix 62 but Luhn-invalid (possibly mistyped)",
        )
    elif valid:
        sev, detail = Severity.LOW, f"{len(t)}-digit Luhn-valid run"
    else:
        return []
    return [cand.finding(IdentifierKind.BANK_CARD, sev, t, detail)]


def _check_passport(cand: _Candidate, text: str, context: str) -> list[Finding]:
    t = cand.text
    if cand.lengths != (9,) or not (_PASSPORT_RE.fullmatch(t) or _PERMIT_RE.fullmatch(t)):
        return []
    window = _context_window(text, cand.start, cand.end) + " " + context
    strong = bool(_PASSPORT_CONTEXT.search(window))
    return [
        cand.finding(
            IdentifierKind.PASSPORT,
            Severity.MEDIUM if strong else Severity.LOW,
            t,
            "passport / permit pattern" + (" with a context word" if strong else ""),
        )
    ]


_PLATE = re.compile(
    r"沪[ ·・.\-]?[A-HJ-NP-Z][ ·・.\-]?(?:[DF][A-HJ-NP-Z0-9]{5}|[A-HJ-NP-Z0-9]{5})(?![0-9A-Z])"
)
_EMAIL = re.compile(
    r"(?<![A-Z0-9._%+\-])[A-Z0-9._%+\-]+@[A-Z0-9\-]+(?:\.[A-Z0-9\-]+)*\.[A-Z]{2,}(?![A-Z0-9])"
)


def scan_text(text: str, *, context: str = "", location: str = "") -> list[Finding]:
    """Every suspected identifier in ``text`` (``context``: e.g. the column header, for context words)."""
    norm = normalise(text)
    ctx = normalise(context)
    found: list[Finding] = []
    for cand in _candidates(norm):
        here = _check_ids(cand) + _check_uscc(cand) + _check_phones(cand, norm, ctx)
        here += _check_passport(cand, norm, ctx)
        bank = _check_bank_card(cand)
        if here:  # an ID, code or phone explains this number better than a weak Luhn hit
            bank = [f for f in bank if f.severity != Severity.LOW]
        found.extend(here + bank)
    patterns = (
        (_PLATE, IdentifierKind.PLATE, mask, "Shanghai plate pattern"),
        (_EMAIL, IdentifierKind.EMAIL, _mask_email, "e-mail pattern"),
    )
    for pattern, kind, masked, detail in patterns:
        for m in pattern.finditer(norm):
            found.append(
                Finding(kind, Severity.MEDIUM, masked(m.group()), detail, start=m.start(), end=m.end())
            )
    return [_with_location(f, text, location) for f in _drop_nested(found)]


def _drop_nested(findings: list[Finding]) -> list[Finding]:
    """Drop a finding whose span lies inside another finding of the same kind (e.g. with/without +86)."""
    out: list[Finding] = []
    for f in findings:
        inside = any(
            g is not f
            and g.kind == f.kind
            and g.start <= f.start
            and f.end <= g.end
            and (g.start, g.end) != (f.start, f.end)
            for g in findings
        )
        duplicate = any(g.kind == f.kind and (g.start, g.end) == (f.start, f.end) for g in out)
        if not inside and not duplicate:
            out.append(f)
    return out


def _with_location(f: Finding, text: str, location: str) -> Finding:
    if location:
        loc = location
    elif "\n" in text:
        loc = f"line {text.count(chr(10), 0, f.start) + 1}"
    else:
        loc = ""
    return Finding(f.kind, f.severity, f.masked, f.detail, loc, f.start, f.end, f.pi_adjacent)


# ---------------------------------------------------------------- column names (§7.5)

_COLUMN_ZH = (
    "身份证",
    "证件号",
    "证件号码",
    "手机",
    "电话",
    "联系方式",
    "卡号",
    "银行卡",
    "姓名",
    "地址",
    "住址",
    "护照",
    "车牌",
    "邮箱",
)
_COLUMN_EN = re.compile(
    r"^(?:.*_)?(?:id_?card|id_?no|id_?number|national_?id|resident_?id|citizen_?id|ssn|passport(?:_?no)?"
    r"|phone(?:_?no|_?number)?|mobile(?:_?no|_?number)?|cell_?phone|tel(?:ephone)?(?:_?no)?"
    r"|card_?no|card_?number|bank_?card(?:_?no)?|account_?no|account_?number|pan"
    r"|e_?mail|plate(?:_?no)?|licen[cs]e_?plate|address|addr|home_?address)(?:_.*)?$"
    r"|^(?:(?:full|first|last|given|family|sur|person|patient|customer|guest|holder|contact|legal_?rep)_?)?name$"
)


def scan_column_name(name: str) -> Finding | None:
    """A header that suggests an identifier (身份证, 证件号, 手机, 卡号, 姓名, 地址 …) triggers review."""
    raw = str(name).strip()
    norm = normalise(raw)
    key = re.sub(r"[^0-9a-z]+", "_", norm.lower()).strip("_")
    hit = next((w for w in _COLUMN_ZH if w in norm), None)
    if hit is None and key and _COLUMN_EN.match(key):
        hit = key
    if hit is None:
        return None
    return Finding(
        IdentifierKind.COLUMN_NAME,
        Severity.LOW,
        raw,
        f"header suggests an identifier ({hit})",
        location=f"column {raw!r}",
    )


# ---------------------------------------------------------------- verdicts per tier (§7 gate rules)


def verdict_for(finding: Finding, tier: Tier, *, enterprise_data: bool = True) -> Verdict:
    """The gate rule for one finding, given the strictest tier the file derives from.

    * high → fail in every tier (ID numbers, bank cards), except:
    * USCC: allowed from open data; from conditional/restricted data it fails when the data is
      enterprise data (privacy unit = enterprise; unknown counts as enterprise) and is a warning
      otherwise; a ``92`` (个体工商户) code is PI-adjacent: warn in open, fail elsewhere.
    * mobile / landline numbers, plates, e-mail: fail from conditional/restricted, warn from open.
    * medium → fail from conditional/restricted, warn from open.
    * low, and identifier-like column names → warn (a human looks).
    """
    open_tier = tier == Tier.OPEN
    kind, sev = finding.kind, finding.severity
    if kind == IdentifierKind.COLUMN_NAME:
        return Verdict.WARN
    if kind == IdentifierKind.USCC:
        if open_tier:
            return Verdict.WARN if finding.pi_adjacent else Verdict.PASS
        return Verdict.FAIL if (finding.pi_adjacent or enterprise_data) else Verdict.WARN
    if kind in (IdentifierKind.MOBILE, IdentifierKind.LANDLINE, IdentifierKind.PLATE, IdentifierKind.EMAIL):
        return Verdict.WARN if open_tier else Verdict.FAIL
    if sev == Severity.HIGH:
        return Verdict.FAIL
    if sev == Severity.MEDIUM:
        return Verdict.WARN if open_tier else Verdict.FAIL
    return Verdict.WARN

"""Cross-reference rules for policy files, run on the raw YAML mappings.

Pure: no I/O. The pydantic models check shapes and types; these rules check what
one field says about another (a privacy unit is a column, bounds are ordered, a
reference names an existing column, ...). They work on the raw mappings, not on
validated models, so they still run when pydantic rejects the file and
``sandbox policy check`` can list every problem in one run. A value of the wrong
type is skipped here: pydantic already reports it.
"""

from __future__ import annotations

import itertools
import math
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sandbox.policy.models import CUBE_MAX_CELLS

# PIPL Art. 28 sensitive personal information categories (SR-02).
PI_CATEGORIES = frozenset(
    {"生物识别", "宗教信仰", "特定身份", "医疗健康", "金融账户", "行踪轨迹", "不满十四周岁未成年人"}
)
# SR-03 / SR-04: only general data may enter a user-facing tier.
ADMISSIBLE_GRADE = "一般数据"
REFUSED_GRADES = frozenset({"核心数据", "重要数据"})
# REQUIREMENTS §5: source tier codes and the opening type each maps to.
SOURCE_TIERS = {"T0": "open", "T1": "conditional", "T2": "conditional", "T3": "restricted"}
CITATION_FIELDS = frozenset({"dataset", "provider", "date", "release"})
NUMERIC = frozenset({"integer", "float"})
TEMPORAL = frozenset({"date", "timestamp"})
COLUMN_TYPES = frozenset({"string", "category", "boolean", *NUMERIC, *TEMPORAL})
# Types whose columns may declare a domain of their own (and so become grouping keys).
_DOMAIN_TYPES = frozenset({"string", "category", "integer", "boolean"})
# Types a join key may have on both sides.
_KEY_FAMILY = {
    "string": "text",
    "category": "text",
    "integer": "integer",
    "float": "float",
    "boolean": "boolean",
}

Path = tuple[str | int, ...]


@dataclass(frozen=True, order=True)
class Problem:
    """One problem in a policy file; ``str()`` gives ``file: dotted.path: message``."""

    file: str
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}: " if self.path else f"{self.file}: "
        suffix = f" (line {self.line})" if self.line is not None else ""
        return f"{where}{self.message}{suffix}"


def dotted(path: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in path)


@dataclass(frozen=True)
class Finding:
    """A rule violation inside one file, before the file name and line are attached."""

    path: Path
    message: str


def _num(value: Any) -> Decimal | None:
    """A YAML number as an exact Decimal, or None if it is not one (bool is not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        out = Decimal(str(value))
    except InvalidOperation:
        return None
    return out if out.is_finite() else None


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


# --------------------------------------------------------------------------- platform


def check_platform(raw: Mapping[str, Any]) -> list[Finding]:
    """Rules for ``platform.yaml`` beyond its model."""
    out: list[Finding] = []
    citation = raw.get("citation")
    if isinstance(citation, str):
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(citation) if f is not None}
        except ValueError as err:
            out.append(Finding(("citation",), f"not a valid template: {err}"))
        else:
            for name in sorted(names - CITATION_FIELDS):
                out.append(
                    Finding(
                        ("citation",), f"unknown placeholder {{{name}}}; use {_fmt(sorted(CITATION_FIELDS))}"
                    )
                )
    for name, values in _map(raw.get("domains")).items():
        if isinstance(values, list):
            out.extend(_check_domain_values(("domains", name), values))
    defaults = _map(raw.get("defaults"))
    for key in ("budgets", "restricted_budgets"):
        out.extend(_check_budget_order(("defaults", key), _map(defaults.get(key))))
    default_eps = _num(defaults.get("default_query_epsilon"))
    if default_eps is not None:
        for key in ("budgets", "restricted_budgets"):
            cap = _num(_map(defaults.get(key)).get("per_query_max"))
            if cap is not None and default_eps > cap:
                out.append(
                    Finding(
                        ("defaults", "default_query_epsilon"),
                        f"{default_eps} exceeds defaults.{key}.per_query_max ({cap})",
                    )
                )
    return out


def _check_budget_order(path: Path, budgets: Mapping[str, Any]) -> Iterator[Finding]:
    """per_query_max <= per_user <= per_project <= global (a query fits in every cap)."""
    chain = ("per_query_max", "per_user", "per_project", "global")
    values = [(k, _num(budgets.get(k))) for k in chain]
    known = [(k, v) for k, v in values if v is not None]
    for (k1, v1), (k2, v2) in itertools.pairwise(known):
        if v1 > v2:
            yield Finding((*path, k1), f"{k1} ({v1}) must not exceed {k2} ({v2})")


# --------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class Context:
    """What the dataset rules need to know about the other files."""

    departments: frozenset[str]
    domains: Mapping[str, list[Any]]
    # dataset id -> column name -> column type (as written), for ``references``.
    columns: Mapping[str, Mapping[str, Any]]
    platform_ok: bool = True
    # Dataset files that could not be parsed: references to them are not reported again.
    unreadable: frozenset[str] = frozenset()


def check_dataset(raw: Mapping[str, Any], file_stem: str, ctx: Context) -> list[Finding]:
    """Rules for one dataset file beyond its model."""
    out: list[Finding] = []
    ds_id = raw.get("id")
    if isinstance(ds_id, str) and ds_id != file_stem:
        out.append(Finding(("id",), f"id {ds_id!r} does not match the file name {file_stem + '.yaml'!r}"))

    tier = raw.get("tier")
    source_tier = raw.get("source_tier")
    if tier in set(SOURCE_TIERS.values()) and isinstance(source_tier, str) and source_tier in SOURCE_TIERS:
        expected = SOURCE_TIERS[source_tier]
        if tier != expected:
            out.append(
                Finding(("tier",), f"source tier {source_tier} maps to tier {expected!r}, not {tier!r}")
            )

    grade = raw.get("grade")
    if isinstance(grade, str):
        if grade in REFUSED_GRADES:
            out.append(
                Finding(
                    ("grade",),
                    f"{grade} may not be admitted to a user-facing tier (SR-04); only {ADMISSIBLE_GRADE}",
                )
            )
        elif grade != ADMISSIBLE_GRADE:
            out.append(
                Finding(("grade",), f"unknown grade {grade!r}; use {ADMISSIBLE_GRADE} (with grade_level 1-4)")
            )

    if ctx.platform_ok:
        for i, dept in enumerate(_list(raw.get("provider"))):
            if isinstance(dept, str) and dept not in ctx.departments:
                out.append(
                    Finding(
                        ("provider", i),
                        f"unknown department {dept!r}; known: {_fmt(sorted(ctx.departments))}",
                    )
                )

    if tier in ("conditional", "restricted"):
        conditions = raw.get("conditions")
        if conditions is None or (isinstance(conditions, str) and not conditions.strip()):
            out.append(
                Finding(("conditions",), f"a {tier} dataset must publish its access conditions (SR-11)")
            )

    columns = [c if isinstance(c, Mapping) else {} for c in _list(raw.get("columns"))]
    names: dict[str, int] = {}
    for i, col in enumerate(columns):
        name = col.get("name")
        if isinstance(name, str):
            if name in names:
                out.append(
                    Finding(("columns", i, "name"), f"duplicate column {name!r} (also columns.{names[name]})")
                )
            else:
                names[name] = i

    out.extend(_check_privacy_unit(raw, tier, names, columns))
    out.extend(_check_query_window(raw, names, columns))
    out.extend(_check_cube_dimensions(raw, names, columns, ctx))
    out.extend(_check_budget_order(("budgets",), _map(raw.get("budgets"))))
    for i, col in enumerate(columns):
        out.extend(_check_column(("columns", i), col, ctx))
    return out


def _check_privacy_unit(
    raw: Mapping[str, Any], tier: Any, names: Mapping[str, int], columns: list[Mapping[str, Any]]
) -> Iterator[Finding]:
    unit = raw.get("privacy_unit")
    max_rows = raw.get("max_rows_per_unit")
    if unit is None:
        if tier in ("conditional", "restricted"):
            yield Finding(
                ("privacy_unit",),
                f"a {tier} dataset needs a privacy unit (the column of a person or enterprise)",
            )
        if max_rows is not None:
            yield Finding(("max_rows_per_unit",), "set only together with privacy_unit")
        return
    if not isinstance(unit, str):
        return
    if unit not in names:
        yield Finding(
            ("privacy_unit",),
            f"{unit!r} is not a column of this dataset; columns: {_fmt(sorted(names)) or '(none)'}",
        )
    elif columns[names[unit]].get("nullable") is True:
        yield Finding(("privacy_unit",), f"privacy unit column {unit!r} must not be nullable")
    if max_rows is None:
        yield Finding(("max_rows_per_unit",), "required when privacy_unit is set (the contribution bound)")


def _check_query_window(
    raw: Mapping[str, Any], names: Mapping[str, int], columns: list[Mapping[str, Any]]
) -> Iterator[Finding]:
    """The window column exists, is a date or timestamp, and may appear in WHERE."""
    window = raw.get("query_window")
    if not isinstance(window, Mapping):
        return  # absent, or the wrong type (pydantic reports it)
    if raw.get("privacy_unit") is None:
        yield Finding(("query_window",), "set only together with privacy_unit (it limits DP queries)")
    column = window.get("column")
    if not isinstance(column, str):
        return
    path = ("query_window", "column")
    if column not in names:
        yield Finding(
            path, f"{column!r} is not a column of this dataset; columns: {_fmt(sorted(names)) or '(none)'}"
        )
        return
    col = columns[names[column]]
    ctype = col.get("type")
    if isinstance(ctype, str) and ctype in COLUMN_TYPES and ctype not in TEMPORAL:
        yield Finding(
            path, f"{column!r} is a {ctype} column; the query window needs a date or timestamp column"
        )
    if col.get("role") == "identifier" or column == raw.get("privacy_unit"):
        yield Finding(path, f"{column!r} is an identifier column, which queries cannot filter on")


def _domain_size(col: Mapping[str, Any], ctx: Context) -> int | None:
    """Values in a column's public domain as a grouping key (a boolean without one: 2), or None
    when it has none. The same condition as the DP engine's cube dimension candidates."""
    domain = col.get("domain")
    if isinstance(domain, str) and domain.startswith("@"):
        values = ctx.domains.get(domain[1:])
        return len(values) if values else None
    if isinstance(domain, list):
        return len(domain) or None
    if domain is None and col.get("type") == "boolean":
        return 2
    return None


def _check_cube_dimensions(
    raw: Mapping[str, Any], names: Mapping[str, int], columns: list[Mapping[str, Any]], ctx: Context
) -> Iterator[Finding]:
    """Each cube dimension is a column with a public domain, not an identifier, listed once; the
    cube over them has at most ``CUBE_MAX_CELLS`` cells (each domain size + 1, for NULL or other)."""
    dims = raw.get("cube_dimensions")
    if not isinstance(dims, list):
        return  # absent (the greedy default), or the wrong type (pydantic reports it)
    unit = raw.get("privacy_unit")
    if unit is None:
        yield Finding(
            ("cube_dimensions",),
            "set only together with privacy_unit (derived tables exist for DP datasets only)",
        )
        return
    candidates = [
        str(c.get("name"))
        for c in columns
        if c.get("role") != "identifier" and c.get("name") != unit and _domain_size(c, ctx) is not None
    ]
    hint = f"columns that can be dimensions: {_fmt(candidates) or '(none)'}"
    seen: dict[str, int] = {}
    sizes: list[tuple[str, int]] = []
    valid = True
    for i, name in enumerate(dims):
        if not isinstance(name, str):
            valid = False
            continue  # pydantic reports it
        path = ("cube_dimensions", i)
        if name in seen:
            yield Finding(path, f"{name!r} is listed twice (also cube_dimensions.{seen[name]}); remove one")
            valid = False
            continue
        seen[name] = i
        if name not in names:
            yield Finding(path, f"{name!r} is not a column of this dataset; {hint}")
            valid = False
            continue
        col = columns[names[name]]
        if col.get("role") == "identifier" or name == unit:
            what = "the privacy unit" if name == unit else "an identifier column"
            yield Finding(path, f"{name!r} is {what}, which can never be a grouping key; {hint}")
            valid = False
            continue
        size = _domain_size(col, ctx)
        if size is None:
            valid = False
            if col.get("domain") is not None:
                continue  # an empty or unknown domain: the column's own check reports it
            ctype = col.get("type")
            fix = "give the column a domain or leave it out" if ctype in _DOMAIN_TYPES else "leave it out"
            yield Finding(
                path, f"{name!r} has no public domain, so it cannot be a cube dimension; {fix}; {hint}"
            )
            continue
        sizes.append((name, size))
    if not valid:
        return
    cells = math.prod(size + 1 for _, size in sizes)
    if cells > CUBE_MAX_CELLS:
        yield Finding(
            ("cube_dimensions",),
            f"the cube over {_fmt(n for n, _ in sizes)} has up to {cells:,} cells "
            f"({' × '.join(str(size + 1) for _, size in sizes)}: each domain's size + 1 for NULL or "
            f"values outside it), above the limit of {CUBE_MAX_CELLS:,}; drop a dimension, choose "
            "columns with smaller domains, or write [] for no cube",
        )


def _check_column(path: Path, col: Mapping[str, Any], ctx: Context) -> Iterator[Finding]:
    ctype = col.get("type")
    if ctype not in COLUMN_TYPES:
        ctype = None  # the model reports it; type-dependent rules are skipped
    name = col.get("name", "?")
    bounds = col.get("bounds")
    lower = upper = None
    if isinstance(bounds, Mapping):
        lower, upper = _num(bounds.get("lower")), _num(bounds.get("upper"))
        if lower is not None and upper is not None and lower >= upper:
            yield Finding((*path, "bounds"), f"lower ({lower}) must be below upper ({upper})")
            lower = upper = None
    if ctype in NUMERIC:
        if bounds is None:
            yield Finding((*path, "bounds"), f"numeric column {name!r} needs public bounds (lower, upper)")
        if col.get("precision") is None:
            yield Finding((*path, "precision"), f"numeric column {name!r} needs a precision (decimal digits)")
        elif ctype == "integer" and col.get("precision") != 0:
            yield Finding((*path, "precision"), "an integer column has precision 0")
    elif isinstance(ctype, str):
        for key in ("bounds", "precision", "bins"):
            if col.get(key) is not None:
                yield Finding((*path, key), f"only numeric columns take {key}; {name!r} is {ctype}")

    bins = col.get("bins")
    if ctype in NUMERIC and isinstance(bins, list):
        yield from _check_bins((*path, "bins"), bins, lower, upper)

    domain = col.get("domain")
    values: list[Any] | None = None
    if isinstance(domain, str):
        ref = domain[1:] if domain.startswith("@") else None
        if ref is None:
            yield Finding((*path, "domain"), f"a shared domain is written '@name', got {domain!r}")
        elif ctx.platform_ok and ref not in ctx.domains:
            yield Finding(
                (*path, "domain"),
                f"unknown shared domain {domain!r}; known: {_fmt('@' + d for d in sorted(ctx.domains))}",
            )
        else:
            values = list(ctx.domains.get(ref, []))
    elif isinstance(domain, list):
        values = domain
        yield from _check_domain_values((*path, "domain"), domain)
    if ctype == "category" and domain is None:
        yield Finding(
            (*path, "domain"), f"categorical column {name!r} needs a public domain (list or '@name')"
        )
    if ctype in TEMPORAL and domain is not None:
        yield Finding((*path, "domain"), f"{ctype} columns take no domain")
    if values and isinstance(ctype, str):
        yield from _check_domain_types((*path, "domain"), values, ctype, lower, upper)

    pi = col.get("pi_category")
    if isinstance(pi, str) and pi not in PI_CATEGORIES:
        yield Finding(
            (*path, "pi_category"),
            f"unknown PI category {pi!r}; PIPL Art. 28 lists {_fmt(sorted(PI_CATEGORIES))}",
        )

    ref = col.get("references")
    if isinstance(ref, str):
        yield from _check_reference((*path, "references"), ref, ctype, ctx)


def _check_bins(
    path: Path, bins: list[Any], lower: Decimal | None, upper: Decimal | None
) -> Iterator[Finding]:
    edges = [_num(b) for b in bins]
    if len(bins) < 2:
        yield Finding(path, "needs at least two edges")
    known = [e for e in edges if e is not None]
    for i, (a, b) in enumerate(itertools.pairwise(known)):
        if a >= b:
            yield Finding(path, f"edges must be strictly ascending ({a} then {b} at position {i + 1})")
            break
    if known and lower is not None and upper is not None and (min(known) < lower or max(known) > upper):
        yield Finding(path, f"edges must lie within the bounds [{lower}, {upper}]")


def _check_domain_values(path: Path, values: list[Any]) -> Iterator[Finding]:
    if not values:
        yield Finding(path, "a domain must not be empty")
    seen: set[tuple[type, Any]] = set()
    for i, value in enumerate(values):
        key = (type(value), value)
        if key in seen:
            yield Finding((*path, i), f"duplicate value {value!r}")
        seen.add(key)


def _check_domain_types(
    path: Path, values: list[Any], ctype: str, lower: Decimal | None, upper: Decimal | None
) -> Iterator[Finding]:
    for i, value in enumerate(values):
        if ctype in ("string", "category"):
            ok = isinstance(value, str)
        elif ctype == "integer":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif ctype == "boolean":
            ok = isinstance(value, bool)
        else:
            ok = False
        if not ok:
            yield Finding((*path, i), f"value {value!r} does not fit a {ctype} column")
            return
        if ctype == "integer" and lower is not None and upper is not None and not lower <= value <= upper:
            yield Finding((*path, i), f"value {value} lies outside the bounds [{lower}, {upper}]")
            return


def _check_reference(path: Path, ref: str, ctype: Any, ctx: Context) -> Iterator[Finding]:
    ds, sep, col = ref.partition(".")
    if not sep or not ds or not col:
        yield Finding(path, f"write '<dataset>.<column>', got {ref!r}")
        return
    if ds in ctx.unreadable:
        return
    if ds not in ctx.columns:
        yield Finding(path, f"unknown dataset {ds!r}")
        return
    target = ctx.columns[ds]
    if col not in target:
        yield Finding(path, f"dataset {ds!r} has no column {col!r}")
        return
    other = target[col]
    if (
        isinstance(ctype, str)
        and isinstance(other, str)
        and _KEY_FAMILY.get(ctype, ctype) != _KEY_FAMILY.get(other, other)
    ):
        yield Finding(path, f"type {ctype} does not match {ref} ({other})")


def _fmt(items: Any) -> str:
    return ", ".join(str(i) for i in items)

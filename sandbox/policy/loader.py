"""Read ``policies/``: ``platform.yaml`` plus one ``<dataset id>.yaml`` per dataset.

``check_policies(path)`` lists every problem of every file at once, as
``file: dotted.path: message``: YAML syntax errors and duplicate keys (with line
numbers), pydantic errors (unknown keys, wrong types, missing keys) and the
cross-reference rules of :mod:`sandbox.policy.rules`. The rules run on the raw
mappings, so they report even when a file fails its model.

``load_policies(path)`` returns a :class:`Catalog` or raises ``PolicyError`` with
the same problems in ``details["problems"]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sandbox.config import Settings
from sandbox.errors import PolicyError, UnknownDataset
from sandbox.policy import rules
from sandbox.policy.models import (
    Budgets,
    Column,
    Dataset,
    Department,
    DomainValue,
    ExportThresholds,
    Platform,
    Tier,
    TierRules,
)
from sandbox.policy.rules import Problem

__all__ = ["PLATFORM_FILE", "Catalog", "Problem", "check_policies", "load_policies"]

PLATFORM_FILE = "platform.yaml"

_Loc = tuple[str | int, ...]


# --------------------------------------------------------------------------- catalog


@dataclass(frozen=True)
class Catalog:
    """Validated policies: the platform and the datasets (domains resolved)."""

    platform: Platform
    datasets: dict[str, Dataset]
    source: Path | None = field(default=None, compare=False)

    def dataset(self, dataset_id: str) -> Dataset:
        try:
            return self.datasets[dataset_id]
        except KeyError:
            raise UnknownDataset(f"Unknown dataset {dataset_id!r}.") from None

    def tier_rules(self, dataset_id: str) -> TierRules:
        return self.platform.tiers[self.dataset(dataset_id).tier]

    def budgets(self, dataset_id: str) -> Budgets:
        """The dataset's own budgets, else the tier default (``restricted_budgets`` for restricted).

        Open datasets have no DP; they get the conditional default so callers need no special case.
        """
        ds = self.dataset(dataset_id)
        if ds.budgets is not None:
            return ds.budgets
        defaults = self.platform.defaults
        return defaults.restricted_budgets if ds.tier is Tier.RESTRICTED else defaults.budgets

    def export_thresholds(self, dataset_id: str) -> ExportThresholds:
        """Platform thresholds, overridden key by key by the dataset's ``export``.

        ``reviewers`` is always filled in: the override, else the tier's ``export_reviewers``.
        """
        ds = self.dataset(dataset_id)
        merged = self.platform.defaults.export
        if ds.export is not None:
            update = {k: getattr(ds.export, k) for k in ds.export.model_fields_set}
            merged = merged.model_copy(update=update)
        if merged.reviewers is None:
            merged = merged.model_copy(update={"reviewers": self.tier_rules(dataset_id).export_reviewers})
        return merged

    def department(self, department_id: str) -> Department:
        return self.platform.departments[department_id]

    def domain(self, name: str) -> list[DomainValue]:
        """A shared domain by name (with or without the leading '@')."""
        return list(self.platform.domains[name.removeprefix("@")])

    @property
    def default_query_epsilon(self) -> Decimal:
        return self.platform.defaults.default_query_epsilon

    def ids(self, tier: Tier | None = None) -> list[str]:
        return [k for k, d in self.datasets.items() if tier is None or d.tier is tier]


# --------------------------------------------------------------------------- YAML reading


@dataclass
class _Parsed:
    """One YAML file: its data (None when unreadable), line of each path, and problems."""

    data: Any = None
    lines: dict[_Loc, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


# libyaml when available (same node marks, several times faster).
_YamlLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse_yaml(file: str, text: str) -> _Parsed:
    out = _Parsed()
    loader = _YamlLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _walk(node, (), out, file)
            out.data = loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else None
        where = f"column {mark.column + 1}: " if mark is not None else ""
        out.problems.append(Problem(file, "", f"YAML syntax error: {where}{err.problem or err}", line))
        out.data = None
    except yaml.YAMLError as err:
        out.problems.append(Problem(file, "", f"YAML error: {err}"))
        out.data = None
    finally:
        loader.dispose()
    return out


def _walk(node: yaml.Node, path: _Loc, out: _Parsed, file: str) -> None:
    out.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                out.problems.append(
                    Problem(
                        file, rules.dotted((*path, key)), f"duplicate key (first on line {seen[key]})", line
                    )
                )
            seen.setdefault(key, line)
            out.lines[(*path, key)] = line
            _walk(value_node, (*path, key), out, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), out, file)


def _line(lines: Mapping[_Loc, int], loc: _Loc) -> int | None:
    """Line of the deepest prefix of ``loc`` the file has (missing keys point at their parent)."""
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


# --------------------------------------------------------------------------- pydantic errors


_TAGS = frozenset({"str", "int", "bool", "float", "decimal", "none", "list", "dict", "[key]"})


def _clean_loc(loc: Iterable[str | int], data: Any) -> _Loc:
    """Drop pydantic's union/validator tags from ``loc`` so it is the path in the file."""
    out: list[str | int] = []
    cur: Any = data
    for part in loc:
        in_map = isinstance(cur, Mapping) and part in cur
        in_list = isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur)
        if in_map or in_list:
            cur = cur[part]
            out.append(part)
        elif isinstance(part, str) and (part in _TAGS or "[" in part or "(" in part):
            continue
        else:
            out.append(part)
            cur = None
    return tuple(out)


def _message(err: Mapping[str, Any]) -> str:
    kind = err.get("type")
    if kind == "extra_forbidden":
        return "unknown key (not allowed here; see policies/schema.json)"
    if kind == "missing":
        return "required key is missing"
    return str(err.get("msg", "invalid value"))


def _model_problems(file: str, exc: ValidationError, parsed: _Parsed) -> list[Problem]:
    grouped: dict[_Loc, list[str]] = {}
    for err in exc.errors():
        loc = _clean_loc(err["loc"], parsed.data)
        msg = _message(err)
        bucket = grouped.setdefault(loc, [])
        if msg not in bucket:
            bucket.append(msg)
    return [
        Problem(file, rules.dotted(loc), "; or ".join(msgs), _line(parsed.lines, loc))
        for loc, msgs in grouped.items()
    ]


def _attach(file: str, findings: Iterable[rules.Finding], parsed: _Parsed) -> list[Problem]:
    return [Problem(file, rules.dotted(f.path), f.message, _line(parsed.lines, f.path)) for f in findings]


# --------------------------------------------------------------------------- check / load


@dataclass
class _Result:
    problems: list[Problem]
    platform: Platform | None
    datasets: dict[str, Dataset]


def _read(path: Path) -> _Result:
    problems: list[Problem] = []
    if not path.is_dir():
        return _Result([Problem(str(path), "", "policy directory not found")], None, {})

    # Platform file.
    platform: Platform | None = None
    platform_raw: Mapping[str, Any] = {}
    platform_path = path / PLATFORM_FILE
    if not platform_path.is_file():
        problems.append(Problem(PLATFORM_FILE, "", "file not found"))
    else:
        parsed = _parse_yaml(PLATFORM_FILE, platform_path.read_text(encoding="utf-8"))
        problems.extend(parsed.problems)
        if parsed.data is not None and not isinstance(parsed.data, Mapping):
            problems.append(Problem(PLATFORM_FILE, "", "top level must be a mapping", 1))
        elif isinstance(parsed.data, Mapping):
            platform_raw = parsed.data
            try:
                platform = Platform.model_validate(platform_raw)
            except ValidationError as exc:
                problems.extend(_model_problems(PLATFORM_FILE, exc, parsed))
            problems.extend(_attach(PLATFORM_FILE, rules.check_platform(platform_raw), parsed))
        elif not parsed.problems:
            problems.append(Problem(PLATFORM_FILE, "", "file is empty", 1))

    # Dataset files: parse all first, so references can be checked across files.
    files = sorted(p for p in path.glob("*.yaml") if p.name != PLATFORM_FILE)
    if not files:
        problems.append(Problem(str(path), "", "no dataset files (<dataset id>.yaml)"))
    raw_datasets: list[tuple[Path, _Parsed]] = []
    unreadable: set[str] = set()
    for file in files:
        parsed = _parse_yaml(file.name, file.read_text(encoding="utf-8"))
        problems.extend(parsed.problems)
        if parsed.data is None or not isinstance(parsed.data, Mapping):
            unreadable.add(file.stem)
        if parsed.data is None:
            if not parsed.problems:
                problems.append(Problem(file.name, "", "file is empty", 1))
            continue
        if not isinstance(parsed.data, Mapping):
            problems.append(Problem(file.name, "", "top level must be a mapping", 1))
            continue
        raw_datasets.append((file, parsed))

    columns: dict[str, dict[str, Any]] = {}
    for file, parsed in raw_datasets:
        cols = parsed.data.get("columns")
        columns[file.stem] = {
            c["name"]: c.get("type")
            for c in (cols if isinstance(cols, list) else [])
            if isinstance(c, Mapping) and isinstance(c.get("name"), str)
        }
    departments = _map_keys(platform_raw.get("departments"))
    domains_raw = platform_raw.get("domains")
    domains = (
        {k: v for k, v in domains_raw.items() if isinstance(v, list)}
        if isinstance(domains_raw, Mapping)
        else {}
    )
    ctx = rules.Context(
        departments=frozenset(departments),
        domains=domains,
        columns=columns,
        platform_ok=bool(platform_raw),
        unreadable=frozenset(unreadable),
    )

    datasets: dict[str, Dataset] = {}
    for file, parsed in raw_datasets:
        try:
            ds = Dataset.model_validate(parsed.data)
        except ValidationError as exc:
            problems.extend(_model_problems(file.name, exc, parsed))
        else:
            datasets[file.stem] = ds
        problems.extend(_attach(file.name, rules.check_dataset(parsed.data, file.stem, ctx), parsed))
    return _Result(_ordered(problems, [PLATFORM_FILE, *(f.name for f in files)]), platform, datasets)


def _ordered(problems: list[Problem], files: list[str]) -> list[Problem]:
    """Problems grouped by file (platform first, then datasets by name), each file by line."""
    rank = {name: i for i, name in enumerate(files)}
    return sorted(problems, key=lambda p: (rank.get(p.file, -1), p.line or 0))


def _map_keys(value: Any) -> list[str]:
    return [k for k in value if isinstance(k, str)] if isinstance(value, Mapping) else []


def check_policies(path: Path) -> list[Problem]:
    """Every problem in the policy directory ``path`` (empty when it is valid)."""
    return _read(Path(path)).problems


def load_policies(path: Path | None = None) -> Catalog:
    """Load and validate ``path`` (default: ``SANDBOX_POLICY_DIR``, i.e. ``Settings().policy_dir``).

    Raises ``PolicyError`` whose ``details["problems"]`` lists every problem as a string.
    """
    directory = Path(path) if path is not None else Settings().policy_dir
    result = _read(directory)
    if result.problems or result.platform is None:
        problems = [str(p) for p in result.problems] or ["platform.yaml: invalid"]
        raise PolicyError(
            f"The policies in {directory} have {len(problems)} problem(s): {problems[0]}"
            + (" ..." if len(problems) > 1 else ""),
            problems=problems,
        )
    platform = result.platform
    datasets = {ds_id: _resolve_domains(ds, platform) for ds_id, ds in sorted(result.datasets.items())}
    return Catalog(platform=platform, datasets=datasets, source=directory)


def _resolve_domains(ds: Dataset, platform: Platform) -> Dataset:
    columns: list[Column] = []
    for col in ds.columns:
        if isinstance(col.domain, str):
            col = col.model_copy(update={"domain": list(platform.domains[col.domain.removeprefix("@")])})
        columns.append(col)
    return ds.model_copy(update={"columns": columns})

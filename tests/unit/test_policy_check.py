"""check_policies reports every problem at once, as `file: dotted.path: message`."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.config import REPO_ROOT
from sandbox.policy.loader import check_policies
from sandbox.policy.rules import Problem

POLICY_DIR = REPO_ROOT / "policies"

Mutation = Callable[[dict[str, Any]], None]


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    copy = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, copy)
    return copy


def edit(directory: Path, file: str, change: Mutation) -> None:
    """Load a policy file, change the mapping, write it back (comments are lost, which is fine here)."""
    path = directory / file
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def col(data: dict[str, Any], name: str) -> dict[str, Any]:
    for column in data["columns"]:
        if column["name"] == name:
            return column  # type: ignore[no-any-return]
    raise KeyError(name)


def index(data: dict[str, Any], name: str) -> int:
    return [c["name"] for c in data["columns"]].index(name)


def rendered(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems]


def test_committed_policies_have_no_problems() -> None:
    assert check_policies(POLICY_DIR) == []


def test_problem_renders_file_path_message_and_line() -> None:
    assert str(Problem("a.yaml", "columns.3.bounds", "bad")) == "a.yaml: columns.3.bounds: bad"
    assert str(Problem("a.yaml", "", "bad", 4)) == "a.yaml: bad (line 4)"


def test_three_faults_in_one_file_are_all_reported(policies: Path) -> None:
    """Acceptance: unknown key + inverted bounds + privacy unit not a column, one run."""

    def change(d: dict[str, Any]) -> None:
        d["colour"] = "blue"
        col(d, "vat_paid_wan")["bounds"] = {"lower": 50000, "upper": 0}
        d["privacy_unit"] = "enterprise"

    edit(policies, "enterprise_tax.yaml", change)
    problems = check_policies(policies)
    i = index(yaml.safe_load((policies / "enterprise_tax.yaml").read_text(encoding="utf-8")), "vat_paid_wan")
    assert {(p.file, p.path) for p in problems} == {
        ("enterprise_tax.yaml", "colour"),
        ("enterprise_tax.yaml", f"columns.{i}.bounds"),
        ("enterprise_tax.yaml", "privacy_unit"),
    }
    text = "\n".join(rendered(problems))
    assert "enterprise_tax.yaml: colour: unknown key" in text
    assert f"enterprise_tax.yaml: columns.{i}.bounds: lower (50000) must be below upper (0)" in text
    assert "enterprise_tax.yaml: privacy_unit: 'enterprise' is not a column" in text
    assert all(p.line is not None for p in problems)


def _drop(key: str) -> Mutation:
    return lambda d: d.pop(key)


def _set(key: str, value: Any) -> Mutation:
    return lambda d: d.__setitem__(key, value)


def _col_set(name: str, key: str, value: Any) -> Mutation:
    return lambda d: col(d, name).__setitem__(key, value)


def _col_drop(name: str, key: str) -> Mutation:
    return lambda d: col(d, name).pop(key)


def _duplicate_column(d: dict[str, Any]) -> None:
    d["columns"].append(dict(col(d, "tax_year")))


# (file, mutation, expected dotted path, expected message fragment). Column indexes are of the
# committed enterprise_tax.yaml: 0 uscc, 1 tax_year, 2 credit_grade, 3 vat_paid_wan, ...
SINGLE_FAULTS = {
    "unknown column key": (
        "enterprise_tax.yaml",
        _col_set("tax_year", "unit", "y"),
        "columns.1.unit",
        "unknown key",
    ),
    "wrong type": (
        "enterprise_tax.yaml",
        _col_set("tax_year", "type", "int"),
        "columns.1.type",
        "Input should be",
    ),
    "missing required key": (
        "enterprise_tax.yaml",
        _drop("focus_area"),
        "focus_area",
        "required key is missing",
    ),
    "inverted bounds": (
        "enterprise_tax.yaml",
        _col_set("vat_paid_wan", "bounds", {"lower": 10, "upper": 1}),
        "columns.3.bounds",
        "lower (10) must be below upper (1)",
    ),
    "privacy unit not a column": (
        "enterprise_tax.yaml",
        _set("privacy_unit", "ent"),
        "privacy_unit",
        "not a column",
    ),
    "bound missing": (
        "enterprise_tax.yaml",
        _drop("max_rows_per_unit"),
        "max_rows_per_unit",
        "required when",
    ),
    "non-open without unit": (
        "taxi_trips.yaml",
        lambda d: (d.pop("privacy_unit"), d.pop("max_rows_per_unit")),
        "privacy_unit",
        "needs a privacy unit",
    ),
    "numeric without bounds": (
        "enterprise_tax.yaml",
        _col_drop("cit_paid_wan", "bounds"),
        "columns.4.bounds",
        "needs",
    ),
    "numeric without precision": (
        "enterprise_tax.yaml",
        _col_drop("cit_paid_wan", "precision"),
        "columns.4.precision",
        "needs a precision",
    ),
    "empty domain": (
        "enterprise_tax.yaml",
        _col_set("credit_grade", "domain", []),
        "columns.2.domain",
        "empty",
    ),
    "unknown shared domain": (
        "enterprise_tax.yaml",
        _col_set("credit_grade", "domain", "@grades"),
        "columns.2.domain",
        "unknown shared domain '@grades'",
    ),
    "category without domain": (
        "enterprise_tax.yaml",
        _col_drop("credit_grade", "domain"),
        "columns.2.domain",
        "needs",
    ),
    "domain value of wrong type": (
        "enterprise_tax.yaml",
        _col_set("tax_year", "domain", [2016, "2017"]),
        "columns.1.domain.1",
        "does not fit a integer column",
    ),
    "domain not a list": (
        "enterprise_tax.yaml",
        _col_set("credit_grade", "domain", {"a": 1}),
        "columns.2.domain",
        "valid list",
    ),
    "bins not ascending": (
        "enterprise_tax.yaml",
        _col_set("vat_paid_wan", "bins", [0, 100, 10]),
        "columns.3.bins",
        "strictly ascending",
    ),
    "bins outside bounds": (
        "enterprise_tax.yaml",
        _col_set("vat_paid_wan", "bins", [0, 100, 90000]),
        "columns.3.bins",
        "within the bounds",
    ),
    "unknown provider": (
        "enterprise_tax.yaml",
        _set("provider", ["tax_office"]),
        "provider.0",
        "unknown department",
    ),
    "reference to unknown dataset": (
        "enterprise_tax.yaml",
        _col_set("uscc", "references", "registry.uscc"),
        "columns.0.references",
        "unknown dataset 'registry'",
    ),
    "reference to unknown column": (
        "enterprise_tax.yaml",
        _col_set("uscc", "references", "enterprise_registry.code"),
        "columns.0.references",
        "has no column 'code'",
    ),
    "reference of incompatible type": (
        "enterprise_tax.yaml",
        _col_set("tax_year", "references", "enterprise_registry.uscc"),
        "columns.1.references",
        "does not match",
    ),
    "file name differs from id": (
        "enterprise_tax.yaml",
        _set("id", "tax"),
        "id",
        "does not match the file name",
    ),
    "duplicate column": (
        "enterprise_tax.yaml",
        _duplicate_column,
        "columns.8.name",
        "duplicate column 'tax_year'",
    ),
    "important data refused": ("enterprise_tax.yaml", _set("grade", "重要数据"), "grade", "SR-04"),
    "core data refused": ("hotel_stays.yaml", _set("grade", "核心数据"), "grade", "SR-04"),
    "tier contradicts source tier": (
        "taxi_trips.yaml",
        _set("tier", "open"),
        "tier",
        "maps to tier 'conditional'",
    ),
    "conditions missing": ("taxi_trips.yaml", _set("conditions", ""), "conditions", "SR-11"),
    "unknown PI category": (
        "outpatient_visits.yaml",
        _col_set("dept", "pi_category", "健康"),
        "columns.6.pi_category",
        "unknown PI category",
    ),
    "budget caps out of order": (
        "transit_trips.yaml",
        lambda d: d["budgets"].__setitem__("per_user", 5.0),
        "budgets.per_user",
        "must not exceed per_project",
    ),
    "unit column nullable": (
        "taxi_trips.yaml",
        _col_set("vehicle_pseudo", "nullable", True),
        "privacy_unit",
        "must not be nullable",
    ),
    "bounds on a category": (
        "enterprise_tax.yaml",
        _col_set("credit_grade", "bounds", {"lower": 0, "upper": 1}),
        "columns.2.bounds",
        "only numeric columns",
    ),
    "query window column not a column": (
        "transit_trips.yaml",
        lambda d: d["query_window"].__setitem__("column", "trip_date"),
        "query_window.column",
        "'trip_date' is not a column",
    ),
    "query window on a non-temporal column": (
        "transit_trips.yaml",
        lambda d: d["query_window"].__setitem__("column", "mode"),
        "query_window.column",
        "needs a date or timestamp column",
    ),
    "query window on an identifier": (
        "transit_trips.yaml",
        _col_set("txn_time", "role", "identifier"),
        "query_window.column",
        "identifier column",
    ),
    "query window of zero days": (
        "transit_trips.yaml",
        lambda d: d["query_window"].__setitem__("max_days", 0),
        "query_window.max_days",
        "greater than or equal to 1",
    ),
    "query window unknown key": (
        "transit_trips.yaml",
        lambda d: d["query_window"].__setitem__("days", 31),
        "query_window.days",
        "unknown key",
    ),
    "query window without privacy unit": (
        "venue_daily_visitors.yaml",
        _set("query_window", {"column": "date", "max_days": 31}),
        "query_window",
        "only together with privacy_unit",
    ),
    "cube dimension not a column": (
        "road_accidents.yaml",
        _set("cube_dimensions", ["severity", "hours"]),
        "cube_dimensions.1",
        "'hours' is not a column of this dataset; columns that can be dimensions: hour, district_code",
    ),
    "cube dimension without a public domain": (
        "road_accidents.yaml",
        _set("cube_dimensions", ["severity", "injured"]),
        "cube_dimensions.1",
        "'injured' has no public domain, so it cannot be a cube dimension; give the column a domain",
    ),
    "cube dimension on a date": (
        "road_accidents.yaml",
        _set("cube_dimensions", ["date"]),
        "cube_dimensions.0",
        "'date' has no public domain, so it cannot be a cube dimension; leave it out;",
    ),
    "cube dimension is the privacy unit": (
        "road_accidents.yaml",
        _set("cube_dimensions", ["hour", "accident_id"]),
        "cube_dimensions.1",
        "'accident_id' is the privacy unit, which can never be a grouping key",
    ),
    "cube dimension is an identifier": (
        "road_accidents.yaml",
        _col_set("severity", "role", "identifier"),
        "cube_dimensions.0",
        "'severity' is an identifier column, which can never be a grouping key",
    ),
    "cube dimension listed twice": (
        "road_accidents.yaml",
        _set("cube_dimensions", ["hour", "severity", "hour"]),
        "cube_dimensions.2",
        "'hour' is listed twice (also cube_dimensions.0)",
    ),
    "cube above the cell limit": (
        "road_accidents.yaml",
        _set("cube_dimensions", ["hour", "district_code", "road_class", "weather", "severity"]),
        "cube_dimensions",
        "has up to 76,500 cells (25 × 17 × 6 × 6 × 5: each domain's size + 1 for NULL or values outside "
        "it), above the limit of 50,000; drop a dimension",
    ),
    "cube dimensions not a list": (
        "road_accidents.yaml",
        _set("cube_dimensions", "hour"),
        "cube_dimensions",
        "valid list",
    ),
    "cube dimensions without privacy unit": (
        "venues.yaml",
        _set("cube_dimensions", ["district_code"]),
        "cube_dimensions",
        "set only together with privacy_unit",
    ),
    "unknown citation placeholder": (
        "platform.yaml",
        lambda d: d.__setitem__("citation", d["citation"] + "{user}"),
        "citation",
        "unknown placeholder {user}",
    ),
    "unknown key in a department": (
        "platform.yaml",
        lambda d: d["departments"]["tax_bureau"].__setitem__("nme", "x"),
        "departments.tax_bureau.nme",
        "unknown key",
    ),
    "unknown tier": (
        "platform.yaml",
        lambda d: d["tiers"].__setitem__("closed", d["tiers"]["open"]),
        "tiers.closed",
        "Input should be",
    ),
    "default epsilon above per-query max": (
        "platform.yaml",
        lambda d: d["defaults"].__setitem__("default_query_epsilon", 2.0),
        "defaults.default_query_epsilon",
        "exceeds",
    ),
    "budget alias key": (
        "platform.yaml",
        lambda d: d["defaults"]["budgets"].pop("global"),
        "defaults.budgets.global",
        "required key is missing",
    ),
}


@pytest.mark.parametrize("case", sorted(SINGLE_FAULTS))
def test_single_fault_is_reported_with_file_and_path(policies: Path, case: str) -> None:
    file, change, path, fragment = SINGLE_FAULTS[case]
    edit(policies, file, change)
    problems = check_policies(policies)
    assert problems, case
    assert all(p.file == file for p in problems), rendered(problems)
    assert path in [p.path for p in problems], rendered(problems)
    matching = [p for p in problems if p.path == path]
    assert any(fragment in p.message for p in matching), rendered(problems)
    if case not in MULTIPLE:
        assert len(problems) == 1, rendered(problems)  # one fault, one line: no follow-on noise


# Faults that legitimately break more than one rule.
MULTIPLE = {"default epsilon above per-query max"}  # exceeds both default budget sets


def test_yaml_syntax_error_names_the_line(policies: Path) -> None:
    path = policies / "venues.yaml"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.insert(5, "summary: [unclosed")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    problems = check_policies(policies)
    assert [p.file for p in problems] == ["venues.yaml"]
    assert "YAML syntax error" in problems[0].message
    assert problems[0].line is not None and problems[0].line >= 6


def test_reference_into_an_unparsable_file_is_not_reported_twice(policies: Path) -> None:
    (policies / "venues.yaml").write_text("id: [\n", encoding="utf-8")
    problems = check_policies(policies)
    assert {p.file for p in problems} == {"venues.yaml"}


def test_duplicate_yaml_key_is_reported(policies: Path) -> None:
    path = policies / "penalties.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "tier: open\n", encoding="utf-8")
    problems = check_policies(policies)
    assert any(p.path == "tier" and "duplicate key" in p.message for p in problems), rendered(problems)


def test_non_mapping_and_empty_files(policies: Path) -> None:
    (policies / "venues.yaml").write_text("- a\n- b\n", encoding="utf-8")
    (policies / "hotel_stays.yaml").write_text("# nothing\n", encoding="utf-8")
    problems = rendered(check_policies(policies))
    assert "venues.yaml: top level must be a mapping (line 1)" in problems
    assert "hotel_stays.yaml: file is empty (line 1)" in problems


def test_missing_platform_file_and_empty_directory(policies: Path, tmp_path: Path) -> None:
    (policies / "platform.yaml").unlink()
    problems = check_policies(policies)
    assert any(p.file == "platform.yaml" and "not found" in p.message for p in problems)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert any("no dataset files" in p.message for p in check_policies(empty))


def test_problems_in_several_files_are_grouped_by_file(policies: Path) -> None:
    edit(policies, "venues.yaml", _set("tier", "closed"))
    edit(policies, "enterprise_tax.yaml", _set("source_tier", "T9"))
    edit(policies, "platform.yaml", lambda d: d.__setitem__("extra", 1))
    problems = check_policies(policies)
    files = [p.file for p in problems]
    assert sorted(set(files), key=files.index) == ["platform.yaml", "enterprise_tax.yaml", "venues.yaml"]
    assert len(problems) == 3, rendered(problems)  # an invalid value is reported once, by the model


def test_cube_dimensions_rules_name_the_dataset_field_and_column(policies: Path) -> None:
    edit(policies, "road_accidents.yaml", _set("cube_dimensions", ["severity", "injured"]))
    assert rendered(check_policies(policies)) == [
        "road_accidents.yaml: cube_dimensions.1: 'injured' has no public domain, so it cannot be a cube "
        "dimension; give the column a domain or leave it out; columns that can be dimensions: hour, "
        "district_code, road_class, weather, severity, vehicles, primary_party (line 23)"
    ]


@pytest.mark.parametrize(
    ("file", "dims"),
    [
        ("road_accidents.yaml", []),  # no cube
        ("penalties.yaml", ["closed"]),  # a boolean without a domain (False, True)
        ("outpatient_visits.yaml", ["residence_district", "sex"]),  # shared domains ('@name')
        ("road_accidents.yaml", ["hour", "district_code", "road_class", "weather"]),  # 15,300 cells
    ],
)
def test_valid_cube_dimensions_pass(policies: Path, file: str, dims: list[str]) -> None:
    edit(policies, file, _set("cube_dimensions", dims))
    assert check_policies(policies) == []


@pytest.mark.parametrize(("values", "ok"), [(49_999, True), (50_000, False)])
def test_cube_cell_limit_counts_each_domain_plus_one(policies: Path, values: int, ok: bool) -> None:
    """A domain of 49,999 values makes 50,000 cells with the NULL/other slot: at the limit."""

    def change(d: dict[str, Any]) -> None:
        col(d, "weather")["domain"] = [f"w{i}" for i in range(values)]
        d["cube_dimensions"] = ["weather"]

    edit(policies, "road_accidents.yaml", change)
    problems = rendered(check_policies(policies))
    if ok:
        assert problems == []
    else:
        assert len(problems) == 1 and "up to 50,001 cells" in problems[0], problems
        assert problems[0].startswith("road_accidents.yaml: cube_dimensions: the cube over weather")

"""policies/schema.json is generated from the models and kept in sync."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from sandbox.config import REPO_ROOT
from sandbox.policy.schema import SCHEMA_FILE, policy_schema, schema_text

POLICY_DIR = REPO_ROOT / "policies"


def test_committed_schema_matches_the_models() -> None:
    committed = (POLICY_DIR / SCHEMA_FILE).read_text(encoding="utf-8")
    assert committed == schema_text(), "run `sandbox policy schema` and commit policies/schema.json"


def test_schema_has_platform_and_dataset_definitions() -> None:
    schema = policy_schema()
    assert {"Platform", "Dataset", "Column", "Budgets"} <= set(schema["$defs"])
    assert schema["$defs"]["Dataset"]["additionalProperties"] is False
    # Budgets use the YAML key `global`, not the Python name.
    assert "global" in schema["$defs"]["Budgets"]["properties"]
    text = json.dumps(schema)
    for python_name in ('"gt"', '"ge"', '"lt"', '"le"'):
        assert python_name not in text


@pytest.mark.parametrize("path", sorted(POLICY_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_policy_file_validates_against_the_schema(path: Path) -> None:
    schema = policy_schema()
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(data)


def test_schema_rejects_an_unknown_key() -> None:
    data = yaml.safe_load((POLICY_DIR / "venues.yaml").read_text(encoding="utf-8"))
    data["colour"] = "blue"
    assert not jsonschema.Draft202012Validator(policy_schema()).is_valid(data)

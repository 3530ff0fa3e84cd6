"""The opening list (开放清单, SR-01) as rows, for ``sandbox catalog`` (CSV or JSON).

Pure: builds rows from a :class:`~sandbox.policy.loader.Catalog`; the CLI writes them.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from sandbox.policy.loader import Catalog

# Column order of the CSV (the JSON objects use the same keys).
FIELDS = (
    "id",
    "name_zh",
    "name_en",
    "provider",
    "provider_zh",
    "focus_area",
    "tier",
    "tier_zh",
    "source_tier",
    "grade",
    "grade_level",
    "privacy_unit",
    "max_rows_per_unit",
    "mechanism",
    "per_query_max",
    "per_user",
    "per_project",
    "global",
    "update_frequency",
    "columns",
    "conditions",
    "summary",
    "synthetic",
)


def opening_list(catalog: Catalog) -> list[dict[str, Any]]:
    """One row per dataset, with the fields SR-01 asks for (lists stay lists)."""
    rows: list[dict[str, Any]] = []
    for ds in catalog.datasets.values():
        tier = catalog.platform.tiers[ds.tier]
        budgets = catalog.budgets(ds.id)
        dp = tier.dp_required
        rows.append(
            {
                "id": ds.id,
                "name_zh": ds.name.zh,
                "name_en": ds.name.en,
                "provider": list(ds.provider),
                "provider_zh": [catalog.department(p).name.zh for p in ds.provider],
                "focus_area": ds.focus_area.value,
                "tier": ds.tier.value,
                "tier_zh": tier.name.zh,
                "source_tier": ds.source_tier,
                "grade": ds.grade,
                "grade_level": ds.grade_level,
                "privacy_unit": ds.privacy_unit,
                "max_rows_per_unit": ds.max_rows_per_unit,
                "mechanism": ds.mechanism.value if dp else None,
                "per_query_max": str(budgets.per_query_max) if dp else None,
                "per_user": str(budgets.per_user) if dp else None,
                "per_project": str(budgets.per_project) if dp else None,
                "global": str(budgets.global_cap) if dp else None,
                "update_frequency": ds.update_frequency,
                "columns": ds.column_names,
                "conditions": ds.conditions,
                "summary": ds.summary,
                "synthetic": ds.synthetic,
            }
        )
    return rows


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, ensure_ascii=False, indent=2) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    """UTF-8 CSV (SR-09); lists are joined with ';', missing values are empty."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row[k]) for k in FIELDS})
    return buf.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

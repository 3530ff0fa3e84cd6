"""Compare a migrated control DB with the models, one area's tables at a time."""

from __future__ import annotations

from collections.abc import Collection

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from sandbox.control.models import Base


def schema_diff(engine: Engine, tables: Collection[str]) -> list[object]:
    """Differences (types compared) between ``tables`` in the DB and ``Base.metadata``; other tables ignored.

    Import the models module of the area first, so its tables are registered on ``Base``.
    """

    def include(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
        if type_ == "table":
            return name in tables
        table = getattr(obj, "table", None)
        return table is None or table.name in tables

    opts = {"compare_type": True, "include_object": include}
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn, opts=opts), Base.metadata))

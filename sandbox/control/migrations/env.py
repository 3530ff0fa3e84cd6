"""Alembic environment for the control DB.

Programmatic use (``sandbox.control.db.migrate``) passes an open connection in
``config.attributes["connection"]``. From the command line
(``alembic -c sandbox/control/alembic.ini upgrade head``) the URL comes from
``-x url=...``, else ``SANDBOX_CONTROL_DB_URL`` / the default data dir.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from sandbox.control.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # ALTER TABLE via copy on SQLite
        transactional_ddl=True,  # SQLAlchemy emits BEGIN on SQLite too (see db.make_engine)
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    if url:
        return str(url)
    from sandbox.config import get_settings

    return get_settings().control_db_url


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from sandbox.control.db import make_engine

    engine = make_engine(_url())
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()

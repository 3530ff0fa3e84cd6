"""A time limit on one warehouse statement, the same on DuckDB, SQLite and PostgreSQL.

A DP query holds a budget reservation while its statement runs; the ledger's sweep takes a
reservation older than ``sandbox.ledger.store.ABANDON_AFTER`` (15 minutes) for abandoned, and
a query that outlives it loses its result (never its charge). The query service therefore
runs every statement under :func:`statement_deadline`, far below that cut-off
(``SANDBOX_QUERY_TIMEOUT``, 300 s by default, at most 600 s: ``sandbox.config``).

* PostgreSQL: ``SET LOCAL statement_timeout`` in the statement's transaction; the server
  cancels the statement (SQLSTATE ``57014``) and the setting ends with the transaction.
* DuckDB and SQLite (embedded, in this process): a timer thread calls the driver's
  ``interrupt()`` on the connection at the deadline.

Either way the statement fails with the driver's error, and :meth:`Deadline.expired` tells the
caller that the deadline (not a bug) stopped it. An embedded connection that was interrupted is
invalidated (closed, not returned to the pool).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from sandbox.config import DEFAULT_QUERY_TIMEOUT, MAX_QUERY_TIMEOUT

__all__ = ["DEFAULT_QUERY_TIMEOUT", "MAX_QUERY_TIMEOUT", "Deadline", "statement_deadline"]

_PG_QUERY_CANCELED = "57014"


@dataclass
class Deadline:
    seconds: float
    _fired: threading.Event = field(default_factory=threading.Event)
    _postgres: bool = False

    def expired(self, err: BaseException | None = None) -> bool:
        """Did the deadline stop the statement that raised ``err``?"""
        if self._fired.is_set():
            return True
        if self._postgres and err is not None:
            orig = getattr(err, "orig", err)
            return getattr(orig, "sqlstate", None) == _PG_QUERY_CANCELED
        return False


def _interrupt(raw: Any, fired: threading.Event) -> None:
    fired.set()
    raw.interrupt()  # duckdb.DuckDBPyConnection.interrupt / sqlite3.Connection.interrupt


@contextmanager
def statement_deadline(conn: Connection, seconds: float) -> Iterator[Deadline]:
    """Run the statements of the ``with`` block under a limit of ``seconds`` (wall clock)."""
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_QUERY_TIMEOUT):
        raise ValueError(f"a statement deadline must be in (0, {MAX_QUERY_TIMEOUT:g}] s, got {seconds!r}")
    dialect = conn.dialect.name
    if dialect == "postgresql":
        deadline = Deadline(seconds, _postgres=True)
        # an integer the sandbox computed, not user input; SET cannot take a bound parameter
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, math.ceil(seconds * 1000))}")
        yield deadline
        return
    deadline = Deadline(seconds)
    raw = conn.connection.dbapi_connection
    timer = threading.Timer(seconds, _interrupt, (raw, deadline._fired))
    timer.daemon = True
    timer.start()
    try:
        yield deadline
    finally:
        timer.cancel()
        timer.join()
        if deadline._fired.is_set():
            # an interrupt that lands between statements could stop the connection's next one:
            # drop the connection rather than return it to the pool
            with suppress(Exception):
                conn.invalidate()

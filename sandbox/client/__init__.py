"""Notebook client for the sandbox gateway: httpx + pandas only, no server imports.

    import sandbox
    sb = sandbox.connect()                  # $SANDBOX_GATEWAY_URL, $JUPYTERHUB_API_TOKEN, $SANDBOX_PROJECT
    sb.catalog()
    r = sb.query("SELECT district_code, COUNT(*) FROM enterprise_tax GROUP BY district_code", epsilon=0.5)
    r.df, r.ci95, r.plot()

See docs/client.md.
"""

from __future__ import annotations

from sandbox.client.builder import bin_, col, count, count_distinct, mean, median, quantile, sum_, table
from sandbox.client.results import DatasetDescription, PreviewResult, QueryResult
from sandbox.client.session import Sandbox, Table, connect
from sandbox.client.transport import GatewayUnreachable

__all__ = [
    "DatasetDescription",
    "GatewayUnreachable",
    "PreviewResult",
    "QueryResult",
    "Sandbox",
    "Table",
    "bin_",
    "col",
    "connect",
    "count",
    "count_distinct",
    "mean",
    "median",
    "quantile",
    "sum_",
    "table",
]

"""``sb = sandbox.connect()``: the notebook's handle on the gateway.

Everything goes over HTTP to the gateway with the kernel's hub token; this module
never touches a database, a policy file or OpenDP.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import unquote

import httpx
import pandas as pd

from sandbox.client.builder import Query
from sandbox.client.results import DatasetDescription, PreviewResult, QueryResult
from sandbox.client.transport import DEFAULT_TIMEOUT, Transport
from sandbox.errors import InternalError, UnknownDataset

_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
CATALOG_COLUMNS = ["id", "name_zh", "name_en", "tier", "provider", "focus_area"]
BUDGET_COLUMNS = [
    "project",
    "dataset",
    "user_spent",
    "user_remaining",
    "project_spent",
    "project_remaining",
    "available",
    "per_query_max",
]

QueryLike = str | Query
ExportSource: TypeAlias = str | os.PathLike[str] | QueryResult | pd.DataFrame
CHECK_COLUMNS = ["check", "verdict", "reason"]
Epsilon = float | int | str | Decimal


def _query_text(query: QueryLike) -> str:
    if isinstance(query, Query):
        return query.to_sql()
    if isinstance(query, str):
        return query
    raise TypeError("Pass SQL text or a builder query (sandbox.client.builder.table(...)).")


def _epsilon(value: Epsilon | None) -> str | None:
    """Epsilon goes on the wire as an exact decimal string (never a binary float sum)."""
    if value is None:
        return None
    if isinstance(value, float):
        return repr(value)
    return str(value)


class Table:
    """An open-tier dataset's rows, fetched page by page (``sb.table(name).to_pandas()``)."""

    def __init__(self, transport: Transport, dataset: str) -> None:
        self._transport = transport
        self.dataset = dataset

    def __repr__(self) -> str:
        return f"<Table {self.dataset}>"

    def pages(self, page_size: int = 5000, max_rows: int | None = None) -> Iterator[pd.DataFrame]:
        offset = 0
        fetched = 0
        while True:
            limit = page_size if max_rows is None else min(page_size, max_rows - fetched)
            if limit <= 0:
                return
            page = self._transport.get(f"datasets/{self.dataset}/rows", offset=offset, limit=limit)
            frame = pd.DataFrame(page["rows"], columns=page["columns"])
            if frame.empty and offset > 0:
                return
            fetched += len(frame)
            yield frame
            next_offset = page.get("next_offset")
            if next_offset is None:
                return
            offset = int(next_offset)

    def to_pandas(self, page_size: int = 5000, max_rows: int | None = None) -> pd.DataFrame:
        """All rows (or the first ``max_rows``) as one DataFrame; open-tier datasets only."""
        frames = list(self.pages(page_size=page_size, max_rows=max_rows))
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        df.attrs.update({"dataset": self.dataset, "tier": "open"})
        return df


class Sandbox:
    """The notebook handle returned by :func:`sandbox.connect`."""

    def __init__(self, transport: Transport, *, project: str | None = None) -> None:
        self._transport = transport
        self.project = project

    def __repr__(self) -> str:
        return f"<Sandbox gateway={self._transport.base_url!r} project={self.project!r}>"

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _project(self, project: str | None) -> str | None:
        return project or self.project

    # -- who and what ------------------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        """Your name, role, status and projects as the sandbox's registry knows them."""
        result: dict[str, Any] = self._transport.get("whoami")
        return result

    def catalog(self) -> pd.DataFrame:
        """Every dataset in the catalogue: id, names, tier, provider and focus area."""
        data = self._transport.get("catalog")
        rows = [
            {
                "id": d["id"],
                "name_zh": d["name_zh"],
                "name_en": d["name_en"],
                "tier": d["tier"],
                "provider": ", ".join(d.get("provider_names") or d.get("provider") or []),
                "focus_area": d["focus_area"],
            }
            for d in data["datasets"]
        ]
        return pd.DataFrame(rows, columns=CATALOG_COLUMNS)

    def _resolve(self, name: str) -> str:
        """A dataset id from an id or an exact Chinese/English name."""
        data = self._transport.get("catalog")
        wanted = name.strip().casefold()
        for d in data["datasets"]:
            if wanted in (
                str(d["id"]).casefold(),
                str(d["name_zh"]).casefold(),
                str(d["name_en"]).casefold(),
            ):
                return str(d["id"])
        raise UnknownDataset(f"No dataset is called {name!r}.")

    def describe(self, name: str) -> DatasetDescription:
        """Public metadata of a dataset (by id or by its Chinese or English name)."""
        if _ID_RE.match(name):
            try:
                return DatasetDescription(self._transport.get(f"datasets/{name}"))
            except UnknownDataset:
                pass
        return DatasetDescription(self._transport.get(f"datasets/{self._resolve(name)}"))

    # -- DP queries ----------------------------------------------------------------------

    def _query_body(self, query: QueryLike, epsilon: Epsilon | None, project: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"sql": _query_text(query), "project": self._project(project)}
        eps = _epsilon(epsilon)
        if eps is not None:
            body["epsilon"] = eps
        return body

    def query(
        self, query: QueryLike, *, epsilon: Epsilon | None = None, project: str | None = None
    ) -> QueryResult:
        """Run a DP query; spends ``epsilon`` from the project's budget (repeats are free)."""
        return QueryResult(self._transport.post("query", self._query_body(query, epsilon, project)))

    def preview(
        self, query: QueryLike, *, epsilon: Epsilon | None = None, project: str | None = None
    ) -> PreviewResult:
        """Expected 95% accuracy and cost of a query, without spending anything."""
        return PreviewResult(self._transport.post("preview", self._query_body(query, epsilon, project)))

    def budget(self, project: str | None = None) -> pd.DataFrame:
        """Spent and remaining budget per dataset (one project, or all of yours)."""
        data = self._transport.get("budget", project=self._project(project))
        return pd.DataFrame(data["budgets"], columns=BUDGET_COLUMNS)

    # -- open data -----------------------------------------------------------------------

    def table(self, name: str) -> Table:
        """Rows of an open-tier dataset: ``sb.table("x").to_pandas()``."""
        return Table(self._transport, name if _ID_RE.match(name) else self._resolve(name))

    # -- export gate ---------------------------------------------------------------------

    def _export_form(self, project: str | None, datasets: list[str] | None) -> dict[str, str]:
        form: dict[str, str] = {}
        proj = self._project(project)
        if proj:
            form["project"] = proj
        if datasets:
            form["datasets"] = ",".join(datasets)
        return form

    def export(
        self,
        source: ExportSource,
        *,
        purpose: str,
        description: str = "",
        project: str | None = None,
        filename: str | None = None,
        datasets: list[str] | None = None,
    ) -> dict[str, Any]:
        """Ask for a file, a DataFrame or a DP release to leave the sandbox.

        The gateway quarantines it, runs the automatic checks, and stewards review it.
        Returns the request (``id``, ``status``, ``checks``, ...); follow it with
        ``sb.check_export(id)``. Run ``sb.check_export(source)`` first to see the checks
        without submitting.
        """
        name, data, content_type = _export_file(source, filename)
        form = {"purpose": purpose, "description": description, **self._export_form(project, datasets)}
        response = self._transport.request(
            "POST", "exports", data=form, files={"file": (name, data, content_type)}
        )
        result: dict[str, Any] = response.json()
        return result

    def export_status(self, export_id: int) -> dict[str, Any]:
        """One export request: status, checks, reviews, decision."""
        result: dict[str, Any] = self._transport.get(f"exports/{int(export_id)}")
        return result

    def check_export(
        self,
        source: int | ExportSource,
        *,
        project: str | None = None,
        filename: str | None = None,
        datasets: list[str] | None = None,
    ) -> pd.DataFrame:
        """The export gate's automatic checks as a DataFrame (check, verdict, reason).

        Given a file, a DataFrame or a DP release, this is a dry run **before** submitting:
        the gateway runs the checks ``sb.export`` would run, with your project's context
        (its DP releases, the datasets' tiers and thresholds), and stores no file (the audit log
        records the check: hash and verdicts, not the contents). ``.attrs``
        holds the overall ``verdict`` and the ``outcome`` a submission would get (rejected,
        approved, under_review). Given an export id (an int), the checks of that request,
        with its ``status`` in ``.attrs``.
        """
        if isinstance(source, int) and not isinstance(source, bool):
            record = self.export_status(source)
            df = pd.DataFrame(record.get("checks") or [], columns=CHECK_COLUMNS)
            df.attrs.update({"export_id": record.get("id"), "status": record.get("status")})
            return df
        name, data, content_type = _export_file(source, filename)
        response = self._transport.request(
            "POST",
            "exports/check",
            data=self._export_form(project, datasets),
            files={"file": (name, data, content_type)},
        )
        body: dict[str, Any] = response.json()
        rows = [{"check": c["name"], "verdict": c["verdict"], "reason": c["reason"]} for c in body["checks"]]
        df = pd.DataFrame(rows, columns=CHECK_COLUMNS)
        df.attrs.update({k: v for k, v in body.items() if k != "checks"})
        return df

    def download_export(
        self, export_id: int, path: str | os.PathLike[str] = ".", *, manifest: bool = True
    ) -> Path:
        """Save an approved export to ``path`` (a file, or a folder for the file's own name).

        The first download releases the request. The bytes are checked against the SHA-256
        the gate re-checked, written atomically, and the manifest (sources, DP releases,
        reviewers, citation) goes beside them as ``<file>.manifest.json``. A request that is
        not approved raises ``InvalidTransition`` and nothing is written.
        """
        export_id = int(export_id)
        response = self._transport.request(
            "GET",
            f"exports/{export_id}/download",
            headers={"Accept": "application/octet-stream, application/json"},
        )
        data = response.content
        expected = response.headers.get("x-export-sha256", "")
        if hashlib.sha256(data).hexdigest() != expected.lower():
            raise InternalError(
                f"The file of export request {export_id} arrived damaged (SHA-256 mismatch).",
                hint="Download it again; if this repeats, tell the platform operator.",
            )
        target = Path(path)
        if target.is_dir():
            target = target / _download_name(response.headers.get("content-disposition", ""), export_id)
        _write_atomic(target, data)
        if manifest:
            text = json.dumps(self.export_manifest(export_id), ensure_ascii=False, indent=2, sort_keys=True)
            _write_atomic(target.with_name(target.name + ".manifest.json"), (text + "\n").encode("utf-8"))
        return target

    def export_manifest(self, export_id: int) -> dict[str, Any]:
        """The manifest of a released export: sources (zh/en, providers, tier, 获取日期), DP releases
        with epsilon, checks, reviewers, SHA-256, and the citation to show with the file (SR-27)."""
        result: dict[str, Any] = self._transport.get(f"exports/{int(export_id)}/manifest")
        return result

    # -- enterprise authorisation (SR-16) -------------------------------------------------

    def lookup(self, dataset: str, *, uscc: str) -> pd.DataFrame:
        """Rows of ONE enterprise that has authorised your bank for ``dataset`` (bank analysts).

        Refused (``consent_required``) without an active authorisation; every look-up is an
        audit entry the enterprise can see. Population-level questions still go through DP.
        """
        data = self._transport.post("lookup", {"dataset": dataset, "uscc": uscc})
        frame = pd.DataFrame(data["rows"], columns=data["columns"])
        frame.attrs.update(
            {"dataset": data["dataset"], "consent_id": data["consent_id"], "truncated": data["truncated"]}
        )
        return frame

    def exports(self) -> pd.DataFrame:
        """Your export requests (and your projects'), newest first."""
        data = self._transport.get("exports")
        return pd.DataFrame(
            data["exports"],
            columns=["id", "status", "filename", "project", "tier", "purpose", "created_at", "sha256"],
        )


def _export_file(source: ExportSource, filename: str | None) -> tuple[str, bytes, str]:
    """File name, bytes and content type of what is exported (releases and frames as CSV)."""
    if isinstance(source, QueryResult):
        return filename or f"release-{source.release_id}.csv", _csv(source.df), "text/csv"
    if isinstance(source, pd.DataFrame):
        release = source.attrs.get("release_id")
        default = f"release-{release}.csv" if release else "table.csv"
        return filename or default, _csv(source), "text/csv"
    path = Path(source)
    return filename or path.name, path.read_bytes(), "application/octet-stream"


def _download_name(disposition: str, export_id: int) -> str:
    """The file name a download announced (``filename*=UTF-8''...`` first), reduced to a safe base name."""
    name = ""
    for part in disposition.split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "filename*" and value.lower().startswith("utf-8''"):
            name = unquote(value[7:])
            break
        if key.lower() == "filename" and not name:
            name = value.strip('"')
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name if name not in ("", ".", "..") else f"export-{export_id}"


def _write_atomic(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _csv(frame: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    return buf.getvalue().encode("utf-8")


def connect(
    url: str | None = None,
    token: str | None = None,
    *,
    project: str | None = None,
    timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
    http: httpx.Client | None = None,
) -> Sandbox:
    """Connect to the sandbox gateway from a notebook kernel.

    ``url`` defaults to ``$SANDBOX_GATEWAY_URL``, ``token`` to ``$JUPYTERHUB_API_TOKEN`` and
    ``project`` to ``$SANDBOX_PROJECT``. Nothing is sent until the first call.
    """
    transport = Transport(url, token, timeout=timeout, http=http)
    return Sandbox(transport, project=project or os.environ.get("SANDBOX_PROJECT") or None)

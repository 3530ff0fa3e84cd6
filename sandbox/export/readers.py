"""Read an export file's bytes into tables and texts the checks can look at. Pure (in memory only).

Accepted: CSV/TSV, XLSX, JSON, PNG, PDF, TXT and Markdown. An unknown or
mismatched type, an empty file, a file over the size limit, text that is not
UTF-8, or a file that does not parse raises :class:`~sandbox.errors.ExportRejected`
with a hint saying what to do.

A PDF's text is read with pypdf and fed to the checks as a text file's is (one text per
page, plus metadata, annotations and form fields; pipe tables become tables). A PDF the
gate cannot read in full (encrypted, damaged, over :data:`MAX_PDF_PAGES` pages or
:data:`MAX_PDF_CHARS` characters of text, carrying attached files) is not refused: it gets
``ParsedFile.problems``, which fail the ``file_type`` check with what to do.
"""

from __future__ import annotations

import csv
import io
import json
import re
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePath
from typing import Any

from sandbox.errors import ExportRejected
from sandbox.export.tables import Table, cell_text, make_table


class FileKind(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"
    JSON = "json"
    PNG = "png"
    PDF = "pdf"
    TEXT = "text"
    MARKDOWN = "markdown"


EXTENSIONS: dict[str, FileKind] = {
    ".csv": FileKind.CSV,
    ".tsv": FileKind.CSV,
    ".xlsx": FileKind.XLSX,
    ".json": FileKind.JSON,
    ".png": FileKind.PNG,
    ".pdf": FileKind.PDF,
    ".txt": FileKind.TEXT,
    ".md": FileKind.MARKDOWN,
    ".markdown": FileKind.MARKDOWN,
}
_ACCEPTED = ", ".join(sorted(EXTENSIONS))
_CONVERT_HINTS = {
    ".xls": "Save it as .xlsx or CSV (UTF-8).",
    ".xlsm": "Macros cannot leave the sandbox; save the workbook as .xlsx without macros.",
    ".parquet": "Write the table as CSV (UTF-8) or .xlsx.",
    ".ipynb": "Export the tables (CSV) or figures (PNG/PDF) the notebook produced, not the notebook.",
    ".jpg": "Save figures as PNG or PDF.",
    ".jpeg": "Save figures as PNG or PDF.",
    ".svg": "Save figures as PNG or PDF.",
    ".zip": "Submit the files one by one; archives cannot be checked.",
}
MAGIC = {
    FileKind.XLSX: b"PK\x03\x04",
    FileKind.PNG: b"\x89PNG\r\n\x1a\n",
    FileKind.PDF: b"%PDF-",
}
_MAX_UNPACKED = 200_000_000  # XLSX (zip) members, in total: guards against zip bombs
_MAX_TEXT_CHUNK = 1_000_000
MAX_PDF_PAGES = 200  # pages whose text the gate reads; a longer PDF fails file_type
MAX_PDF_CHARS = 1_000_000  # characters of PDF text (pages, metadata, annotations) in total


@dataclass
class ParsedFile:
    kind: FileKind
    tables: list[Table] = field(default_factory=list)
    texts: list[tuple[str, str]] = field(default_factory=list)  # (text, location)
    notes: list[str] = field(default_factory=list)  # things a reviewer should know
    needs_human_look: bool = False
    human_look: str = ""  # why a person must look, when the reader knows better than its kind
    problems: list[str] = field(default_factory=list)  # why the gate cannot check all of it (fails)


def detect_kind(data: bytes, filename: str, *, max_bytes: int) -> FileKind:
    """Validate size and type (extension and content must agree)."""
    name = PurePath(filename).name or filename
    ext = PurePath(name).suffix.lower()
    if not data:
        raise ExportRejected(f"{name!r} is empty.", hint="Check the file was written before submitting it.")
    if len(data) > max_bytes:
        raise ExportRejected(
            f"{name!r} is {len(data):,} bytes; the export limit is {max_bytes:,} bytes.",
            hint="Export an aggregate table or a smaller figure; large files are usually row-level data.",
        )
    kind = EXTENSIONS.get(ext)
    if kind is None:
        extra = _CONVERT_HINTS.get(ext, "")
        raise ExportRejected(
            f"{name!r}: the export gate does not accept {ext or 'files without an extension'}.",
            hint=(extra + " " if extra else "") + f"Accepted types: {_ACCEPTED}.",
        )
    magic = MAGIC.get(kind)
    if magic is not None and not data.startswith(magic):
        raise ExportRejected(
            f"{name!r} is named {ext} but its content is not a {kind.value.upper()} file.",
            hint="Submit the file under its real type, saved by the program that made it.",
        )
    if magic is None and any(data.startswith(m) for m in MAGIC.values()):
        raise ExportRejected(
            f"{name!r} is named {ext} but holds a binary file.",
            hint="Give the file its real extension (.xlsx, .png or .pdf).",
        )
    return kind


def decode_text(data: bytes, filename: str) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ExportRejected(
            f"{PurePath(filename).name!r} is not valid UTF-8 text (byte {err.start}).",
            hint="Save it as UTF-8 (SR-09); in Excel choose 'CSV UTF-8'. Convert GBK/GB18030 files first.",
        ) from err
    if "\x00" in text:
        raise ExportRejected(
            f"{PurePath(filename).name!r} contains NUL bytes, so it is not a text file.",
            hint="Submit text as UTF-8, or the file under its real type.",
        )
    return text


def parse_file(data: bytes, filename: str, *, max_bytes: int) -> ParsedFile:
    kind = detect_kind(data, filename, max_bytes=max_bytes)
    if kind == FileKind.CSV:
        return _parse_csv(decode_text(data, filename), filename)
    if kind == FileKind.XLSX:
        return _parse_xlsx(data, filename)
    if kind == FileKind.JSON:
        return _parse_json(decode_text(data, filename), filename)
    if kind == FileKind.PNG:
        return _parse_png(data)
    if kind == FileKind.PDF:
        return _parse_pdf(data)
    text = decode_text(data, filename)
    parsed = ParsedFile(kind, texts=[(text, "")])
    parsed.tables = markdown_tables(text)
    return parsed


# ---------------------------------------------------------------- CSV


def _parse_csv(text: str, filename: str) -> ParsedFile:
    first = text.split("\n", 1)[0]
    if PurePath(filename).suffix.lower() == ".tsv":
        delimiter = "\t"
    else:
        delimiter = max((",", "\t", ";"), key=first.count)
        if first.count(delimiter) == 0:
            delimiter = ","
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    except csv.Error as err:
        raise ExportRejected(
            f"{PurePath(filename).name!r} is not well-formed CSV: {err}.",
            hint="Write it with a CSV library (e.g. DataFrame.to_csv) so quotes are balanced.",
        ) from err
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    parsed = ParsedFile(FileKind.CSV)
    if not rows:
        raise ExportRejected(
            f"{PurePath(filename).name!r} has no rows.", hint="Export a table with a header row."
        )
    parsed.tables.append(make_table(rows[0], rows[1:]))
    return parsed


# ---------------------------------------------------------------- XLSX


def _parse_xlsx(data: bytes, filename: str) -> ParsedFile:
    name = PurePath(filename).name
    parsed = ParsedFile(FileKind.XLSX)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            if sum(i.file_size for i in infos) > _MAX_UNPACKED:
                raise ExportRejected(
                    f"{name!r} unpacks to more than {_MAX_UNPACKED:,} bytes.",
                    hint="Export a smaller workbook; this looks like row-level data or a damaged file.",
                )
            members = [i.filename for i in infos]
            has_formulas = any(
                re.search(rb"<(?:\w+:)?f[ >]", zf.read(m))
                for m in members
                if m.startswith("xl/worksheets/") and m.endswith(".xml")
            )
    except zipfile.BadZipFile as err:
        raise ExportRejected(
            f"{name!r} is not a valid .xlsx file.", hint="Save it again from Excel or pandas."
        ) from err
    if any(m.startswith(("xl/media/", "xl/embeddings/", "xl/drawings/")) for m in members):
        parsed.needs_human_look = True
        parsed.notes.append("the workbook embeds images, drawings or objects: a person must look at them")
    if any(m.endswith("vbaProject.bin") for m in members):
        raise ExportRejected(f"{name!r} contains macros.", hint="Save the workbook as .xlsx without macros.")
    if has_formulas:
        parsed.notes.append("the workbook has formulas; the checks read their stored results")
    try:
        import openpyxl

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wb = openpyxl.load_workbook(io.BytesIO(data), data_only=True)
    except Exception as err:  # openpyxl raises many kinds for damaged files
        raise ExportRejected(
            f"{name!r} could not be read as a workbook ({type(err).__name__}).",
            hint="Save it again from Excel or pandas as .xlsx.",
        ) from err
    for ws in wb.worksheets:
        title = str(ws.title)
        if ws.sheet_state != "visible":
            parsed.notes.append(f"sheet {title!r} is hidden (it is checked too)")
        hidden_rows = [i for i, d in ws.row_dimensions.items() if d.hidden]
        hidden_cols = [k for k, d in ws.column_dimensions.items() if d.hidden]
        if hidden_rows or hidden_cols:
            parsed.notes.append(f"sheet {title!r} has hidden rows or columns (they are checked too)")
        values: list[list[Any]] = []
        for row in ws.iter_rows():
            values.append([c.value for c in row])
            for c in row:
                comment = getattr(c, "comment", None)
                if comment is not None and comment.text:
                    parsed.texts.append((str(comment.text), f"sheet {title!r}, comment on {c.coordinate}"))
        table, titles = _rows_to_table(values, f"sheet {title!r}")
        parsed.texts.extend((t, f"sheet {title!r}, title") for t in titles)
        if table is not None:
            parsed.tables.append(table)
    return parsed


def _rows_to_table(values: list[list[Any]], name: str) -> tuple[Table | None, list[str]]:
    rows = [r for r in values if any(cell_text(c).strip() for c in r)]
    titles: list[str] = []
    while rows and sum(1 for c in rows[0] if cell_text(c).strip()) == 1 and len(rows) > 1:
        titles.append(next(cell_text(c) for c in rows[0] if cell_text(c).strip()))
        rows = rows[1:]
    if not rows:
        return None, titles
    width = max(len(r) for r in rows)
    while width > 0 and all(len(r) < width or not cell_text(r[width - 1]).strip() for r in rows):
        width -= 1
    rows = [list(r[:width]) for r in rows]
    return make_table(rows[0], rows[1:], name), titles


# ---------------------------------------------------------------- JSON


def _parse_json(text: str, filename: str) -> ParsedFile:
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise ExportRejected(
            f"{PurePath(filename).name!r} is not valid JSON: {err}.",
            hint="Write it with json.dump or DataFrame.to_json.",
        ) from err
    parsed = ParsedFile(FileKind.JSON)
    strings: list[tuple[str, str]] = []
    _walk_strings(doc, "$", strings)
    parsed.texts.extend(strings)
    table = _json_table(doc)
    if table is not None:
        parsed.tables.append(table)
    else:
        leaves: list[tuple[str, Any]] = []
        _walk_numbers(doc, "$", leaves)
        if leaves:
            parsed.tables.append(make_table(["path", "value"], [[p, v] for p, v in leaves], "JSON values"))
    return parsed


def _json_table(doc: Any) -> Table | None:
    if isinstance(doc, dict):
        for key in ("rows", "data", "records"):
            body = doc.get(key)
            if isinstance(body, list) and body:
                cols = doc.get("columns")
                if isinstance(cols, list) and isinstance(body[0], list):
                    return make_table([str(c) for c in cols], body)
                if isinstance(body[0], dict):
                    return _records(body)
    if isinstance(doc, list) and doc and all(isinstance(r, dict) for r in doc):
        return _records(doc)
    if isinstance(doc, dict) and doc and all(isinstance(v, dict) for v in doc.values()):
        inner = list(doc.values())
        if all(not isinstance(x, dict | list) for v in inner for x in v.values()):
            index: list[str] = []
            for v in inner:
                index.extend(k for k in v if k not in index)
            header = ["index", *doc.keys()]
            return make_table(header, [[i, *(doc[c].get(i) for c in doc)] for i in index])
    return None


def _records(records: list[Any]) -> Table | None:
    cols: list[str] = []
    for r in records:
        if not isinstance(r, dict):
            return None
        cols.extend(str(k) for k in r if str(k) not in cols)
    if any(isinstance(v, dict | list) for r in records for v in r.values()):
        return None
    return make_table(cols, [[r.get(c) for c in cols] for r in records])


def _walk_strings(node: Any, path: str, out: list[tuple[str, str]]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((str(k), f"key {path}"))
            _walk_strings(v, f"{path}.{k}", out)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _walk_strings(v, f"{path}[{i}]", out)
    elif isinstance(node, str):
        out.append((node, path))
    elif isinstance(node, int | float) and not isinstance(node, bool):
        out.append((cell_text(node), path))


def _walk_numbers(node: Any, path: str, out: list[tuple[str, Any]]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _walk_numbers(v, f"{path}.{k}", out)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _walk_numbers(v, f"{path}[{i}]", out)
    elif isinstance(node, int | float) and not isinstance(node, bool):
        out.append((path, node))


# ---------------------------------------------------------------- PNG


def _parse_png(data: bytes) -> ParsedFile:
    """Images always need a person; their text chunks (tEXt, iTXt, zTXt) are scanned for identifiers."""
    parsed = ParsedFile(FileKind.PNG, needs_human_look=True)
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        text = _png_text(ctype, body)
        if text:
            parsed.texts.append((text, f"PNG {ctype.decode('ascii', 'replace')} chunk"))
        if ctype == b"IEND":
            break
    return parsed


def _png_text(ctype: bytes, body: bytes) -> str:
    try:
        if ctype == b"tEXt":
            key, _, value = body.partition(b"\x00")
            return f"{key.decode('latin-1')}: {value.decode('latin-1')}"
        if ctype == b"zTXt":
            key, _, rest = body.partition(b"\x00")
            return f"{key.decode('latin-1')}: {_inflate(rest[1:]).decode('latin-1')}"
        if ctype == b"iTXt":
            key, _, rest = body.partition(b"\x00")
            compressed, rest = rest[0], rest[2:]
            _lang, _, rest = rest.partition(b"\x00")
            _tkey, _, value = rest.partition(b"\x00")
            raw = _inflate(value) if compressed else value
            return f"{key.decode('latin-1')}: {raw.decode('utf-8', 'replace')}"
    except (zlib.error, IndexError):
        return ""
    return ""


def _inflate(data: bytes) -> bytes:
    d = zlib.decompressobj()
    out = d.decompress(data, _MAX_TEXT_CHUNK)
    return out


# ---------------------------------------------------------------- PDF

_PDF_INSTEAD = "or export the tables as CSV/XLSX and the figures as PNG"


def _parse_pdf(data: bytes) -> ParsedFile:
    """Text of every page (fed as a text file's is), metadata, annotations and form fields; never raises.

    What stops the gate from reading all of it goes to ``problems`` (the ``file_type`` check fails
    with it); figures and images always need a person (``human_look``).
    """
    parsed = ParsedFile(FileKind.PDF, needs_human_look=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _read_pdf(data, parsed)
    # pypdf raises many kinds (PdfReadError, KeyError, ValueError, RecursionError …) on damaged files
    except Exception as err:
        parsed.problems.append(
            f"the PDF could not be read ({type(err).__name__}: {_short(str(err))}), so its text was not "
            f"checked: save or print it again as a standard PDF, {_PDF_INSTEAD}"
        )
    if parsed.problems:
        parsed.human_look = (
            "the gate could not read all of the PDF (see file_type): a steward must look at all of it"
        )
    return parsed


class _PdfText:
    """Collects a PDF's texts for the checks up to ``MAX_PDF_CHARS`` characters in total."""

    def __init__(self, parsed: ParsedFile) -> None:
        self.parsed = parsed
        self.left = MAX_PDF_CHARS
        self.full = False

    def add(self, text: str, location: str) -> bool:
        """Keep ``text``; False (and a problem, once) when the cap is reached."""
        text = text.strip()
        if self.full:
            return False
        if len(text) > self.left:
            self.full = True
            self.parsed.problems.append(
                f"the PDF holds more than {MAX_PDF_CHARS:,} characters of text (the cap was reached at "
                f"{location}), so the rest was not checked: split it into smaller PDFs, {_PDF_INSTEAD}"
            )
            return False
        if text:
            self.left -= len(text)
            self.parsed.texts.append((text, location))
        return True


def _read_pdf(data: bytes, parsed: ParsedFile) -> None:
    from pypdf import PasswordType, PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        if reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            parsed.problems.append(
                "the PDF is encrypted (it needs a password to open), so the gate cannot read its text: "
                f"export it again without a password, {_PDF_INSTEAD}"
            )
            return
        parsed.notes.append(
            "the PDF is encrypted without an open password (permissions only); its text was read"
        )
    out = _PdfText(parsed)
    info: dict[Any, Any] = reader.metadata or {}
    for key in list(info):
        value = info[key]  # resolves indirect objects (items() would not)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str):
            out.add(f"{str(key).lstrip('/')}: {value}", f"PDF metadata {key}")
    out.add(_xmp_text(reader), "PDF XMP metadata")
    for name, value in (reader.get_form_text_fields() or {}).items():
        if isinstance(value, str):
            out.add(f"{name}: {value}", f"PDF form field {name!r}")
    attached = [repr(str(name)) for name in reader.attachments]
    n_pages = len(reader.pages)
    read = min(n_pages, MAX_PDF_PAGES)
    if n_pages > MAX_PDF_PAGES:
        parsed.problems.append(
            f"the PDF has {n_pages:,} pages and the gate reads at most {MAX_PDF_PAGES}, so pages after "
            f"{MAX_PDF_PAGES} were not checked: split it into smaller PDFs, {_PDF_INSTEAD}"
        )
    blank: list[str] = []
    with_images: list[str] = []
    for number in range(1, read + 1):
        if out.full:
            break
        page = reader.pages[number - 1]
        text = page.extract_text()
        if not text.strip():
            blank.append(str(number))
        elif out.add(text, f"page {number}"):
            parsed.tables.extend(Table(t.frame, f"page {number}, {t.name}") for t in markdown_tables(text))
        for annot in _annotations(page):
            if annot.get("/Subtype") == "/FileAttachment":
                attached.append(f"an attachment on page {number}")
            fields = [annot[k] for k in ("/T", "/Contents") if k in annot]  # [] resolves indirect objects
            out.add(" ".join(f for f in fields if isinstance(f, str)), f"page {number}, annotation")
        if _has_images(page):
            with_images.append(str(number))
    if attached:
        parsed.problems.append(
            f"the PDF carries attached files ({_listing(attached)}), which the gate cannot check: remove "
            "them and submit each file through the gate on its own"
        )
    if blank:
        what = "no page has" if len(blank) == read else f"page(s) {_listing(blank)} have no"
        parsed.notes.append(f"{what} extractable text (scanned or image-only?): a person must read them")
    if read and len(blank) == read:
        parsed.human_look = (
            "the PDF has no extractable text (scanned or image-only pages?), so the gate could not check "
            "it: a steward must read it before release"
        )
        return
    images = f"; images on page(s) {_listing(with_images)}" if with_images else ""
    parsed.human_look = (
        f"the text of the PDF was checked ({read} page(s)), but its figures and images were not{images}: "
        "a steward must look at them before release"
    )


def _xmp_text(reader: Any) -> str:
    """The text nodes of the XMP packet (dc:creator, dc:title …), one a line; empty if there is none.

    A stream that does not decode raises, so the PDF counts as unreadable: it could hide anything.
    """
    stream = reader.root_object.get("/Metadata")
    if stream is None:
        return ""
    raw = stream.get_object().get_data()
    xml = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return "\n".join(t.strip() for t in re.findall(r">([^<>]+)<", xml) if t.strip())


def _annotations(page: Any) -> list[Any]:
    annots = page.get("/Annots")
    if annots is None:
        return []
    objects = [a.get_object() for a in annots.get_object()]
    return [a for a in objects if isinstance(a, dict)]


def _has_images(page: Any) -> bool:
    try:
        return len(page.images) > 0
    except Exception:  # image listing is for the reviewer's note only
        return False


def _listing(items: list[str], limit: int = 5) -> str:
    more = len(items) - limit
    return ", ".join(items[:limit]) + (f" and {more} more" if more > 0 else "")


def _short(message: str, limit: int = 160) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"


# ---------------------------------------------------------------- Markdown tables

_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def _split_row(line: str) -> list[str]:
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|"):
        s = s[:-1]
    return [c.strip() for c in s.split("|")]


def markdown_tables(text: str) -> list[Table]:
    """Pipe tables (header, ``---`` separator, rows) found in Markdown or plain text."""
    lines = text.splitlines()
    tables: list[Table] = []
    i = 0
    while i + 1 < len(lines):
        if "|" in lines[i] and _SEPARATOR.match(lines[i + 1]):
            header = _split_row(lines[i])
            body: list[list[str]] = []
            j = i + 2
            while j < len(lines) and "|" in lines[j] and lines[j].strip():
                body.append(_split_row(lines[j]))
                j += 1
            tables.append(make_table(header, body, f"table {len(tables) + 1} (line {i + 1})"))
            i = j
        else:
            i += 1
    return tables

"""Real PDFs for the export-gate tests, written by matplotlib's PDF backend and pypdf.

ASCII text only: the test run turns matplotlib's missing-glyph warnings into errors.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from pypdf import PdfReader, PdfWriter
from pypdf.annotations import Text


def text_pdf(pages: Sequence[Sequence[str]], metadata: Mapping[str, str] | None = None) -> bytes:
    """One page per item, its lines set in a monospace font (a pipe table stays a pipe table)."""
    buf = io.BytesIO()
    with PdfPages(buf, metadata=dict(metadata or {})) as pdf:
        for lines in pages:
            fig = Figure(figsize=(6, 4))
            if lines:
                fig.text(0.05, 0.95, "\n".join(lines), va="top", family="monospace")
            pdf.savefig(fig)
    return buf.getvalue()


def image_pdf() -> bytes:
    """A page holding only a raster image (a scanned page, to the gate): no text at all."""
    fig = Figure(figsize=(2, 2))
    fig.figimage(np.arange(64, dtype=float).reshape(8, 8), resize=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="pdf")
    return buf.getvalue()


def rewrite(
    data: bytes,
    *,
    password: str | None = None,
    attachment: tuple[str, bytes] | None = None,
    note: str | None = None,
    blank_pages: int = 0,
) -> bytes:
    """``data`` written again by pypdf: encrypted, with an attached file, a sticky note, blank pages."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    for _ in range(blank_pages):
        writer.add_blank_page(width=200, height=200)
    if attachment is not None:
        writer.add_attachment(*attachment)
    if note is not None:
        writer.add_annotation(page_number=0, annotation=Text(text=note, rect=(10, 10, 60, 60)))
    if password is not None:
        writer.encrypt(password, owner_password="owner-secret")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()

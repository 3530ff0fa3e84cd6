"""Content-addressed quarantine store for export files.

Files are stored under ``<root>/<sha256[:2]>/<sha256>``: the name *is* the
SHA-256 of the content, so a decision that names a digest names exactly one
file. Writes are atomic (temporary file in the same folder, ``fsync``, then
``os.replace``) and the stored file is made read-only. Every read re-hashes the
content and refuses a file that no longer matches its name.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from sandbox.errors import InternalError, NotFound

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class QuarantineStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, digest: str) -> Path:
        if not _DIGEST.match(digest):
            raise InternalError(f"not a SHA-256 digest: {digest[:80]!r}")
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> str:
        """Store ``data`` (idempotent) and return its SHA-256."""
        digest = sha256_hex(data)
        target = self.path_for(digest)
        if target.exists():
            self.read(digest)  # an existing copy must still be intact
            return digest
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def read(self, digest: str) -> bytes:
        """The stored bytes, after checking they still hash to ``digest``."""
        target = self.path_for(digest)
        try:
            data = target.read_bytes()
        except FileNotFoundError as err:
            raise NotFound(
                f"The quarantined file {digest[:12]}… is missing.",
                hint="The quarantine folder was changed outside the sandbox; tell the operator.",
            ) from err
        if sha256_hex(data) != digest:
            raise InternalError(
                f"The quarantined file {digest[:12]}… no longer matches its SHA-256; it was altered.",
                hint="Do not release it; tell the operator (the audit log records the expected digest).",
            )
        return data

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).exists()

"""A throwaway PostgreSQL 15 cluster for tests and benches.

``PostgresCluster.start()`` runs ``initdb`` and ``pg_ctl`` from
``/usr/lib/postgresql/15/bin`` (as the ``postgres`` Unix user when running as
root: initdb refuses root), with its data directory and Unix socket in a fresh
temporary folder, listening on 127.0.0.1 at a free port, trust authentication,
durability switched off (fsync, synchronous_commit) for speed. ``stop()`` shuts it
down and removes the folder. ``SANDBOX_TEST_POSTGRES_URL`` points at an existing
server instead (``available()`` and ``start()`` then use it).

    with PostgresCluster() as pg:
        url = pg.create_database()        # postgresql+psycopg://postgres@127.0.0.1:PORT/test_xxx
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

PG_BIN = Path(os.environ.get("SANDBOX_PG_BIN", "/usr/lib/postgresql/15/bin"))
EXISTING_URL_ENV = "SANDBOX_TEST_POSTGRES_URL"
PG_USER = "postgres"


def _postgres_uid() -> tuple[int, int] | None:
    try:
        entry = pwd.getpwnam(PG_USER)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def unavailable_reason() -> str | None:
    """Why a cluster cannot be started here (None when it can)."""
    if os.environ.get(EXISTING_URL_ENV):
        return None
    for tool in ("initdb", "pg_ctl"):
        if not (PG_BIN / tool).exists():
            return f"PostgreSQL 15 not installed ({PG_BIN / tool} missing)"
    if os.geteuid() == 0:
        if _postgres_uid() is None:
            return "running as root and there is no 'postgres' user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing"
    return None


def available() -> bool:
    return unavailable_reason() is None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """One throwaway cluster; use as a context manager or call start()/stop()."""

    def __init__(self) -> None:
        self.port = 0
        self.root: Path | None = None
        self._existing = os.environ.get(EXISTING_URL_ENV)
        self._owned = False

    # -- lifecycle ------------------------------------------------------------------------------

    def _as_postgres(self, args: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", PG_USER, "--", *args]
        return args

    def _run(self, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._as_postgres(args), capture_output=True, text=True, timeout=timeout, check=False
        )

    def start(self) -> PostgresCluster:
        if self._existing:
            return self
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        self.root = Path(tempfile.mkdtemp(prefix="sandbox-pg-"))
        os.chmod(self.root, 0o700)
        ids = _postgres_uid() if os.geteuid() == 0 else None
        if ids is not None:
            os.chown(self.root, *ids)
        data, sock = self.root / "data", self.root / "sock"
        sock.mkdir()
        if ids is not None:
            os.chown(sock, *ids)
        initdb = str(PG_BIN / "initdb")
        done = self._run([initdb, "-D", str(data), "-U", PG_USER, "-A", "trust", "-E", "UTF8", "--no-locale"])
        if done.returncode != 0:
            self._cleanup()
            raise RuntimeError(f"initdb failed: {done.stderr or done.stdout}")
        self._owned = True
        last_error = ""
        for _attempt in range(5):
            self.port = free_port()
            options = (
                f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            pg_ctl, log = str(PG_BIN / "pg_ctl"), str(self.root / "log")
            done = self._run([pg_ctl, "-D", str(data), "-o", options, "-l", log, "-w", "start"])
            if done.returncode == 0 and self._wait_ready():
                return self
            last_error = done.stderr or done.stdout
            self._run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        log = (self.root / "log").read_text(errors="replace")[-2000:] if (self.root / "log").exists() else ""
        self.stop()
        raise RuntimeError(f"pg_ctl start failed: {last_error}\n{log}")

    def _wait_ready(self, timeout: float = 30) -> bool:
        import psycopg

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.libpq_url("postgres"), connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.2)
        return False

    def stop(self) -> None:
        if self._existing or self.root is None:
            return
        if self._owned:
            self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop"])
            self._owned = False
        self._cleanup()

    def _cleanup(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- URLs and databases ---------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3 driver)."""
        if self._existing:
            base = self._existing.replace("postgresql://", "postgresql+psycopg://", 1)
            return base.rsplit("/", 1)[0] + f"/{database}"
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def libpq_url(self, database: str = "postgres") -> str:
        return self.url(database).replace("postgresql+psycopg://", "postgresql://", 1)

    def create_database(self, name: str | None = None) -> str:
        """Create a fresh database; returns its SQLAlchemy URL."""
        import psycopg

        name = name or f"test_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.libpq_url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.libpq_url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

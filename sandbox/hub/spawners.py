"""Spawners of the two local modes, and the first-spawn hook that copies the notebooks.

* :class:`DemoSpawner` (``SANDBOX_HUB_MODE=demo``): every server runs as the hub's own
  OS user, homes under ``<data>/homes/<user>``. **Not isolated** — a kernel can read
  whatever the hub can. For trying it out and for UI tests only.
* :class:`IsolatedSpawner` (``SANDBOX_HUB_MODE=isolated``, hub runs as root): each
  hub user runs as their own Unix account ``<prefix><name>`` (default ``sb-alice``),
  created on first spawn with a 0700 home. The prefix keeps registry names from ever
  mapping onto system accounts (``root``, ``postgres``, the gateway's account...).

On each spawn the notebooks of ``notebooks/`` that the user does not have yet are copied
to ``~/notebooks/`` (owned by the user); edited copies are never overwritten.
"""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Any

from jupyterhub.spawner import LocalProcessSpawner, SimpleLocalProcessSpawner, set_user_setuid
from traitlets import Integer, Unicode

from sandbox.config import REPO_ROOT

NOTEBOOKS_SUBDIR = "notebooks"
GECOS = "data sandbox user"
MIN_UID = 1000


def copy_notebooks(source: Path, home: Path, uid: int | None = None, gid: int | None = None) -> list[Path]:
    """Copy ``source/*.ipynb`` into ``home/notebooks/`` unless already there; returns the new files."""
    target = home / NOTEBOOKS_SUBDIR
    if not source.is_dir():
        return []
    created_dir = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    if created_dir and uid is not None:
        os.chown(target, uid, gid if gid is not None else -1)
    copied: list[Path] = []
    for nb in sorted(source.glob("*.ipynb")):
        dest = target / nb.name
        if dest.exists():
            continue
        shutil.copyfile(nb, dest)
        dest.chmod(0o644 if uid is None else 0o600)
        if uid is not None:
            os.chown(dest, uid, gid if gid is not None else -1)
        copied.append(dest)
    return copied


def _notebooks_dir_trait() -> Unicode[str, str | bytes]:
    return Unicode(
        str(REPO_ROOT / "notebooks"),
        config=True,
        help="Folder whose *.ipynb are copied to ~/notebooks/ on spawn (missing ones only).",
    )


class DemoSpawner(SimpleLocalProcessSpawner):  # type: ignore[misc]
    """One OS user for everyone (demo mode)."""

    notebooks_dir = _notebooks_dir_trait()

    async def start(self) -> Any:
        home = Path(self.home_dir)
        await asyncio.to_thread(self._prepare_home, home)
        return await super().start()

    def _prepare_home(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        home.chmod(0o700)
        copied = copy_notebooks(Path(self.notebooks_dir), home)
        if copied:
            self.log.info("sandbox: copied %d notebooks to %s", len(copied), home / NOTEBOOKS_SUBDIR)


class IsolatedSpawner(LocalProcessSpawner):  # type: ignore[misc]
    """A Unix account per hub user (isolated mode; the hub must run as root)."""

    notebooks_dir = _notebooks_dir_trait()

    unix_user_prefix = Unicode("sb-", config=True, help="Prefix of the Unix account names of hub users.")
    home_base = Unicode("/home", config=True, help="Parent folder of the users' homes.")
    min_uid = Integer(
        MIN_UID, config=True, help="Refuse to run a server as an existing account below this uid."
    )

    @property
    def unix_name(self) -> str:
        return f"{self.unix_user_prefix}{self.user.name}"

    # LocalProcessSpawner uses the hub name for setuid and HOME; use the mapped Unix account.
    def make_preexec_fn(self, name: str) -> Any:
        return set_user_setuid(self.unix_name)

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        entry = pwd.getpwnam(self.unix_name)
        env["USER"] = self.unix_name
        env["HOME"] = entry.pw_dir
        env["SHELL"] = entry.pw_shell or "/bin/sh"
        return env

    async def start(self) -> Any:
        await asyncio.to_thread(self._prepare_account)
        return await super().start()

    def _prepare_account(self) -> None:
        name = self.unix_name
        home = Path(self.home_base) / name
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            self.log.info("sandbox: creating Unix account %s for hub user %s", name, self.user.name)
            subprocess.run(
                [
                    "useradd",
                    "--create-home",
                    "--home-dir",
                    str(home),
                    "--shell",
                    "/bin/bash",
                    "--comment",
                    f"{GECOS} {self.user.name}",
                    "--user-group",
                    name,
                ],
                check=True,
                capture_output=True,
            )
            entry = pwd.getpwnam(name)
        if entry.pw_uid < self.min_uid:
            raise RuntimeError(
                f"Refusing to start {self.user.name}'s server as {name} "
                f"(uid {entry.pw_uid} < {self.min_uid}): that is a system account."
            )
        user_home = Path(entry.pw_dir)
        user_home.mkdir(parents=True, exist_ok=True)
        os.chown(user_home, entry.pw_uid, entry.pw_gid)
        user_home.chmod(0o700)
        copied = copy_notebooks(Path(self.notebooks_dir), user_home, entry.pw_uid, entry.pw_gid)
        if copied:
            self.log.info("sandbox: copied %d notebooks to %s", len(copied), user_home / NOTEBOOKS_SUBDIR)


def ensure_system_account(name: str, comment: str = "data sandbox gateway") -> pwd.struct_passwd:
    """A service account (no login, no home) for the gateway or the culler, created if missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    try:
        grp.getgrnam(name)
        group_args = ["--gid", name]
    except KeyError:
        group_args = ["--user-group"]
    subprocess.run(
        [
            "useradd",
            "--system",
            *group_args,
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            comment,
            name,
        ],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(name)

"""Isolated mode: a Unix account per researcher, data readable only by the gateway's account.

Runs as root (the hub setuid-s to each user, like a production install). Accounts are
made with a test prefix (``sbt-alice``, gateway ``sbtgw``, idle culler ``sbtcull``) and deleted afterwards.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from e2e.livehub import LiveHub, copy_data, running_hub, traversable_tempdir
from support import require

pytestmark = [pytest.mark.hub, pytest.mark.slow]

PREFIX = "sbt-"
GATEWAY_USER = "sbtgw"
CULLER_USER = "sbtcull"


def _delete_accounts() -> None:
    for entry in pwd.getpwall():
        if entry.pw_name.startswith(PREFIX) or entry.pw_name in (GATEWAY_USER, CULLER_USER):
            subprocess.run(["userdel", "--remove", entry.pw_name], check=False, capture_output=True)
    for group in (GATEWAY_USER, CULLER_USER):
        subprocess.run(["groupdel", group], check=False, capture_output=True)


@pytest.fixture(scope="module")
def isolated_hub(prepared_data_dir: Path) -> Iterator[LiveHub]:
    require(os.geteuid() == 0, "isolated mode needs root (the hub starts servers as other Unix users)")
    require(shutil.which("useradd") is not None, "useradd is missing")
    base = traversable_tempdir("sandbox-iso-")
    data = copy_data(prepared_data_dir, base, "data")
    try:
        with running_hub(
            "isolated",
            data,
            "isolated",
            SANDBOX_UNIX_USER_PREFIX=PREFIX,
            SANDBOX_GATEWAY_USER=GATEWAY_USER,
            SANDBOX_CULLER_USER=CULLER_USER,
            SANDBOX_HOME_BASE=str(base / "homes"),
        ) as hub:
            yield hub
    finally:
        _delete_accounts()
        shutil.rmtree(base, ignore_errors=True)


PROBE = textwrap.dedent(
    """
    import getpass, json, os, pathlib

    def readable(path):
        try:
            p = pathlib.Path(path)
            if p.is_dir():
                os.listdir(p)
            else:
                p.open("rb").read(16)
            return True
        except PermissionError:
            return False

    import sandbox
    print(json.dumps({
        "user": getpass.getuser(),
        "uid": os.getuid(),
        "home": os.path.expanduser("~"),
        "warehouse": readable(WAREHOUSE),
        "control_db": readable(CONTROL_DB),
        "hub_db": readable(HUB_DB),
        "data_dir": readable(DATA_DIR),
        "other_home": readable(OTHER_HOME),
        "gateway_user": sandbox.connect().whoami()["name"],
    }))
    """
)


def test_kernel_runs_as_its_own_unix_user_and_cannot_read_the_data(isolated_hub: LiveHub) -> None:
    data = isolated_hub.data_dir
    home_base = isolated_hub.settings.home_base
    isolated_hub.signed_in("bob")  # bob's home exists from now on
    alice = isolated_hub.signed_in("alice")
    values = {
        "WAREHOUSE": str(data / "warehouse.duckdb"),
        "CONTROL_DB": str(data / "control.sqlite"),
        "HUB_DB": str(isolated_hub.settings.state_dir / "jupyterhub.sqlite"),
        "DATA_DIR": str(data),
        "OTHER_HOME": str(home_base / f"{PREFIX}bob"),
    }
    code = "\n".join(f"{k} = {v!r}" for k, v in values.items()) + PROBE
    result = alice.run(code)
    assert result.ok, result.error
    out = result.json()
    assert out["user"] == f"{PREFIX}alice"
    assert out["uid"] == pwd.getpwnam(f"{PREFIX}alice").pw_uid != 0
    assert out["home"] == str(home_base / f"{PREFIX}alice")
    assert out == out | {
        "warehouse": False,
        "control_db": False,
        "hub_db": False,
        "data_dir": False,
        "other_home": False,
    }
    assert out["gateway_user"] == "alice"  # ...while the gateway answers her kernel


def test_data_folder_belongs_to_the_gateway_account_and_homes_are_private(isolated_hub: LiveHub) -> None:
    isolated_hub.signed_in("alice")
    data = isolated_hub.data_dir
    gw = pwd.getpwnam(GATEWAY_USER)
    info = data.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (gw.pw_uid, 0o700)
    assert (data / "warehouse.duckdb").stat().st_uid == gw.pw_uid
    state = isolated_hub.settings.state_dir.stat()
    assert (state.st_uid, stat.S_IMODE(state.st_mode)) == (0, 0o700)  # not even the gateway reads hub state
    home = isolated_hub.settings.home_base / f"{PREFIX}alice"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert (home / "notebooks" / "00-getting-started.ipynb").stat().st_uid == pwd.getpwnam(
        f"{PREFIX}alice"
    ).pw_uid


def test_gateway_runs_as_its_own_account(isolated_hub: LiveHub) -> None:
    port = str(isolated_hub.settings.gateway_port)
    owners = {
        p.username()
        for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"] and "serve" in p.info["cmdline"] and port in p.info["cmdline"]
    }
    assert owners == {GATEWAY_USER}


def test_the_idle_culler_runs_as_an_account_that_owns_nothing(isolated_hub: LiveHub) -> None:
    cullers = [
        p
        for p in psutil.Process(isolated_hub.process.proc.pid).children(recursive=True)
        if "jupyterhub_idle_culler" in p.cmdline()
    ]
    assert {p.username() for p in cullers} == {CULLER_USER}
    culler = pwd.getpwnam(CULLER_USER)
    assert culler.pw_uid not in (0, pwd.getpwnam(GATEWAY_USER).pw_uid)
    assert culler.pw_shell == "/usr/sbin/nologin"
    assert isolated_hub.data_dir.stat().st_uid != culler.pw_uid

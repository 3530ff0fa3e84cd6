"""File ownership of the two modes, applied at every hub start.

Both modes: the hub state folder (hub sqlite with token hashes, cookie secret, proxy
pid, service tokens) is 0700 and owned by the hub's user (JUPYTERHUB-NOTES §3: the hub
sqlite is 0644 by default, and a kernel could read it).

Isolated mode (hub runs as root):

* the gateway runs as its own account (``sandboxgw``), created if missing;
* the data folder (warehouse, control DB, quarantine) is owned by that account and is
  0700, so researchers' kernels cannot open the warehouse or the control DB;
* the hub state folder inside it stays root's (0700), so the gateway cannot read the hub
  DB either;
* homes are 0700 (each researcher's kernel runs as their own account);
* the idle culler runs as an account of its own too (``sandboxcull``), which owns nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from sandbox.errors import ConfigError
from sandbox.hub.culler import culler_enabled
from sandbox.hub.settings import HubMode, HubSettings
from sandbox.hub.spawners import ensure_system_account


def _is_within(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True


def prepare_state_dir(settings: HubSettings) -> None:
    state = settings.state_dir
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o700)
    for child in state.iterdir():
        if child.is_file() and not child.is_symlink():
            child.chmod(0o600)


def chown_tree(root: Path, uid: int, gid: int, *, skip: tuple[Path, ...] = ()) -> None:
    """``chown -R`` without following symlinks, leaving the ``skip`` folders alone."""
    skip_resolved = {p.resolve() for p in skip}
    os.chown(root, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if (here / d).resolve() not in skip_resolved]
        for name in dirnames + filenames:
            os.chown(here / name, uid, gid, follow_symlinks=False)


def prepare_isolated(settings: HubSettings) -> None:
    """Create the gateway and culler accounts and hand the gateway the data folder (root only)."""
    if os.geteuid() != 0:
        raise ConfigError(
            "SANDBOX_HUB_MODE=isolated needs the hub to run as root (it starts servers as other Unix users).",
            hint="Run the hub as root (systemd unit), or use SANDBOX_HUB_MODE=demo to try it out.",
        )
    data = settings.sandbox.data_dir
    if _is_within(settings.home_base, data):
        raise ConfigError(
            f"SANDBOX_HOME_BASE ({settings.home_base}) is inside the data folder ({data}), which only the "
            "gateway account may enter in isolated mode.",
            hint="Leave SANDBOX_HOME_BASE unset (/home) or point it outside SANDBOX_DATA_DIR.",
        )
    account = ensure_system_account(settings.gateway_user)
    if culler_enabled(settings):
        ensure_system_account(settings.culler_user, comment="data sandbox idle culler")
    data.mkdir(parents=True, exist_ok=True)
    state = settings.state_dir
    skip = (state,) if _is_within(state, data) else ()
    chown_tree(data, account.pw_uid, account.pw_gid, skip=skip)
    data.chmod(0o700)
    os.chown(state, 0, 0)
    state.chmod(0o700)
    if not settings.home_base.exists():
        # Users must traverse it to reach their own (0700) homes; the hub's umask is 077.
        settings.home_base.mkdir(parents=True)
        settings.home_base.chmod(0o711)


def prepare(settings: HubSettings) -> None:
    """Everything above for the configured mode (called from ``jupyterhub_config.py``)."""
    settings.sandbox.data_dir.mkdir(parents=True, exist_ok=True)
    prepare_state_dir(settings)
    if settings.mode is HubMode.ISOLATED:
        prepare_isolated(settings)
    else:
        settings.home_base.mkdir(parents=True, exist_ok=True)
        settings.home_base.chmod(0o700)

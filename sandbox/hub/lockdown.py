"""Lock-down of the single-user server and of JupyterLab (JUPYTERHUB-NOTES §4).

Three system files live in the virtualenv, where users cannot edit them; they are
written by :func:`install` (``python -m sandbox.hub.install``, run by
``scripts/bootstrap.sh``, and again at every hub start):

* ``{prefix}/etc/jupyter/jupyter_server_config.py`` — a stub calling
  :func:`apply_server_lockdown`, only inside a JupyterHub single-user server;
* ``{prefix}/etc/jupyter/labconfig/page_config.json`` — Lab's download commands off;
* ``{prefix}/share/jupyter/lab/settings/overrides.json`` — no news or update checks,
  kernels start without the "Select Kernel" dialog.

``c.Spawner.disable_user_config = True`` (set in :mod:`sandbox.hub.config`) makes the
server ignore ``~/.jupyter``, so users cannot override these files.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from sandbox.hub.settings import HubMode

HERE = Path(__file__).resolve().parent
CUSTOM_CSS_DIR = HERE / "static" / "custom"

MARKER = "# sandbox-lockdown v1"

SERVER_CONFIG_STUB = f"""{MARKER}
# Written by `python -m sandbox.hub.install` (sandbox/hub/lockdown.py). Do not edit:
# changes belong in sandbox/hub/lockdown.py. Applies only inside a JupyterHub
# single-user server; a plain `jupyter lab` from this virtualenv is unaffected.
import os

if os.environ.get("JUPYTERHUB_API_TOKEN") and os.environ.get("JUPYTERHUB_SERVICE_PREFIX"):
    from sandbox.hub.lockdown import apply_server_lockdown

    apply_server_lockdown(c)  # noqa: F821 (c is the traitlets config object)
"""

PAGE_CONFIG: dict[str, Any] = {
    "disabledExtensions": {
        "@jupyterlab/docmanager-extension:download": True,
        "@jupyterlab/filebrowser-extension:download": True,
    }
}

LAB_OVERRIDES: dict[str, Any] = {
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/docmanager-extension:plugin": {"autoStartDefaultKernel": True},
}


def apply_server_lockdown(c: Any, env: dict[str, str] | None = None) -> None:
    """Set the single-user server's traitlets: terminals off, our authorizer, Lab extras off."""
    env = dict(os.environ) if env is None else env
    c.ServerApp.terminals_enabled = False
    c.ServerApp.authorizer_class = "sandbox.hub.authorizer.SandboxAuthorizer"
    c.ContentsManager.allow_hidden = False
    c.LabApp.news_url = None
    c.LabApp.check_for_updates_class = "jupyterlab.handlers.announcements.NeverCheckForUpdate"
    c.LabApp.extension_manager = "readonly"
    c.LabApp.lock_all_plugins = True
    if env.get("SANDBOX_HUB_MODE") == HubMode.DEMO.value:
        # The visible "not isolated" banner: a custom.css served by the server itself.
        c.LabApp.custom_css = True
        current = c.ServerApp.get("tornado_settings", {})
        merged = dict(current) if isinstance(current, dict) else {}
        merged["static_custom_path"] = [str(CUSTOM_CSS_DIR)]
        c.ServerApp.tornado_settings = merged  # a plain dict: jupyterhub-singleuser reads it


def system_paths(prefix: str | Path | None = None) -> dict[str, Path]:
    """The three files :func:`install` writes, under ``prefix`` (default: this interpreter's)."""
    base = Path(prefix or sys.prefix)
    return {
        "server_config": base / "etc" / "jupyter" / "jupyter_server_config.py",
        "page_config": base / "etc" / "jupyter" / "labconfig" / "page_config.json",
        "overrides": base / "share" / "jupyter" / "lab" / "settings" / "overrides.json",
    }


def _merge(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge(dst[key], value)
        else:
            dst[key] = value
    return dst


def _write_json_merged(path: Path, wanted: dict[str, Any]) -> bool:
    current: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            current = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            current = {}
    merged = _merge(json.loads(json.dumps(current)), wanted)
    if merged == current and path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    path.chmod(0o644)
    return True


def install(prefix: str | Path | None = None) -> list[Path]:
    """Write (or refresh) the system lock-down files; returns the files that changed. Idempotent.

    Refuses to overwrite a ``jupyter_server_config.py`` it did not write.
    """
    paths = system_paths(prefix)
    changed: list[Path] = []
    server_config = paths["server_config"]
    if server_config.exists():
        text = server_config.read_text(encoding="utf-8")
        if not text.startswith(MARKER):
            from sandbox.errors import ConfigError

            raise ConfigError(
                f"{server_config} exists and was not written by the sandbox.",
                hint="Move it away (or merge it into sandbox/hub/lockdown.py), then run "
                "`python -m sandbox.hub.install` again.",
            )
    if not server_config.exists() or server_config.read_text(encoding="utf-8") != SERVER_CONFIG_STUB:
        server_config.parent.mkdir(parents=True, exist_ok=True)
        server_config.write_text(SERVER_CONFIG_STUB, encoding="utf-8")
        server_config.chmod(0o644)
        changed.append(server_config)
    if _write_json_merged(paths["page_config"], PAGE_CONFIG):
        changed.append(paths["page_config"])
    if _write_json_merged(paths["overrides"], LAB_OVERRIDES):
        changed.append(paths["overrides"])
    return changed


def is_installed(prefix: str | Path | None = None) -> bool:
    paths = system_paths(prefix)
    server_config = paths["server_config"]
    return server_config.exists() and server_config.read_text(encoding="utf-8") == SERVER_CONFIG_STUB

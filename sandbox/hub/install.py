"""``python -m sandbox.hub.install``: write the single-user lock-down files into the venv.

Called by ``scripts/bootstrap.sh``; the hub also calls :func:`sandbox.hub.lockdown.install`
at start, so a venv that skipped bootstrap is still locked down.
"""

from __future__ import annotations

import sys

from sandbox.hub.lockdown import install, system_paths


def main() -> int:
    changed = install()
    for name, path in system_paths().items():
        state = "written" if path in changed else "up to date"
        print(f"{name}: {path} ({state})")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How the hub asks the sandbox registry (control DB) about an account.

Two questions: *does this password sign this user in?* (login) and *is this
account still approved, and in which projects?* (refresh). The answer is an
:class:`Account` — never the password hash.

Demo mode asks in-process (in a worker thread: argon2 is deliberately slow). In
isolated mode the control DB belongs to the gateway's Unix account (folder 0700),
and a hub running as root must not create files there that the gateway then cannot
write (SQLite journals), so the hub asks through a short-lived helper process that
runs as the gateway account: ``python -m sandbox.hub.registry_bridge`` reading one
JSON request on stdin and writing one JSON answer on stdout (the password never
appears on a command line).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any

HELPER_TIMEOUT = 30.0


@dataclass(frozen=True)
class Account:
    """What the hub needs to know about a registry account."""

    name: str
    role: str
    status: str
    projects: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return self.status == "approved"


_engines: dict[str, Any] = {}


def _engine() -> Any:
    """One control-DB engine per process (the hub keeps it; the helper process uses it once)."""
    from sandbox.config import get_settings
    from sandbox.control.db import open_engine

    url = get_settings().control_db_url
    engine = _engines.get(url)
    if engine is None:
        engine = _engines[url] = open_engine(url)
    return engine


def _account(session: Any, user: Any) -> Account:
    from sandbox.access import registry

    projects = tuple(p.name for p in registry.user_projects(session, user.username))
    return Account(name=user.username, role=str(user.role), status=str(user.status), projects=projects)


# -- in-process -------------------------------------------------------------------------------
def login_in_process(username: str, password: str) -> Account | None:
    """An Account when the password matches an *approved* account, else None (no reason given)."""
    from sandbox.access import registry
    from sandbox.control.db import session_scope

    with session_scope(_engine()) as session:
        user = registry.authenticate(session, username, password)
        return _account(session, user) if user is not None else None


def lookup_in_process(username: str) -> Account | None:
    """The account's current status and projects, or None when there is no such account."""
    from sandbox.access import registry
    from sandbox.control.db import session_scope

    with session_scope(_engine()) as session:
        user = registry.find_user(session, username)
        return _account(session, user) if user is not None else None


# -- helper process (isolated mode) ------------------------------------------------------------
def _helper_env() -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if k.startswith("SANDBOX_") or k in keep}
    env.pop("SANDBOX_DEMO_PASSWORD", None)
    return env


def _run_helper(request: dict[str, Any], run_as: str) -> dict[str, Any]:
    from jupyterhub.spawner import set_user_setuid

    proc = subprocess.run(
        [sys.executable, "-m", "sandbox.hub.registry_bridge"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=HELPER_TIMEOUT,
        env=_helper_env(),
        preexec_fn=set_user_setuid(run_as, chdir=False),
        check=False,
        cwd="/",
    )
    if proc.returncode != 0:
        raise RuntimeError(f"registry helper failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    answer: dict[str, Any] = json.loads(proc.stdout)
    return answer


def _answer_to_account(answer: dict[str, Any]) -> Account | None:
    account = answer.get("account")
    if not account:
        return None
    return Account(
        name=str(account["name"]),
        role=str(account["role"]),
        status=str(account["status"]),
        projects=tuple(str(p) for p in account["projects"]),
    )


# -- what the authenticator calls -----------------------------------------------------------------
async def login(username: str, password: str, *, run_as: str = "") -> Account | None:
    if run_as:
        request = {"op": "login", "username": username, "password": password}
        return _answer_to_account(await asyncio.to_thread(_run_helper, request, run_as))
    return await asyncio.to_thread(login_in_process, username, password)


async def lookup(username: str, *, run_as: str = "") -> Account | None:
    if run_as:
        request = {"op": "lookup", "username": username}
        return _answer_to_account(await asyncio.to_thread(_run_helper, request, run_as))
    return await asyncio.to_thread(lookup_in_process, username)


def _main() -> int:
    request = json.loads(sys.stdin.read())
    op = request.get("op")
    if op == "login":
        account = login_in_process(str(request["username"]), str(request["password"]))
    elif op == "lookup":
        account = lookup_in_process(str(request["username"]))
    else:
        print(json.dumps({"error": f"unknown op {op!r}"}))  # noqa: T201
        return 2
    print(json.dumps({"account": asdict(account) if account else None}))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(_main())

"""``sandbox demo``: seeds, generates, serves, prints the logins, and stops everything cleanly.

Runs the real command twice on one data folder: the first run is stopped with SIGTERM, the
second (idempotent: no re-seeding, no re-generation) with SIGINT, as Ctrl-C sends it. After
each stop no process of the tree may be left: hub, proxy, gateway, user server, kernel.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from e2e.hubclient import HubUser
from e2e.livehub import base_env, free_base_port, require_hub_prerequisites

pytestmark = [pytest.mark.hub, pytest.mark.slow]

PASSWORD = "demo-cmd-password"


class DemoRun:
    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox.cli.main", "demo", "--scale", "2000"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # like a terminal: the signal goes to `sandbox demo` only
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        pytest.fail(f"`sandbox demo` never printed {text!r}:\n{self.output[-4000:]}", pytrace=False)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self._reader.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def tree(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)


def _stop_and_check(run: DemoRun, sig: int) -> None:
    tree = run.tree()
    names = " ".join(" ".join(p.cmdline()) for p in tree)
    assert "configurable-http-proxy" in names
    assert "gateway serve" in names
    assert "jupyterhub-singleuser" in names
    os.kill(run.proc.pid, sig)
    assert run.proc.wait(timeout=90) == 0, run.output[-3000:]
    _, alive = psutil.wait_procs(tree, timeout=10)
    leftovers = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not leftovers, [" ".join(p.cmdline()) for p in leftovers]
    assert "stopped." in run.output


def test_sandbox_demo_runs_and_stops_cleanly_on_sigterm_and_ctrl_c(tmp_path: Path) -> None:
    require_hub_prerequisites()
    port = free_base_port()
    env = base_env(tmp_path / "data", port, "demo", SANDBOX_DEMO_PASSWORD=PASSWORD)
    del env["SANDBOX_HUB_MODE"]  # the command's default

    first = DemoRun(env)
    try:
        first.wait_for("Press Ctrl-C", timeout=240)
        out = first.output
        assert "not isolated — for trying it out" in out
        assert f"http://127.0.0.1:{port}/" in out
        for user in ("admin", "alice", "bob", "frank", "carol", "dave", "erin", "ent"):
            assert f"  {user} " in out
        assert PASSWORD in out
        assert "synth:" in out
        # The demo enterprise, seeded right after synth, with its USCC and the bank it authorised.
        assert "demo: created user ent (enterprise, USCC 91" in out
        assert "demo: created authorisation" in out and "BANK_A" in out
        ent_line = next(line for line in out.splitlines() if line.startswith("  ent "))
        assert "enterprise" in ent_line and "USCC 91" in ent_line and PASSWORD in ent_line
        with HubUser(f"http://127.0.0.1:{port}/", "ent", PASSWORD) as ent:
            ent.login()
        with HubUser(f"http://127.0.0.1:{port}/", "alice", PASSWORD) as alice:
            alice.login()
            alice.start_server()
            kernel = alice.start_kernel()
            assert alice.execute(kernel, "print(1 + 1)").stdout.strip() == "2"
            _stop_and_check(first, signal.SIGTERM)
    finally:
        first.close()

    second = DemoRun(env)
    try:
        second.wait_for("Press Ctrl-C", timeout=120)
        assert "synth:" not in second.output  # warehouse kept
        # ... and its derived DP tables checked against the policies (current: nothing rebuilt)
        assert "warehouse: checking the derived DP tables" in second.output
        assert "every derived table is current" in second.output
        assert "init: created user" not in second.output  # accounts kept
        assert "demo: created" not in second.output  # the enterprise too
        assert "  ent " in second.output
        with HubUser(f"http://127.0.0.1:{port}/", "alice", PASSWORD) as alice:
            alice.login()
            alice.start_server()
            _stop_and_check(second, signal.SIGINT)
    finally:
        second.close()

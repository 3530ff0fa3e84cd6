"""A browser-less JupyterHub user: sign in with the login form, start the server, run code in a kernel.

Everything goes through the public proxy, exactly as a browser would: the hub's login
form (with its XSRF token), the hub's OAuth hand-over to the user's server, then the
server's kernel REST API and the kernel websocket (Jupyter messaging protocol).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import websocket


class LoginRefused(Exception):
    """The hub's login form did not sign the user in."""


@dataclass
class ExecResult:
    stdout: str = ""
    stderr: str = ""
    error: dict[str, Any] | None = None
    data: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    def json(self) -> Any:
        """The last stdout line parsed as JSON (tests print one JSON document)."""
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        if not lines:
            raise AssertionError(f"no output; stderr={self.stderr!r} error={self.error!r}")
        return json.loads(lines[-1])


class HubUser:
    """One signed-in user. Use as a context manager (closes the HTTP client)."""

    def __init__(self, base_url: str, username: str, password: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.username = username
        self.password = password
        self.http = httpx.Client(base_url=self.base_url, follow_redirects=True, timeout=timeout)

    def __enter__(self) -> HubUser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # -- hub ------------------------------------------------------------------------------------
    def _xsrf(self, path: str) -> str:
        r = self.http.get(path)
        r.raise_for_status()
        token = self.http.cookies.get("_xsrf")
        if not token:
            raise AssertionError(f"no _xsrf cookie after GET {path}")
        return token

    def login(self) -> None:
        """POST the login form; raises LoginRefused when the hub shows the form again."""
        xsrf = self._xsrf("hub/login")
        r = self.http.post(
            "hub/login?next=",
            data={"username": self.username, "password": self.password, "_xsrf": xsrf},
            follow_redirects=False,
        )
        if r.status_code != 302:
            raise LoginRefused(f"{self.username}: HTTP {r.status_code}")

    def hub_api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        headers["X-XSRFToken"] = self.http.cookies.get("_xsrf", path="/hub/") or ""
        return self.http.request(method, f"hub/api/{path}", headers=headers, **kwargs)

    def start_server(self, timeout: float = 120.0) -> None:
        """Start (or reuse) the user's default server and wait until it answers."""
        r = self.hub_api("POST", f"users/{self.username}/server")
        if r.status_code not in (201, 202, 400):  # 400: already running
            raise AssertionError(f"spawn failed: HTTP {r.status_code} {r.text[:300]}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.hub_api("GET", f"users/{self.username}").json()
            server = (model.get("servers") or {}).get("", {})
            if server.get("ready"):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"server of {self.username} not ready after {timeout}s")
        # OAuth hand-over: hub cookie -> server cookie (a page, not an API URL, redirects to
        # /hub/api/oauth2/authorize); also sets the server's _xsrf cookie.
        r = self.http.get(f"user/{self.username}/lab")
        r.raise_for_status()
        self.server_api("GET", "api/status").raise_for_status()

    def stop_server(self) -> None:
        self.hub_api("DELETE", f"users/{self.username}/server")

    # -- single-user server -------------------------------------------------------------------
    def server_api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        cookies = self.http.cookies
        headers["X-XSRFToken"] = (
            cookies.get("_xsrf", path=f"/user/{self.username}/") or cookies.get("_xsrf") or ""
        )
        return self.http.request(method, f"user/{self.username}/{path}", headers=headers, **kwargs)

    def start_kernel(self) -> str:
        r = self.server_api("POST", "api/kernels", json={"name": "python3"})
        if r.status_code != 201:
            raise AssertionError(f"kernel start failed: HTTP {r.status_code} {r.text[:300]}")
        return str(r.json()["id"])

    def delete_kernel(self, kernel_id: str) -> None:
        self.server_api("DELETE", f"api/kernels/{kernel_id}")

    def execute(self, kernel_id: str, code: str, timeout: float = 120.0) -> ExecResult:
        """Run ``code`` in the kernel over its websocket; collect stdout, stderr, results, error."""
        ws_base = self.base_url.replace("http", "ws", 1)
        ws_url = f"{ws_base}user/{self.username}/api/kernels/{kernel_id}/channels"
        cookie = "; ".join(f"{c.name}={c.value}" for c in self.http.cookies.jar)
        conn = websocket.create_connection(ws_url, header=[f"Cookie: {cookie}"], timeout=timeout)
        try:
            msg_id = uuid.uuid4().hex
            conn.send(
                json.dumps(
                    {
                        "header": {
                            "msg_id": msg_id,
                            "username": self.username,
                            "session": uuid.uuid4().hex,
                            "msg_type": "execute_request",
                            "version": "5.3",
                        },
                        "parent_header": {},
                        "metadata": {},
                        "content": {"code": code, "silent": False, "store_history": False},
                        "channel": "shell",
                    }
                )
            )
            result = ExecResult()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                msg = json.loads(conn.recv())
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["msg_type"]
                content = msg["content"]
                if kind == "stream":
                    if content["name"] == "stdout":
                        result.stdout += content["text"]
                    else:
                        result.stderr += content["text"]
                elif kind in ("execute_result", "display_data"):
                    result.data.append(content["data"])
                elif kind == "error":
                    result.error = {"ename": content["ename"], "evalue": content["evalue"]}
                elif kind == "status" and content["execution_state"] == "idle":
                    return result
            raise AssertionError(f"kernel did not finish within {timeout}s")
        finally:
            conn.close()

    def run(self, code: str, timeout: float = 120.0) -> ExecResult:
        """Start a kernel, run ``code``, shut the kernel down."""
        kernel_id = self.start_kernel()
        try:
            return self.execute(kernel_id, code, timeout=timeout)
        finally:
            self.delete_kernel(kernel_id)

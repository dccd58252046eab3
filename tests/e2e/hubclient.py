"""Drive a real JupyterHub the way a browser and JupyterLab do.

``HubBrowser`` logs in through the hub's HTML login form (cookies + xsrf), starts
the analyst's server and gets an API token for it; ``KernelSession`` runs code
in a real kernel through the Jupyter server's REST and websocket APIs.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import httpx
import websocket


class HubBrowser:
    """One analyst's browser session on the hub."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, follow_redirects=False, timeout=30)
        self.username: str | None = None

    def close(self) -> None:
        self.http.close()

    def _xsrf(self) -> str:
        for cookie in self.http.cookies.jar:
            if cookie.name == "_xsrf" and cookie.path.startswith("/hub"):
                return cookie.value
        raise AssertionError("no _xsrf cookie from the hub")

    def login_page(self) -> str:
        page = self.http.get("/hub/login")
        assert page.status_code == 200, page.text
        return page.text

    def login(self, username: str, password: str) -> httpx.Response:
        """Submit the login form; return the hub's answer (302 on success)."""
        html = self.login_page()
        match = re.search(r'name="_xsrf"\s+value="([^"]+)"', html)
        assert match, "login form without an _xsrf field"
        response = self.http.post(
            "/hub/login",
            data={"username": username, "password": password, "_xsrf": match.group(1)},
        )
        if response.status_code == 302:
            self.username = username
        return response

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-XSRFToken": self._xsrf(), **kwargs.pop("headers", {})}
        return self.http.request(method, f"/hub/api{path}", headers=headers, **kwargs)

    def request_server(self) -> None:
        """Ask the hub to start the analyst's server (returns before it is ready)."""
        response = self.api("POST", f"/users/{self.username}/server", json={})
        assert response.status_code in (201, 202), response.text

    def wait_ready(self, timeout: float = 180, *, interval: float = 0.3) -> dict[str, Any]:
        """Wait until the analyst's server is ready (asking every ``interval`` s); return the user model."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.api("GET", f"/users/{self.username}").json()
            server = model.get("servers", {}).get("", {})
            if server.get("ready"):
                return model
            if not server:
                raise AssertionError(f"spawn of {self.username} failed: {model}")
            time.sleep(interval)
        raise AssertionError(f"server of {self.username} not ready after {timeout}s")

    def start_server(self, timeout: float = 180) -> dict[str, Any]:
        self.request_server()
        return self.wait_ready(timeout)

    def stop_server(self, timeout: float = 120) -> None:
        response = self.api("DELETE", f"/users/{self.username}/server")
        assert response.status_code in (202, 204), response.text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.api("GET", f"/users/{self.username}").json()
            if not model.get("servers"):
                return
            time.sleep(0.5)
        raise AssertionError(f"server of {self.username} did not stop in {timeout}s")

    def server_token(self) -> str:
        """An API token of the analyst, to talk to their own server like JupyterLab does."""
        response = self.api(
            "POST", f"/users/{self.username}/tokens", json={"note": "e2e", "expires_in": 3600}
        )
        assert response.status_code == 201, response.text
        return str(response.json()["token"])


class KernelSession:
    """A kernel on the analyst's Jupyter server, driven over REST and websocket."""

    def __init__(self, base_url: str, username: str, token: str) -> None:
        self.server_url = f"{base_url.rstrip('/')}/user/{username}"
        self.headers = {"Authorization": f"token {token}"}
        self.http = httpx.Client(headers=self.headers, timeout=60)
        response = self.http.post(f"{self.server_url}/api/kernels", json={"name": "python3"})
        assert response.status_code == 201, response.text
        self.kernel_id = response.json()["id"]
        self.last_round_trip: float | None = None  # seconds, execute_request -> execute_reply
        ws_url = self.server_url.replace("http", "ws", 1)
        self.ws = websocket.create_connection(
            f"{ws_url}/api/kernels/{self.kernel_id}/channels",
            header=[f"{k}: {v}" for k, v in self.headers.items()],
            timeout=60,
        )

    def execute(self, code: str, timeout: float = 60) -> str:
        """Run ``code``; return its stdout and result; raise on an error in the kernel."""
        msg_id = uuid.uuid4().hex
        self.last_round_trip = None
        sent = time.perf_counter()
        self.ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "username": "e2e",
                        "session": uuid.uuid4().hex,
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": {"code": code, "silent": False, "stop_on_error": True},
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        out: list[str] = []
        reply: dict[str, Any] | None = None
        idle = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (reply and idle):
            msg = json.loads(self.ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "execute_result":
                out.append(content["data"].get("text/plain", ""))
            elif kind == "execute_reply":
                self.last_round_trip = time.perf_counter() - sent
                reply = content
                deadline = min(deadline, time.monotonic() + 30)  # output still on its way
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
        if reply is not None:
            # The shell reply decides; output comes on iopub before the kernel goes idle.
            if reply["status"] != "ok":
                raise KernelError(f"{reply.get('ename')}: {reply.get('evalue')}")
            return "".join(out)
        raise AssertionError(f"no reply to {code!r} within {timeout}s")

    def close(self) -> None:
        self.ws.close()
        self.http.close()


class KernelError(Exception):
    """Code raised inside the kernel."""

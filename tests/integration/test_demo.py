"""``dpsandbox demo --no-hub`` as a user runs it: start, sign in, Ctrl-C, run again."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.live import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.xdist_group("demo")


class Demo:
    """The demo as a subprocess, its output read line by line in a thread."""

    def __init__(self, home: Path, port: int) -> None:
        script = Path(sys.executable).with_name("dpsandbox")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "gateway.cli"]
        env = {**os.environ, "DPSANDBOX_HOME": str(home), "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": str(ROOT)}
        env.pop("DPSANDBOX_DATABASE_URL", None)
        self.proc = subprocess.Popen([*command, "demo", "--no-hub", "--gateway-port", str(port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env, cwd=ROOT)
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.output.append(line)
            if text in line:
                return "".join(self.output)
        raise AssertionError(f"{text!r} never printed; output:\n{''.join(self.output)}")

    def stop(self, signum: int) -> int:
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=60)
        self.wait_for("dp-sandbox demo stopped", timeout=10)
        return code


def sign_in(url: str, username: str, password: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/auth/token", json={"username": username,
                                                     "password": password})


def test_demo_starts_prints_accounts_and_stops_cleanly(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    url = f"http://127.0.0.1:{port}"
    first = Demo(home, port)
    try:
        out = first.wait_for("Press Ctrl-C")
        assert f"{url}/console" in out and f"{url}/docs" in out
        passwords = dict(re.findall(r"user (\S+)\s+password (\S+)", out))
        assert set(passwords) == {"admin", "auditor", "researcher", "enterprise"}
        for name in ("flights", "exam", "credit"):
            assert re.search(rf"dataset {name}: registered", out)
        resp = sign_in(url, "researcher", passwords["researcher"])
        assert resp.status_code == 200, resp.text
        token = resp.json()["access_token"]
        catalog = httpx.get(f"{url}/v1/datasets", headers={"Authorization": f"Bearer {token}"})
        assert {d["name"] for d in catalog.json()} == {"flights", "exam", "credit"}
        assert httpx.get(f"{url}/docs").status_code == 200
        assert first.stop(signal.SIGINT) == 0
    finally:
        if first.proc.poll() is None:
            first.proc.kill()
    with pytest.raises(httpx.ConnectError):  # the gateway went down with the demo
        httpx.get(f"{url}/healthz")
    assert (home / "dpsandbox.sqlite").exists()
    assert (home.stat().st_mode & 0o777) == 0o700

    second = Demo(home, port)
    try:
        again = second.wait_for("Press Ctrl-C")
        assert "already exist" in again and "password " not in again.split("already exist")[0]
        assert again.count("already registered") == 3
        assert sign_in(url, "admin", passwords["admin"]).status_code == 200
        assert second.stop(signal.SIGTERM) == 0
    finally:
        if second.proc.poll() is None:
            second.proc.kill()


def test_demo_reports_a_busy_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        demo = Demo(tmp_path / "home", port)
        try:
            out = demo.wait_for("dp-sandbox demo stopped")
            assert demo.proc.wait(timeout=30) == 1
            assert "did not start" in out
        finally:
            if demo.proc.poll() is None:
                demo.proc.kill()
    shutil.rmtree(tmp_path / "home", ignore_errors=True)

"""``dpsandbox demo`` as a user runs it: a quiet terminal, logs in files, clean stops.

- ``--no-hub`` in the foreground: start, sign in, Ctrl-C, run again (state kept), SIGTERM;
- the whole demo with JupyterHub started in the background by a non-interactive shell
  (which makes it ignore SIGINT), then ``kill -INT``: everything stops, nothing is left;
- the terminal in Chinese with ``DPSANDBOX_LANG=zh_CN``.
"""

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
# What a log line looks like (JupyterHub, the proxy, uvicorn, Python's logging, tracebacks).
LOG_LINE = re.compile(r"^\s*(\[[DIWEC] \d{4}-|INFO:|WARNING:|ERROR:|DEBUG:|Traceback|"
                      r"\d\d:\d\d:\d\d\.\d+ \[ConfigProxy\])")


def _command() -> list[str]:
    script = Path(sys.executable).with_name("dpsandbox")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gateway.cli"]


def _env(home: Path, lang: str = "en") -> dict[str, str]:
    env = {**os.environ, "DPSANDBOX_HOME": str(home), "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(ROOT), "DPSANDBOX_LANG": lang}
    env.pop("DPSANDBOX_DATABASE_URL", None)
    return env


def assert_quiet(out: str) -> None:
    """Only the demo's own lines: no log line, and few lines at all."""
    noisy = [line for line in out.splitlines() if LOG_LINE.match(line)]
    assert not noisy, noisy
    assert len(out.splitlines()) < 40, out


class Demo:
    """The demo as a subprocess, its output read line by line in a thread."""

    def __init__(self, home: Path, port: int, lang: str = "en") -> None:
        self.proc = subprocess.Popen([*_command(), "demo", "--no-hub", "--gateway-port", str(port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=_env(home, lang), cwd=ROOT)
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

    def stop(self, signum: int, stopped: str = "dp-sandbox demo stopped") -> int:
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=60)
        self.wait_for(stopped, timeout=10)
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
        assert out.startswith("dp-sandbox demo: usable but invisible")  # the banner
        assert "[1/2] preparing datasets and accounts ... done" in out
        assert re.search(r"\[2/2\] starting the gateway on \S+ \.\.\. ready", out)
        assert f"{url}/console" in out and f"{url}/docs" in out
        assert f"Logs: {home / 'logs'}" in out
        passwords = dict(re.findall(r"user (\S+)\s+password (\S+)", out))
        assert set(passwords) == {"admin", "auditor", "researcher", "enterprise"}
        for name in ("flights", "exam", "credit"):
            assert re.search(rf"dataset {name}: registered", out)
        assert_quiet(out)
        resp = sign_in(url, "researcher", passwords["researcher"])
        assert resp.status_code == 200, resp.text
        token = resp.json()["access_token"]
        catalog = httpx.get(f"{url}/v1/datasets", headers={"Authorization": f"Bearer {token}"})
        assert {d["name"] for d in catalog.json()} == {"flights", "exam", "credit"}
        assert httpx.get(f"{url}/docs").status_code == 200
        assert first.stop(signal.SIGINT) == 0
        assert_quiet("".join(first.output))
    finally:
        if first.proc.poll() is None:
            first.proc.kill()
    with pytest.raises(httpx.ConnectError):  # the gateway went down with the demo
        httpx.get(f"{url}/healthz")
    assert (home / "dpsandbox.sqlite").exists()
    assert (home.stat().st_mode & 0o777) == 0o700
    gateway_log = home / "logs" / "gateway.log"  # the gateway's output went here
    assert gateway_log.exists() and (gateway_log.stat().st_mode & 0o777) == 0o600

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
            assert "did not start" in out and "gateway.log" in out
        finally:
            if demo.proc.poll() is None:
                demo.proc.kill()
    shutil.rmtree(tmp_path / "home", ignore_errors=True)


def test_the_demo_speaks_chinese(tmp_path: Path) -> None:
    demo = Demo(tmp_path / "home", free_port(), lang="zh_CN")
    try:
        out = demo.wait_for("Ctrl-C")
        assert "可用不可见" in out and "演示账户" in out and "管理员" in out
        assert "Demo accounts" not in out and "What to do first" not in out
        assert demo.stop(signal.SIGINT, stopped="已停止") == 0
    finally:
        if demo.proc.poll() is None:
            demo.proc.kill()


# -- the whole demo, in the background ---------------------------------------------------


def _processes_of(home: Path) -> list[str]:
    """Processes whose environment names this demo's home (gateway, hub, proxy, culler)."""
    marker = f"DPSANDBOX_HOME={home}".encode() + b"\0"
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker in (proc / "environ").read_bytes() + b"\0" and \
                    "State:\tZ" not in (proc / "status").read_text():
                found.append(f"{proc.name} {(proc / 'cmdline').read_bytes()!r}")
        except OSError:
            continue
    return found


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if "State:\tZ" in Path(f"/proc/{pid}/status").read_text():
                return True
        except OSError:
            return True
        time.sleep(0.2)
    return False


def _wait_text(path: Path, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = path.read_text(errors="replace") if path.exists() else ""
        if text in out or "demo stopped" in out:
            return out
        time.sleep(0.5)
    return path.read_text(errors="replace") if path.exists() else ""


def test_kill_int_stops_a_background_demo_and_everything_it_started(tmp_path: Path) -> None:
    home, out_file = tmp_path / "home", tmp_path / "demo.out"
    gateway_port, hub_port = free_port(), free_port()
    command = " ".join([*_command(), "demo", "--gateway-port", str(gateway_port),
                        "--hub-port", str(hub_port)])
    # `&` in a non-interactive shell: the demo starts with SIGINT ignored
    started = subprocess.run(["sh", "-c", f"{command} > {out_file} 2>&1 & echo $!"],
                             env=_env(home), cwd=ROOT, capture_output=True, text=True,
                             check=True)
    pid = int(started.stdout.strip())
    try:
        out = _wait_text(out_file, "Press Ctrl-C", timeout=240)
        assert "Press Ctrl-C" in out, out
        assert re.search(r"\[3/3\] starting JupyterHub on \S+ \.\.\. ready", out), out
        assert f"http://127.0.0.1:{hub_port}/" in out
        assert_quiet(out)
        hub_log = (home / "logs" / "hub.log").read_text()
        assert "JupyterHub is now running" in hub_log  # the hub's and proxy's lines went here
        assert "configurable_http_proxy" in hub_log
        alarming = [line for line in hub_log.splitlines() if re.match(r"\[[WEC] ", line)]
        assert not alarming, alarming  # a healthy start warns about nothing
        assert httpx.get(f"http://127.0.0.1:{hub_port}/hub/login").status_code == 200
        assert len(_processes_of(home)) >= 3  # gateway, hub, proxy (and the culler)

        os.kill(pid, signal.SIGINT)
        assert _wait_gone(pid, timeout=60), "the demo ignored SIGINT"
    finally:
        if not _wait_gone(pid, timeout=0):
            os.kill(pid, signal.SIGKILL)
    assert "dp-sandbox demo stopped." in out_file.read_text()
    deadline = time.monotonic() + 10
    while _processes_of(home) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_of(home), _processes_of(home)
    hub_log = (home / "logs" / "hub.log").read_text()
    assert "initiating shutdown" in hub_log and "...done" in hub_log

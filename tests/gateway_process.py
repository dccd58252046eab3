"""A real ``dpsandbox gateway`` in its own process, for crash and fault tests.

Unlike :mod:`tests.live` (uvicorn in a thread), a process can be SIGKILLed mid-request and
started again on the same home and store, as an operator's bad day would have it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.live import free_port

ROOT = Path(__file__).resolve().parents[1]
# Fast heartbeats and recovery rounds, so a test sees an orphan finished in seconds. A
# live process counts as silent after 10 missed beats: on 2 busy cores a beat may be late
# by seconds, and a live replica taken for dead has its running queries finished by a peer.
FAST_RECOVERY = {"DPSANDBOX_HEARTBEAT_SECONDS": "0.5", "DPSANDBOX_INSTANCE_STALE_SECONDS": "5",
                 "DPSANDBOX_RECOVERY_INTERVAL_SECONDS": "1"}


class GatewayProcess:
    def __init__(self, home: Path, db_url: str | None, **settings: str) -> None:
        self.home, self.db_url, self.settings = home, db_url, settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = home / f"gateway-{self.port}.log"

    def env(self) -> dict[str, str]:
        env = {**os.environ, "DPSANDBOX_HOME": str(self.home), "PYTHONPATH": str(ROOT),
               "PYTHONUNBUFFERED": "1", **FAST_RECOVERY, **self.settings}
        env.pop("DPSANDBOX_DATABASE_URL", None)
        if self.db_url:
            env["DPSANDBOX_DATABASE_URL"] = self.db_url
        return env

    def start(self, timeout: float = 120) -> GatewayProcess:  # 2 busy cores: imports are slow
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "gateway", "--port", str(self.port)],
                env=self.env(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("the gateway did not start")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, as a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def token(self, username: str, password: str) -> str:
        resp = httpx.post(f"{self.url}/v1/auth/token",
                          json={"username": username, "password": password}, timeout=30)
        resp.raise_for_status()
        return str(resp.json()["access_token"])

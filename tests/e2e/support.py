"""Helpers shared by the end-to-end fixtures and tests."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
DPSANDBOX = Path(sys.executable).with_name("dpsandbox")
PASSWORD = "e2e-password-" + secrets.token_hex(4)
# Outside /tmp on purpose (see the module docstring); /opt/dpsandbox is root's.
E2E_ROOT = Path("/opt/dpsandbox/e2e")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(
    url: str,
    timeout: float = 60,
    proc: subprocess.Popen[bytes] | None = None,
    *,
    ready: tuple[int, ...] = (200, 401, 403),
) -> None:
    """Wait until ``url`` answers with one of the ``ready`` statuses."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{url}: process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code in ready:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout}s")


def processes_of(uid: int) -> list[int]:
    """Live (non-zombie) processes whose real uid is ``uid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields["Uid"].split()[0]) == uid and fields["State"].split()[0] not in "ZX":
            found.append(int(entry.name))
    return found


@dataclass
class Gateway:
    home: Path
    url: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    users: dict[str, str] = field(default_factory=dict)  # name -> role

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [str(DPSANDBOX), *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"dpsandbox {' '.join(args)}: {result.stderr}"
        return result.stdout

    def add_user(self, name: str, role: str) -> str:
        password_file = self.home.parent / f"{name}.password"
        password_file.write_text(PASSWORD + "\n")
        self.cli("user", "add", name, "--role", role, "--password-file", str(password_file))
        password_file.unlink()
        self.users[name] = role
        return name


@dataclass
class Hub:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

"""Helpers shared by the end-to-end fixtures and tests, and by ``bench/hub.py``.

The context managers start the real thing and clean up after it:
``run_directory`` (a fresh folder under ``E2E_ROOT``), ``running_gateway``
(``dpsandbox gateway`` as a subprocess), ``running_hub`` (the real hub) and
``system_users_removed`` (the sandboxes' system accounts, deleted at the end).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from sandbox.hub.build_env import DEFAULT_PYTHON
from sandbox.hub.isolation import system_username

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
    hub_api_port: int = 0
    proxy_api_port: int = 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def sandbox_host_missing() -> list[str]:
    """What this machine lacks to spawn real sandboxes as root (empty: nothing)."""
    return [
        what
        for what, ok in [
            ("bubblewrap (apt-get install bubblewrap)", shutil.which("bwrap")),
            (f"{DEFAULT_PYTHON} (apt-get install python3 python3-venv)", DEFAULT_PYTHON.exists()),
            ("the dpsandbox CLI in this venv (pip install -e .)", DPSANDBOX.exists()),
        ]
        if not ok
    ]


@contextmanager
def run_directory(prefix: str = "run-", *, keep: bool = False) -> Iterator[Path]:
    """A fresh folder under ``E2E_ROOT`` for the gateway's home and the logs."""
    E2E_ROOT.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=E2E_ROOT))
    # Searchable by the sandboxes' users, as /root/.dpsandbox's parent is not but
    # /srv or /var/lib would be: the gateway's own 0700 home and the spawner's
    # tmpfs over it are what must keep its files out of reach.
    os.chmod(E2E_ROOT, 0o755)  # noqa: S103
    os.chmod(path, 0o755)  # noqa: S103
    try:
        yield path
    finally:
        if keep:
            print(f"\nend-to-end files (gateway, hub logs) kept in {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


@contextmanager
def running_gateway(run_dir: Path) -> Iterator[Gateway]:
    """``dpsandbox gateway`` on a free port, with a fresh ``DPSANDBOX_HOME`` in ``run_dir``."""
    home = run_dir / "dpsandbox-home"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DPSANDBOX_HOME": str(home),
        "DPSANDBOX_GATEWAY_URL": url,
        "RUST_BACKTRACE": "0",
    }
    env.pop("DPSANDBOX_DATABASE_URL", None)
    with open(run_dir / "gateway.log", "wb") as log:
        proc = subprocess.Popen(
            [str(DPSANDBOX), "gateway", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        gateway = Gateway(home=home, url=url, env=env, proc=proc)
        try:
            wait_http(f"{url}/v1/datasets", proc=proc)
            yield gateway
        finally:
            for started in {proc, gateway.proc}:  # restart_gateway replaces gateway.proc
                started.terminate()
                try:
                    started.wait(15)
                except subprocess.TimeoutExpired:
                    started.kill()
                    started.wait()


def add_exam_dataset(gateway: Gateway, run_dir: Path) -> str:
    """Register the small demo dataset ``exam`` (4,059 rows, open) through the CLI."""
    from gateway.demo_data import LOADERS

    data = run_dir / "exam.parquet"
    LOADERS["exam"]().write_parquet(data)
    gateway.cli("dataset", "add", "exam", "--data", str(data))
    return "exam"


@contextmanager
def running_hub(
    gateway: Gateway, run_dir: Path, *, env: Mapping[str, str] | None = None
) -> Iterator[Hub]:
    """The real hub with the real configuration, talking to ``gateway``; stopped at the end.

    ``env`` adds to (and overrides) this process's environment; the hub secret is always
    the configuration's own. The isolation is bubblewrap unless ``env`` names another
    (``DPSANDBOX_ISOLATION``): the Docker tests pass theirs.
    """
    from sandbox.hub.run import start_hub, stop_hub

    port, hub_api_port, proxy_api_port = free_port(), free_port(), free_port()
    log_path = run_dir / f"hub-{port}.log"
    full_env = dict(os.environ)
    for name in ("DPSANDBOX_HUB_SECRET", "DPSANDBOX_SANDBOX_ISOLATION", "DPSANDBOX_ISOLATION"):
        full_env.pop(name, None)
    full_env["DPSANDBOX_ISOLATION"] = "bubblewrap"
    # Bubblewrap's size-limited home images go with the run (removed with it).
    full_env["DPSANDBOX_SANDBOX_HOMES_DIR"] = str(run_dir / f"homes-{port}")
    full_env.update(env or {})
    with open(log_path, "wb") as log:
        proc = start_hub(
            gateway.home,
            gateway.url,
            port,
            hub_api_port=hub_api_port,
            proxy_api_port=proxy_api_port,
            env=full_env,
            stdout=log.fileno(),
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{url}/hub/api", proc=proc, ready=(200,))
            yield Hub(url=url, proc=proc, log_path=log_path, hub_api_port=hub_api_port,
                      proxy_api_port=proxy_api_port)
        finally:
            stop_hub(proc)


def restart_gateway(gateway: Gateway, run_dir: Path, *, down: float = 0) -> None:
    """Stop the gateway, wait ``down`` seconds, start it again on the same port and home."""
    gateway.proc.terminate()
    gateway.proc.wait(15)
    time.sleep(down)
    port = gateway.url.rsplit(":", 1)[1]
    with open(run_dir / "gateway.log", "ab") as log:
        gateway.proc = subprocess.Popen(
            [str(DPSANDBOX), "gateway", "--port", port],
            env=gateway.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    wait_http(f"{gateway.url}/v1/datasets", proc=gateway.proc)


def server_processes(hub_name: str) -> dict[int, list[str]]:
    """The processes of ``hub_name``'s sandbox: pid -> command line."""
    uid = pwd.getpwnam(system_username(hub_name)).pw_uid
    found = {}
    for pid in processes_of(uid):
        try:
            found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
    return found


def server_environ(hub_name: str) -> dict[str, str]:
    """The environment the spawner gave ``hub_name``'s server (read from /proc as root)."""
    for pid, cmdline in server_processes(hub_name).items():
        if any(part.endswith("sandbox_init.py") for part in cmdline):
            raw = Path(f"/proc/{pid}/environ").read_bytes().decode()
            return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)
    raise AssertionError(f"no sandbox of {hub_name} is running")


def assert_tokens_refused(gateway: Gateway, tokens: list[str]) -> None:
    query = {"dataset": "exam", "select": [{"agg": "count"}], "epsilon": 0.1}
    deadline = time.monotonic() + 10
    for held in tokens:
        auth = {"Authorization": f"Bearer {held}"}
        while httpx.get(f"{gateway.url}/v1/me", headers=auth).status_code != 401:
            assert time.monotonic() < deadline, "the token still works after its server stopped"
            time.sleep(0.2)
        assert httpx.post(f"{gateway.url}/v1/queries", json=query, headers=auth).status_code == 401
        assert httpx.post(f"{gateway.url}/v1/auth/refresh", headers=auth).status_code == 401


def remove_system_user(hub_name: str) -> bool:
    """Delete the sandbox account of ``hub_name`` and its home; kill what it left running.

    Returns whether there was an account to delete.
    """
    account = system_username(hub_name)
    try:
        uid = pwd.getpwnam(account).pw_uid
    except KeyError:
        return False
    for pid in processes_of(uid):  # only if something failed half-way
        with contextlib.suppress(ProcessLookupError):  # ended meanwhile
            os.kill(pid, 9)
    subprocess.run(["userdel", "--remove", account], capture_output=True, check=False)
    return True


@contextmanager
def system_users_removed(hub_names: Iterable[str]) -> Iterator[None]:
    """Remove the sandbox accounts of ``hub_names`` (created on first spawn) at the end."""
    try:
        yield
    finally:
        for name in hub_names:
            remove_system_user(name)

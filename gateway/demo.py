"""``dpsandbox demo``: the whole system on one machine, for trying it out.

1. the gateway's state in ``DPSANDBOX_HOME`` (SQLite), the demo datasets registered
   (skipped when already registered with the same version);
2. one account per role, with generated passwords printed ONCE (a later run reuses the
   state and says the accounts exist);
3. the gateway as a subprocess (``dpsandbox gateway --port``), then JupyterHub through
   the hub's launcher (:mod:`sandbox.hub.run`), pointed at the gateway;
4. the URLs and what to do first; Ctrl-C (or SIGTERM) stops everything cleanly.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from rich.console import Console

from gateway.settings import Settings

console = Console(highlight=False, soft_wrap=True)
# (username, role, org): one account per role; the name says the role
DEMO_ACCOUNTS = (
    ("admin", "admin", None),
    ("auditor", "auditor", None),
    ("researcher", "researcher", None),
    ("enterprise", "enterprise", "acme-insurance"),
)
READY_TIMEOUT = 90.0


@dataclass(frozen=True)
class Account:
    username: str
    role: str
    org: str | None
    password: str | None  # None: the account existed before this run


def _say(message: str) -> None:
    console.print(message)


# -- state: datasets and accounts ------------------------------------------------------


def register_demo_datasets(services: Any, actor: Any) -> None:
    from gateway.demo_data import export_demo_data
    from gateway.domain.errors import NotFound

    sources = export_demo_data(services.settings.home / "demo-source")
    for name, data in sources.items():
        try:
            current: str | None = services.catalog.record(name).version
        except NotFound:
            current = None
        rec = services.catalog.register(actor, name=name, data=data)  # unchanged: a no-op
        if rec.version == current:
            _say(f"  dataset {name}: already registered (version {current})")
            continue
        verb = "re-registered" if current else "registered"
        _say(f"  dataset {name}: {verb}, version {rec.version}, {rec.row_count} rows, "
             f"access {rec.policy.access}")


def ensure_demo_accounts(services: Any, actor: Any) -> list[Account]:
    existing = {u["username"] for u in services.users.list(actor)}
    accounts = []
    for username, role, org in DEMO_ACCOUNTS:
        if username in existing:
            accounts.append(Account(username, role, org, None))
            continue
        password = secrets.token_urlsafe(12)
        services.users.create(actor, username=username, role=role, password=password, org=org)
        accounts.append(Account(username, role, org, password))
    return accounts


def prepare_state(settings: Settings) -> list[Account]:
    from gateway.bootstrap import bootstrap
    from gateway.services.common import Principal

    _say(f"dp-sandbox demo: state in {settings.home}")
    services = bootstrap(settings)
    actor = Principal(username="cli:demo", role="admin")
    try:
        register_demo_datasets(services, actor)
        return ensure_demo_accounts(services, actor)
    finally:
        services.store.dispose()


def print_accounts(accounts: list[Account]) -> None:
    new = [a for a in accounts if a.password is not None]
    old = [a for a in accounts if a.password is None]
    if new:
        _say("\nDemo accounts (passwords are shown this once; write them down):")
        for a in new:
            org = f" (org {a.org})" if a.org else ""
            _say(f"  {a.role:<11} user {a.username:<11} password {a.password}{org}")
    if old:
        names = ", ".join(a.username for a in old)
        _say(f"\nDemo accounts already exist: {names}. Their passwords were printed on the "
             "first run; lost them? stop the demo, delete DPSANDBOX_HOME and run it again, "
             "or add an account with `dpsandbox user add NAME --role ...`.")


# -- processes ---------------------------------------------------------------------------


def _child_env(settings: Settings, gateway_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DPSANDBOX_HOME"] = str(settings.home)
    env["DPSANDBOX_GATEWAY_URL"] = gateway_url
    env["RUST_BACKTRACE"] = "0"
    return env


def start_gateway(settings: Settings, port: int, gateway_url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "gateway", "--port", str(port)],
        env=_child_env(settings, gateway_url),
        start_new_session=True,  # Ctrl-C reaches this launcher only; it stops children in order
    )


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = READY_TIMEOUT) -> bool:
    """Poll ``url`` until it answers 200, the process exits, or the time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return True
        time.sleep(0.25)
    return False


def start_hub(settings: Settings, port: int, gateway_url: str) -> subprocess.Popen[bytes] | None:
    """JupyterHub through the hub's launcher; None (and why) when it cannot start."""
    try:
        from sandbox.hub import run as hub_run
    except ImportError as exc:
        _say(f"[yellow]JupyterHub is not available ({exc}); the hub launcher "
             "sandbox/hub/run.py could not be imported. The gateway and console keep "
             "running; use --no-hub to skip this message.[/yellow]")
        return None
    sandbox_env = Path(os.environ.get("DPSANDBOX_SANDBOX_ENV", "/opt/dpsandbox/sandbox-env"))
    if not sandbox_env.exists():
        _say(f"[yellow]The sandbox environment {sandbox_env} is missing: spawning "
             "notebooks will fail until `make sandbox-env` builds it.[/yellow]")
    proc: subprocess.Popen[bytes] = hub_run.start_hub(settings.home, gateway_url, port,
                                                      env=_child_env(settings, gateway_url))
    return proc


def stop_process(proc: subprocess.Popen[bytes] | None, name: str, timeout: float = 30.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    _say(f"stopping the {name} ...")
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _say(f"the {name} did not stop in {timeout:g} s; killing it")
        proc.kill()
        proc.wait()


def stop_hub(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    _say("stopping JupyterHub and every sandbox ...")
    try:
        from sandbox.hub.run import stop_hub as hub_stop
    except ImportError:
        stop_process(proc, "hub")
        return
    hub_stop(proc)


@contextmanager
def stop_signals() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C (KeyboardInterrupt) while the demo runs."""
    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- the demo ----------------------------------------------------------------------------


def print_next_steps(gateway_url: str, hub_url: str | None) -> None:
    _say("\ndp-sandbox is running:")
    if hub_url:
        _say(f"  notebooks (JupyterHub)  {hub_url}/")
    _say(f"  web console             {gateway_url}/console")
    _say(f"  API docs                {gateway_url}/docs")
    _say("\nWhat to do first:")
    step = 1
    if hub_url:
        _say(f"  {step}. Sign in to JupyterHub as `researcher`; in a notebook: "
             "`from sandbox import connect; gw = connect(); gw.datasets()`. Open data "
             "(exam) answers at once; `gw.request_access(\"flights\", ...)` applies for "
             "the rest. Scenario notebooks wait in ~/templates in your sandbox.")
        step += 1
    else:
        _say(f"  {step}. From Python: `from sandbox import connect; gw = connect("
             f"\"{gateway_url}\", username=\"researcher\", password=...)`.")
        step += 1
    _say(f"  {step}. Sign in to the console as `admin` to approve applications and "
         "review queries on restricted data (credit).")
    _say(f"  {step + 1}. Sign in as `auditor` to read and verify the audit log.")
    _say("\nPress Ctrl-C to stop everything.")


def _supervise(gateway: subprocess.Popen[bytes], hub: subprocess.Popen[bytes] | None) -> int:
    """Wait for Ctrl-C; if the gateway dies, stop; if the hub dies, keep the gateway."""
    while True:
        if gateway.poll() is not None:
            _say(f"[red]the gateway exited with status {gateway.returncode}[/red]")
            return 1
        if hub is not None and hub.poll() is not None:
            _say(f"[yellow]JupyterHub exited with status {hub.returncode}; the gateway "
                 "and console keep running[/yellow]")
            hub = None
        time.sleep(0.5)


def run_demo(*, gateway_port: int, hub_port: int, hub: bool) -> int:
    settings = Settings()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    gateway: subprocess.Popen[bytes] | None = None
    hub_proc: subprocess.Popen[bytes] | None = None
    with stop_signals():
        try:
            print_accounts(prepare_state(settings))
            _say(f"\nstarting the gateway on {gateway_url} ...")
            gateway = start_gateway(settings, gateway_port, gateway_url)
            if not wait_ready(f"{gateway_url}/healthz", gateway):
                _say(f"[red]the gateway did not start on port {gateway_port} (is the port "
                     "in use? try --gateway-port)[/red]")
                return 1
            hub_url = None
            if hub:
                hub_proc = start_hub(settings, hub_port, gateway_url)
                if hub_proc is not None:
                    _say(f"starting JupyterHub on port {hub_port} ...")
                    if wait_ready(f"http://127.0.0.1:{hub_port}/hub/health", hub_proc):
                        hub_url = f"http://127.0.0.1:{hub_port}"
                    else:
                        _say("[yellow]JupyterHub did not come up (see its log above); the "
                             "gateway and console keep running[/yellow]")
            print_next_steps(gateway_url, hub_url)
            return _supervise(gateway, hub_proc)
        except KeyboardInterrupt:
            _say("\ninterrupted")
            return 0
        finally:
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
            try:
                stop_hub(hub_proc)
                stop_process(gateway, "gateway")
            finally:
                signal.signal(signal.SIGINT, previous)
            _say("dp-sandbox demo stopped.")

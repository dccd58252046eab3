"""``dpsandbox demo``: the whole system on one machine, for trying it out.

1. the gateway's state in ``DPSANDBOX_HOME`` (SQLite), the demo datasets registered
   (skipped when already registered with the same version), one account per role with
   generated passwords printed ONCE (a later run reuses the state);
2. the gateway as a subprocess (``dpsandbox gateway --port``);
3. JupyterHub through the hub's launcher (:mod:`sandbox.hub.run`), pointed at the gateway;
4. the accounts, URLs and first steps; Ctrl-C, SIGTERM or SIGHUP stops everything.

The terminal shows only :mod:`gateway.demo_output`'s lines. The gateway's log goes to
``DPSANDBOX_HOME/logs/gateway.log``; the hub's, its proxy's and the analysts' servers' to
``logs/hub.log``. The hub is declared ready from its own health endpoint on its private
API port (logged at debug level) and its "now running" line, never by probing the public
proxy before the hub's route is in place (which the proxy logs as an error).

Signals are handled explicitly: a demo started in the background by a non-interactive
shell inherits "ignore SIGINT", so the handlers are installed, not assumed.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import IO, Any

import httpx

from gateway.demo_output import Account, Steps, accounts, banner, next_steps, say, stopped
from gateway.i18n import _, _l
from gateway.settings import Settings

__all__ = ["DEMO_ACCOUNTS", "run_demo"]

# (username, role, org): one account per role; the name says the role
DEMO_ACCOUNTS = (
    ("admin", "admin", None),
    ("auditor", "auditor", None),
    ("researcher", "researcher", None),
    ("enterprise", "enterprise", "acme-insurance"),
)
READY_TIMEOUT = 90.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
HUB_RUNNING = b"JupyterHub is now running"


# -- state: datasets and accounts ------------------------------------------------------


def register_demo_datasets(services: Any, actor: Any) -> list[str]:
    """Register the demo datasets; one line per dataset saying what happened."""
    from gateway.demo_data import export_demo_data
    from gateway.domain.errors import NotFound

    lines = []
    sources = export_demo_data(services.settings.home / "demo-source")
    for name, data in sources.items():
        try:
            current: str | None = services.catalog.record(name).version
        except NotFound:
            current = None
        rec = services.catalog.register(actor, name=name, data=data)  # unchanged: a no-op
        if rec.version == current:
            lines.append(str(_l("dataset %(name)s: already registered (version %(version)s)",
                                name=name, version=current)))
            continue
        verb = _("re-registered") if current else _("registered")
        lines.append(str(_l("dataset %(name)s: %(verb)s, version %(version)s, %(rows)s rows, "
                            "access %(access)s", name=name, verb=verb, version=rec.version,
                            rows=rec.row_count, access=rec.policy.access)))
    return lines


def ensure_demo_accounts(services: Any, actor: Any) -> list[Account]:
    existing = {u["username"] for u in services.users.list(actor)}
    listed = []
    for username, role, org in DEMO_ACCOUNTS:
        if username in existing:
            listed.append(Account(username, role, org, None))
            continue
        password = secrets.token_urlsafe(12)
        services.users.create(actor, username=username, role=role, password=password, org=org)
        listed.append(Account(username, role, org, password))
    return listed


def prepare_state(settings: Settings) -> tuple[list[str], list[Account]]:
    from gateway.bootstrap import bootstrap
    from gateway.services.common import Principal

    services = bootstrap(settings)
    actor = Principal(username="cli:demo", role="admin")
    try:
        return register_demo_datasets(services, actor), ensure_demo_accounts(services, actor)
    finally:
        services.store.dispose()


# -- processes ---------------------------------------------------------------------------


def _child_env(settings: Settings, gateway_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DPSANDBOX_HOME"] = str(settings.home)
    env["DPSANDBOX_GATEWAY_URL"] = gateway_url
    env["RUST_BACKTRACE"] = "0"
    return env


def open_log(logs: Path, name: str) -> IO[bytes]:
    """``logs/NAME.log`` for appending (0600), with a line marking this run."""
    path = logs / f"{name}.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    log = os.fdopen(fd, "ab", buffering=0)
    log.write(f"---- dpsandbox demo, {time.strftime('%Y-%m-%d %H:%M:%S')} ----\n".encode())
    return log


def start_gateway(settings: Settings, port: int, gateway_url: str,
                  log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "gateway", "--port", str(port)],
        env=_child_env(settings, gateway_url), stdin=subprocess.DEVNULL, stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a terminal's Ctrl-C reaches this launcher only; it stops children
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


def wait_log_line(path: Path, marker: bytes, proc: subprocess.Popen[bytes],
                  timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with suppress(OSError):
            if marker in path.read_bytes()[-65536:]:
                return True
        time.sleep(0.2)
    return False


def free_port(preferred: int) -> int:
    """``preferred`` when nothing listens there, else a free port the kernel picks."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_hub(settings: Settings, port: int, gateway_url: str, log: IO[bytes],
              logs: Path) -> tuple[subprocess.Popen[bytes] | None, str]:
    """JupyterHub through the hub's launcher; (process, "") or (None, why not)."""
    try:
        from sandbox.hub import run as hub_run
    except ImportError as exc:
        return None, str(_l("JupyterHub is not available (%(error)s); the gateway and console "
                            "keep running", error=exc))
    api_port = free_port(int(os.environ.get("DPSANDBOX_HUB_API_PORT", "8081")))
    proxy_port = free_port(int(os.environ.get("DPSANDBOX_PROXY_API_PORT", "8001")))
    proc: subprocess.Popen[bytes] = hub_run.start_hub(
        settings.home, gateway_url, port, hub_api_port=api_port, proxy_api_port=proxy_port,
        env=_child_env(settings, gateway_url), stdout=log.fileno(), stderr=subprocess.STDOUT)
    internal = f"http://127.0.0.1:{api_port}/hub/health"  # the hub itself, not the proxy
    if wait_ready(internal, proc) and wait_log_line(logs / "hub.log", HUB_RUNNING, proc):
        sandbox_env = Path(os.environ.get("DPSANDBOX_SANDBOX_ENV", "/opt/dpsandbox/sandbox-env"))
        if not (sandbox_env / "bin" / "jupyterhub-singleuser").exists():
            return proc, str(_l("[yellow]the sandbox environment %(env)s is missing: notebooks "
                                "cannot start until `make sandbox-env` builds it[/yellow]",
                                env=sandbox_env))
        return proc, ""
    return proc, str(_l("JupyterHub did not come up (see %(log)s); the gateway and console "
                        "keep running", log=logs / "hub.log"))


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_hub(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    from sandbox.hub.run import stop_hub as hub_stop

    hub_stop(proc)  # stops every sandbox, then the hub; a stray proxy too


@contextmanager
def stop_signals() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt while the demo runs.

    Installed explicitly: a background job of a non-interactive shell starts with SIGINT
    ignored, and Python then leaves it ignored.
    """
    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, interrupt) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def signals_ignored() -> Iterator[None]:
    """Let the cleanup finish: a second Ctrl-C must not leave children behind."""
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# -- the demo ----------------------------------------------------------------------------


def _supervise(gateway: subprocess.Popen[bytes], hub: subprocess.Popen[bytes] | None,
               logs: Path) -> int:
    """Wait for a stop signal; if the gateway dies, stop; if the hub dies, keep the gateway."""
    while True:
        if gateway.poll() is not None:
            say(str(_l("[red]the gateway exited with status %(code)s (see %(log)s)[/red]",
                       code=gateway.returncode, log=logs / "gateway.log")))
            return 1
        if hub is not None and hub.poll() is not None:
            say(str(_l("[yellow]JupyterHub exited with status %(code)s (see %(log)s); the "
                       "gateway and console keep running[/yellow]", code=hub.returncode,
                       log=logs / "hub.log")))
            hub = None
        time.sleep(0.5)


def run_demo(*, gateway_port: int, hub_port: int, hub: bool) -> int:
    settings = Settings()
    logs = settings.home / "logs"
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    gateway: subprocess.Popen[bytes] | None = None
    hub_proc: subprocess.Popen[bytes] | None = None
    steps = Steps(3 if hub else 2)
    with stop_signals():
        try:
            settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
            logs.mkdir(mode=0o700, exist_ok=True)
            banner(settings.home, logs)
            with steps.step(_("preparing datasets and accounts")) as outcome:
                lines, listed = prepare_state(settings)
                outcome.extend([_("done"), *lines])
            with steps.step(str(_l("starting the gateway on %(url)s", url=gateway_url))) as outcome:
                gateway = start_gateway(settings, gateway_port, gateway_url,
                                        open_log(logs, "gateway"))
                up = wait_ready(f"{gateway_url}/healthz", gateway)
                outcome.append(_("ready") if up else _("[red]failed[/red]"))
            if not up:
                say(str(_l("[red]the gateway did not start on port %(port)s (is the port in use? "
                           "try --gateway-port; see %(log)s)[/red]", port=gateway_port,
                           log=logs / "gateway.log")))
                return 1
            hub_url = None
            if hub:
                url = f"http://127.0.0.1:{hub_port}"
                with steps.step(str(_l("starting JupyterHub on %(url)s", url=url))) as outcome:
                    hub_proc, problem = start_hub(settings, hub_port, gateway_url,
                                                  open_log(logs, "hub"), logs)
                    running = hub_proc is not None and hub_proc.poll() is None
                    outcome.append(_("ready") if running and not problem
                                   else _("[yellow]not ready[/yellow]"))
                    outcome.extend([problem] if problem else [])
                    hub_url = url if running else None
            accounts(listed)
            next_steps(gateway_url, hub_url, logs)
            return _supervise(gateway, hub_proc, logs)
        except KeyboardInterrupt:
            say()
            say(_("stopping ..."))
            return 0
        finally:
            with signals_ignored():
                stop_hub(hub_proc)
                stop_process(gateway)
            stopped()

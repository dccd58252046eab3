"""Start JupyterHub with dp-sandbox's configuration (``dpsandbox hub``).

- ``main(port=8000)``: what ``dpsandbox hub`` calls; runs the hub in the
  foreground until Ctrl-C or SIGTERM, which stop every sandbox cleanly.
- ``start_hub(...)``: start it in the background and return the process
  (``dpsandbox demo``, end-to-end tests).
- ``hub_command_args`` / ``hub_environment``: the command line and environment,
  for callers that start the process themselves.

Settings come from ``DPSANDBOX_HOME`` and ``DPSANDBOX_GATEWAY_URL`` unless given.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from .settings import HubSettings

__all__ = ["CONFIG_FILE", "hub_command_args", "hub_environment", "main", "run_hub", "start_hub"]

CONFIG_FILE = Path(__file__).with_name("jupyterhub_config.py")
_PR_SET_PDEATHSIG = 1


def hub_command_args(settings_home: Path, gateway_url: str, port: int) -> list[str]:
    """The hub's command line; run it with ``hub_environment(...)`` and cwd = state dir.

    ``settings_home`` and ``gateway_url`` reach the configuration through the
    environment, not the command line.
    """
    del settings_home, gateway_url  # passed through hub_environment
    return [sys.executable, "-m", "jupyterhub", "--config", str(CONFIG_FILE), f"--port={port}"]


def hub_environment(
    settings_home: Path,
    gateway_url: str,
    port: int,
    *,
    hub_api_port: int | None = None,
    proxy_api_port: int | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["DPSANDBOX_HOME"] = str(Path(settings_home).expanduser().absolute())
    env["DPSANDBOX_GATEWAY_URL"] = gateway_url.rstrip("/")
    env["DPSANDBOX_HUB_PORT"] = str(port)
    if hub_api_port:
        env["DPSANDBOX_HUB_API_PORT"] = str(hub_api_port)
    if proxy_api_port:
        env["DPSANDBOX_PROXY_API_PORT"] = str(proxy_api_port)
    # The proxy and the culler are found next to the hub's interpreter.
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "/usr/bin:/bin")])
    return env


def _die_with_parent() -> None:
    """preexec_fn: the hub gets SIGTERM (and cleans up) if its launcher dies.

    Also undo an inherited "ignore SIGINT" (a launcher started in the background
    by a shell has one): the hub's services would keep it and ignore the hub's
    SIGINT at shutdown, delaying it by their whole interrupt timeout.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def start_hub(
    settings_home: Path | None = None,
    gateway_url: str | None = None,
    port: int = 8000,
    *,
    hub_api_port: int | None = None,
    proxy_api_port: int | None = None,
    env: Mapping[str, str] | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start the hub in the background (its own process group) and return it."""
    defaults = HubSettings.from_env()
    home = Path(settings_home) if settings_home else defaults.home
    url = gateway_url or defaults.gateway_url
    settings = HubSettings(home=home, gateway_url=url, sandbox_env=defaults.sandbox_env)
    state_dir = settings.ensure_state_dir()
    return subprocess.Popen(
        hub_command_args(home, url, port),
        env=hub_environment(
            home, url, port, hub_api_port=hub_api_port, proxy_api_port=proxy_api_port, base=env
        ),
        cwd=state_dir,
        start_new_session=True,  # Ctrl-C reaches the launcher, which forwards it once
        preexec_fn=_die_with_parent,
        stdout=stdout,
        stderr=stderr,
    )


def stop_hub(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """Ask the hub to shut down (it stops every sandbox first); kill it if it hangs.

    A hub stopped while still starting can leave its proxy behind (the proxy runs
    in a session of its own): it is found through the pid file in the state dir.
    """
    try:
        state_dir = Path(os.readlink(f"/proc/{proc.pid}/cwd"))
    except OSError:
        state_dir = None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    code = proc.wait()
    if state_dir is not None:
        _stop_stray_proxy(state_dir / "jupyterhub-proxy.pid")
    return code


def _stop_stray_proxy(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"configurable-http-proxy" in cmdline or b"sandbox.hub.proxy" in cmdline:
        os.kill(pid, signal.SIGTERM)


def run_hub(settings_home: Path | None = None, gateway_url: str | None = None, port: int = 8000) -> int:
    """Run the hub in the foreground until it exits or this process is told to stop."""
    proc = start_hub(settings_home, gateway_url, port)

    def forward(signum: int, _frame: object) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:
                forward(signal.SIGINT, None)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(port: int = 8000) -> int:
    """Entry point of ``dpsandbox hub [--port N]``."""
    singleuser = HubSettings.from_env().sandbox_env / "bin" / "jupyterhub-singleuser"
    if not singleuser.exists():
        print(
            f"[dpsandbox] {singleuser} is missing: analysts' servers cannot start until "
            "`python -m sandbox.hub.build_env` (make sandbox-env) builds the sandbox environment",
            file=sys.stderr,
        )
    return run_hub(port=port)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8000))

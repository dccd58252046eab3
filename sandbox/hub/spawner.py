"""Spawn each analyst's Jupyter server isolated: own system user, bubblewrap, cgroups.

The fallback isolation where no Docker engine runs (design.md, "Isolation"):

- a system user per analyst (``dps-<name>``), created on first spawn when the hub
  runs as root; without root every sandbox runs as the hub's user, with a
  private home under the hub's state directory, and the hub says so;
- the server wrapped in bubblewrap with an allow-listed file system (system
  directories, part of /etc, the sandbox environment, its own home, private
  size-limited /tmp; generated passwd/group without the other accounts), new
  PID/IPC/UTS/network/cgroup namespaces and a seccomp filter (``seccomp.py``);
- its own network namespace: nothing it binds is visible to the host; it
  reaches the gateway and the hub API only through the hub's relay sockets
  (``relay.py``), and the proxy reaches the server through a socket the hub
  bound on the host and handed in (``sandbox_init.py``);
- cgroup v1 or v2 memory/CPU/pids limits where the host allows;
- a clean environment: the sandbox venv's PATH, no hub PATH or VIRTUAL_ENV, no
  ``DPSANDBOX_*`` secrets, only the gateway URL and a short-lived
  ``scope: sandbox`` token obtained from the gateway, revoked when it stops.

``isolation = "none"`` (development only) runs servers as plain processes; there
the nftables egress filter (``firewall.py``) is what limits their connections.

bubblewrap does not forward signals to the process it wraps, so ``stop`` finds
the server inside the sandbox through ``/proc`` and signals it directly: the
server then shuts its kernels down cleanly.  Killing bubblewrap's inner init
(PID 1 of the sandbox) ends every process left in the sandbox's PID namespace,
and the cgroup is swept at the end, so no process of the analyst survives.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
import socket
from pathlib import Path
from subprocess import Popen
from typing import Any, ClassVar

from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid
from jupyterhub.utils import random_port
from traitlets import Any as AnyTrait
from traitlets import Bool, CaselessStrEnum, Integer, Unicode, default

from .accounts import AnalystAccountMixin
from .bubblewrap import GATEWAY_SOCKET, BubblewrapMixin, on_loopback
from .confinement import ConfinementMixin
from .gateway_link import GatewayLinkMixin
from .isolation import (
    SandboxError,
    children_of,
    is_alive,
    signal_process,
)
from .settings import SERVER_ARGS, HubSettings
from .tokens import token_id

__all__ = ["SandboxSpawner"]


class SandboxSpawner(
    AnalystAccountMixin, BubblewrapMixin, ConfinementMixin, GatewayLinkMixin, LocalProcessSpawner
):
    """LocalProcessSpawner that runs each server as its own user inside bubblewrap.

    The analyst's account and home are in ``accounts.py``, the bubblewrap steps in
    ``bubblewrap.py``, the limits and the egress filter of plain servers in
    ``confinement.py``; this class is the lifecycle.
    """

    # -- shared by every spawner of this hub process
    _announced: ClassVar[set[str]] = set()  # modes whose announcement was logged (once)

    # -- this sandbox's state; what stop() needs is kept by get_state() across hub restarts.
    # Not reset by clear_state(), which LocalProcessSpawner.poll() calls as soon as the
    # process is gone: _sweep() still needs it then, and resets it once done.
    # (sandbox_token and token_jti: GatewayLinkMixin)
    filtered_uid = Integer(
        None, allow_none=True, help="The uid this sandbox put under the egress filter (saved)."
    )
    needs_sweep = Bool(False, help="From start() until the sandbox is cleaned up (saved).")
    saved_traits: ClassVar[dict[str, Any]] = {"filtered_uid": None, "needs_sweep": False}
    cgroup_join = AnyTrait(None, help="preexec function joining the sandbox's cgroups (not saved).")

    isolation = CaselessStrEnum(
        ["bubblewrap", "none"],
        default_value="bubblewrap",
        help="""How servers are isolated.

        "bubblewrap" (default): refuse to start a server unless bubblewrap works.
        "none": run servers as plain processes of the analyst's user, with no
        file-system or process isolation. Only for development on machines
        without user namespaces; never with real data.
        """,
    ).tag(config=True)

    sandbox_env = Unicode(
        help="""World-readable Python environment the servers run in (built by
        `python -m sandbox.hub.build_env`). Defaults to DPSANDBOX_SANDBOX_ENV or
        /opt/dpsandbox/sandbox-env.""",
    ).tag(config=True)

    kernel_transport_ipc = Bool(
        True,
        help="Connect kernels over IPC sockets in the sandbox's private /tmp rather than TCP.",
    ).tag(config=True)

    @default("sandbox_env")
    def _sandbox_env_default(self) -> str:
        return str(HubSettings.from_env().sandbox_env)

    @default("cmd")
    def _cmd_default(self) -> list[str]:
        return [str(Path(self.sandbox_env) / "bin" / "jupyterhub-singleuser")]

    @default("env_keep")
    def _env_keep_default(self) -> list[str]:
        # Not PATH, VIRTUAL_ENV, PYTHONPATH or LD_LIBRARY_PATH: those are the hub's.
        return ["LANG", "LC_ALL"]

    @default("default_url")
    def _default_url_default(self) -> str:
        return "/lab"

    @default("interrupt_timeout")
    def _interrupt_timeout_default(self) -> int:
        return 15

    # ------------------------------------------------------------------ start-up

    def _announce_mode(self) -> None:
        key = "root" if self.as_root else "user"
        if key in self._announced:
            return
        self._announced.add(key)
        if self.isolation == "none":
            return
        if self.as_root:
            self.log.info(
                "Sandboxes: bubblewrap (one system user per analyst, allow-listed files, own "
                "network/PID/IPC/UTS/cgroup namespaces, seccomp, cgroup limits)"
            )
        else:
            self.log.warning(
                "The hub does not run as root: every sandbox runs as %s with bubblewrap "
                "alone (allow-listed files, own network and PID namespaces, seccomp; "
                "no per-analyst users, no cgroup limits, no disk quota)",
                self.system_user,
            )

    # ------------------------------------------------------------------ environment

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        env["USER"] = self.system_user
        env["LOGNAME"] = self.system_user
        env["HOME"] = str(self.sandbox_home if self.isolation == "bubblewrap" else self._host_home())
        env["SHELL"] = "/bin/bash"
        return env

    def get_env(self) -> dict[str, Any]:
        env = super().get_env()
        for key in [k for k in env if k.startswith("DPSANDBOX_")]:
            del env[key]
        env["PATH"] = f"{self.sandbox_env}/bin:/usr/local/bin:/usr/bin:/bin"
        env["DPSANDBOX_GATEWAY_URL"] = self.gateway_url
        env["DPSANDBOX_LANG"] = self._language()  # the client library's messages
        if self.sandbox_token:
            env["DPSANDBOX_TOKEN"] = self.sandbox_token
        if self.isolation == "bubblewrap":
            # Runtime files (kernel connection files, IPC sockets) in the private /tmp.
            env["JUPYTER_RUNTIME_DIR"] = "/tmp/jupyter-runtime"  # noqa: S108
            # Inside, the gateway and the hub API are on the sandbox's own loopback.
            for key in ("DPSANDBOX_GATEWAY_URL", "JUPYTERHUB_API_URL", "JUPYTERHUB_ACTIVITY_URL"):
                if key in env:
                    env[key] = on_loopback(env[key])
            # The client library speaks HTTP over the hub's relay socket itself, one hop
            # shorter than through the loopback forwarder (which other programs use).
            env["DPSANDBOX_GATEWAY_SOCKET"] = str(GATEWAY_SOCKET)
        return env

    def get_args(self) -> list[str]:
        args = [*super().get_args(), *SERVER_ARGS]
        if self.kernel_transport_ipc:
            args.append("--KernelManager.transport=ipc")
        return args

    # ------------------------------------------------------------------ isolation

    def make_preexec_fn(self, name: str) -> Any:
        """Join the cgroups (as root), then drop to the analyst's user."""
        join = self.cgroup_join
        setuid = set_user_setuid(name, chdir=False) if self.as_root else None

        def preexec() -> None:
            # Kernels must get interrupts even when the hub was started ignoring them.
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            if join is not None:
                join()
            if setuid is not None:
                setuid()

        return preexec

    # ------------------------------------------------------------------ lifecycle

    async def _prepare(self) -> None:
        """Everything a sandbox needs before its process starts."""
        self._announce_mode()
        if self.as_root:
            await self._ensure_system_user()
        else:
            self._ensure_private_home()
        account = pwd.getpwnam(self.system_user)
        uid = account.pw_uid
        if uid == 0:
            raise SandboxError("refusing to run a single-user server as root")
        await self._prepare_home(account)
        if not Path(self.cmd[0]).exists():
            raise SandboxError(
                f"The sandbox environment is not built ({self.cmd[0]} is missing): "
                "run `python -m sandbox.hub.build_env` (make sandbox-env)"
            )
        self.sandbox_token = await self._fetch_sandbox_token()
        self.token_jti = token_id(self.sandbox_token)
        if self.isolation == "none":
            await self._restrict_network(uid)
        cgroup = await self._setup_cgroup()
        self.cgroup_join = cgroup.join_fn() if cgroup else None

    def _plain_command(self) -> list[str]:
        self.log.warning(
            "ISOLATION DISABLED (c.SandboxSpawner.isolation = 'none'): %s's server runs "
            "as a plain process of %s and can read whatever that user can",
            self.user.name,
            self.system_user,
        )
        if self.port == 0:
            self.port = random_port()
        return [*self.cmd, *self.get_args()]

    async def start(self) -> tuple[str, int]:
        self.needs_sweep = True
        door: socket.socket | None = None
        fds: list[int] = []
        try:
            await self._prepare()
            if self.isolation == "bubblewrap":
                bwrap = self._bwrap()
                await self._probe_bwrap(bwrap, self.make_preexec_fn(self.system_user))
                await self._start_relay()
                door = self._bind_door()
                command, fds = self._bubblewrap_command(bwrap, door)
                cwd = "/"
            else:
                command, cwd = self._plain_command(), str(self._host_home())
            self.log.info("Spawning sandbox of %s as %s", self.user.name, self.system_user)
            self.log.debug("Sandbox command: %s", command)
            self.proc = Popen(
                command,
                preexec_fn=self.make_preexec_fn(self.system_user),
                start_new_session=True,
                env=self.get_env(),
                cwd=cwd,
                pass_fds=[*fds, *([door.fileno()] if door else [])],
                **self.popen_kwargs,
            )
        except BaseException:
            await self._sweep()
            raise
        finally:
            for fd in fds:
                os.close(fd)
            if door is not None:
                door.close()  # the sandbox holds it now
        self.pid = self.proc.pid
        address = (self.ip or "127.0.0.1", self.port)
        await self._wait_listening(address)
        return address

    async def _wait_listening(self, address: tuple[str, int]) -> None:
        """Return as soon as the server accepts connections (checked every 50 ms).

        The hub's own readiness check backs off up to seconds between tries, so it often
        looks long after the server is up; answering here makes its first try succeed.
        A server that dies or never listens is left to the hub's checks and timeouts.
        """
        deadline = asyncio.get_running_loop().time() + self.start_timeout
        while asyncio.get_running_loop().time() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return
            try:
                _reader, writer = await asyncio.open_connection(*address)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return

    async def poll(self) -> int | None:
        status = await super().poll()
        if status is not None and self.needs_sweep:
            # It ended by itself: the hub will not call stop(), so clean up here.
            await self._sweep()
        elif status is None and self.isolation == "bubblewrap":
            try:  # a restarted hub gives its running sandboxes their way out back
                await self._start_relay()
            except SandboxError as exc:
                self.log.warning("%s", exc)
        return status

    def _server_pid(self) -> int | None:
        """The Jupyter server: inside bubblewrap, outer bwrap -> inner init -> server."""
        if self.isolation != "bubblewrap":
            return self.pid
        for init in children_of(self.pid):
            servers = children_of(init)
            if servers:
                return servers[0]
        return None

    async def stop(self, now: bool = False) -> None:
        try:
            if await self.poll() is None:
                await self._stop_server(now)
        finally:
            await self._sweep()

    async def _stop_server(self, now: bool) -> None:
        # Not LocalProcessSpawner's SIGINT: without a terminal jupyter_server takes
        # SIGINT as KeyboardInterrupt and exits without shutting its kernels down.
        inits = children_of(self.pid) if self.isolation == "bubblewrap" else []
        if not now:
            server = self._server_pid()
            if server:
                # SIGTERM: jupyter_server shuts its kernels down, then exits.
                self.log.debug("Terminating server %i of %s", server, self.user.name)
                signal_process(server, signal.SIGTERM)
                await self.wait_for_death(self.interrupt_timeout)
        if await self.poll() is None:
            # The sandbox's PID 1 going away kills everything in its PID namespace.
            for init in inits:
                signal_process(init, signal.SIGKILL)
            signal_process(self.pid, signal.SIGKILL)
            await self.wait_for_death(self.kill_timeout)
        if await self.poll() is None:
            self.log.warning("Server of %s (pid %i) never died", self.user.name, self.pid)
        # bubblewrap's outer process reports the exit before the inner init is gone.
        for _ in range(int(self.kill_timeout / 0.05)):
            if not any(is_alive(pid) for pid in inits):
                break
            await asyncio.sleep(0.05)

    async def _sweep(self) -> None:
        """End the server's token; kill any process that escaped; drop its cgroups."""
        self.needs_sweep = False
        await self._revoke_token()
        if not self.as_root:
            return
        try:
            cgroup = self._cgroup()
            left = await asyncio.to_thread(cgroup.pids)
            if left:
                self.log.warning("Killing %d leftover processes of %s", len(left), self.user.name)
            await asyncio.to_thread(cgroup.remove)  # OSError (EBUSY) if a process outlived SIGKILL
        finally:  # needs_sweep is already off: nothing retries, so the uid's rule and mount go now
            try:
                await self._forget_filtered_uid()
            finally:
                await self._unmount_home(self.system_user)

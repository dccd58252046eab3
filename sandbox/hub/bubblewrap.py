"""The bubblewrap half of ``SandboxSpawner``: what one sandbox sees, and its way out.

``BubblewrapMixin`` builds a server's command line (``isolation.bwrap_command``
with the layout below), the files it is given (passwd, group and hosts without
any other account, the seccomp filter of ``seccomp.py``), the hub's relay sockets
(``relay.py``) and the host socket the proxy reaches the server through; the
sandbox's first process, ``sandbox_init.py``, joins them up inside.  Kept apart
from the spawner's lifecycle (``spawner.py``) so each reads on its own.
"""

from __future__ import annotations

import asyncio
import grp
import hashlib
import ipaddress
import os
import pwd
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from traitlets import Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from .firewall import endpoint_of
from .isolation import SandboxError, SandboxLayout, account_files, bwrap_command
from .relay import SANDBOX_INIT, SANDBOX_RUN_DIR, HostRelay, RelayError
from .seccomp import SeccompUnavailable, seccomp_filter_fd

__all__ = ["GATEWAY_SOCKET", "BubblewrapMixin", "on_loopback"]

# The hub's relay to the gateway as a sandbox sees it (DPSANDBOX_GATEWAY_SOCKET).
GATEWAY_SOCKET = SANDBOX_RUN_DIR / "gateway.sock"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def on_loopback(url: str) -> str:
    """``url`` as a sandbox reaches it: an IP address becomes 127.0.0.1 (names resolve
    to it through the sandbox's /etc/hosts, so TLS names stay valid)."""
    parts = urlsplit(url)
    if not _is_ip(parts.hostname or ""):
        return url
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{parts.port or 80}"))


class BubblewrapMixin(LoggingConfigurable):
    """Traits and steps of the bubblewrap sandbox, for ``SandboxSpawner``."""

    _bwrap_ok: ClassVar[set[int]] = set()  # uids for which a bubblewrap probe succeeded
    _relays: ClassVar[dict[str, HostRelay]] = {}  # runtime dir -> the hub's relay sockets

    # Provided by the spawner.
    user: Any
    hub: Any
    hub_connect_url: Any
    port: int
    ip: str
    cmd: list[str]
    gateway_url: str
    hub_state_dir: str
    sandbox_env: str
    as_root: bool
    system_user: str
    sandbox_home: Path

    bwrap_path = Unicode("bwrap", help="The bubblewrap executable.").tag(config=True)

    runtime_dir = Unicode(
        help="""Directory of the hub's relay sockets (gateway.sock, hub.sock), bound read-only
        into every sandbox at /run/dpsandbox. Default: /run/dpsandbox-<hash of the hub
        state dir> as root, else $TMPDIR/dpsandbox-<uid>-<hash>.""",
    ).tag(config=True)

    tmp_size = Integer(
        1024**3, help="Size of a sandbox's private /tmp and /var/tmp, each (bytes; 0: no limit)."
    ).tag(config=True)

    @default("runtime_dir")
    def _runtime_dir_default(self) -> str:
        digest = hashlib.sha256(str(Path(self.hub_state_dir).absolute()).encode()).hexdigest()[:10]
        if self.as_root:
            return f"/run/dpsandbox-{digest}"
        return str(Path(tempfile.gettempdir()) / f"dpsandbox-{os.geteuid()}-{digest}")

    def _layout(self) -> SandboxLayout:
        return SandboxLayout(
            home=self._host_home(),
            sandbox_home=self.sandbox_home,
            readonly=(Path(self.sandbox_env),),
            run_dir=Path(self.runtime_dir),
            run_target=SANDBOX_RUN_DIR,
            tmp_size=self.tmp_size or None,
        )

    def _hub_api_url(self) -> str:
        return self.hub_connect_url or self.hub.api_url

    def _sandbox_files(self) -> dict[str, bytes]:
        """passwd, group (the analyst alone) and hosts (service names on loopback)."""
        account = pwd.getpwnam(self.system_user)
        try:
            group = grp.getgrgid(account.pw_gid).gr_name
        except KeyError:
            group = account.pw_name
        names = {urlsplit(u).hostname or "" for u in (self.gateway_url, self._hub_api_url())}
        return account_files(
            user=account.pw_name, uid=account.pw_uid, group=group, gid=account.pw_gid,
            home=self.sandbox_home, hosts=sorted(n for n in names if n and not _is_ip(n)),
        )  # fmt: skip

    async def _start_relay(self) -> None:
        """The hub's relay sockets to the gateway and the hub API (once per hub process)."""
        relay = self._relays.get(self.runtime_dir)
        if relay is None:
            relay = HostRelay(
                Path(self.runtime_dir),
                gateway=endpoint_of(self.gateway_url),
                hub_api=endpoint_of(self._hub_api_url()),
            )
            self._relays[self.runtime_dir] = relay
        try:
            await relay.start()
        except (RelayError, OSError) as exc:
            raise SandboxError(f"cannot set up the sandboxes' network relay: {exc}") from exc

    def _bind_door(self) -> socket.socket:
        """The host socket the proxy reaches the server through; the sandbox listens on it."""
        door = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            door.bind((self.ip or "127.0.0.1", self.port))  # port 0: a free one, no race
        except OSError:
            door.bind((self.ip or "127.0.0.1", 0))  # the last spawn's port is taken meanwhile
        self.port = int(door.getsockname()[1])
        return door

    def _bubblewrap_command(self, bwrap: str, door: socket.socket) -> tuple[list[str], list[int]]:
        """The server's command line in bubblewrap and the descriptors it must inherit.

        The caller closes the descriptors once the process has started.
        """
        gateway_port = endpoint_of(self.gateway_url)[1]
        hub_port = endpoint_of(self._hub_api_url())[1]
        if gateway_port == hub_port:
            raise SandboxError("the gateway and the hub API must listen on different ports")
        fds: list[int] = []
        try:
            data = {}
            for target, content in self._sandbox_files().items():
                fd = os.memfd_create("dpsandbox-file", 0)
                fds.append(fd)
                os.write(fd, content)
                os.lseek(fd, 0, os.SEEK_SET)
                data[target] = fd
            seccomp = seccomp_filter_fd()
            fds.append(seccomp)
        except (SeccompUnavailable, OSError) as exc:
            for fd in fds:
                os.close(fd)
            raise SandboxError(f"cannot prepare the sandbox: {exc}") from exc
        init = [
            str(Path(self.sandbox_env) / "bin" / "python"), "-I", "-S",
            str(SANDBOX_RUN_DIR / SANDBOX_INIT.name),
            "--listen-fd", str(door.fileno()), "--port", str(self.port),
            "--forward", f"{gateway_port}={GATEWAY_SOCKET}",
            "--forward", f"{hub_port}={SANDBOX_RUN_DIR / 'hub.sock'}",
            "--", *self.cmd, *self.get_args(),
        ]  # fmt: skip
        command = bwrap_command(bwrap, self._layout(), init, data_fds=data, seccomp_fd=seccomp)
        return command, fds

    def _bwrap(self) -> str:
        found = shutil.which(self.bwrap_path)
        if not found:
            raise SandboxError(
                f"bubblewrap ({self.bwrap_path}) is not installed: apt-get install bubblewrap, "
                "or set c.SandboxSpawner.isolation = 'none' (no isolation; never with real data)"
            )
        return found

    async def _probe_bwrap(self, bwrap: str, preexec: Any) -> None:
        """Fail early, with a clear message, where user namespaces are not allowed."""
        uid = pwd.getpwnam(self.system_user).pw_uid
        if uid in self._bwrap_ok:
            return
        proc = await asyncio.create_subprocess_exec(
            bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
            "--unshare-cgroup-try", "--", "/bin/true",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            preexec_fn=preexec, cwd="/",
        )  # fmt: skip
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise SandboxError(
                f"bubblewrap does not work here ({out.decode(errors='replace').strip()}). "
                "Allow unprivileged user namespaces, or set c.SandboxSpawner.isolation = 'none'"
            )
        self._bwrap_ok.add(uid)

"""The hub's side of a sandbox's network: Unix sockets relayed to the gateway and hub API.

A bubblewrap sandbox has a network namespace of its own with nothing but its
loopback, so it cannot reach, or bind, any address of the host.  The hub
listens on two Unix sockets in a runtime directory (``gateway.sock`` and
``hub.sock``), which the spawner binds read-only into every sandbox at
``/run/dpsandbox``; each connection made to one is carried to the real
gateway or hub API over the host's loopback.  Inside, ``sandbox_init.py``
listens on the usual ports and carries connections to these sockets.

The relay forwards bytes only (TLS, if the URL is https, stays end to end) and
only to the two fixed endpoints: the sandbox chooses nothing but which of the two.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import stat
from pathlib import Path

from .sandbox_init import Handler, splice

__all__ = ["SANDBOX_INIT", "SANDBOX_RUN_DIR", "HostRelay", "RelayError"]

SANDBOX_INIT = Path(__file__).with_name("sandbox_init.py")
# Where the runtime directory appears inside a sandbox.
SANDBOX_RUN_DIR = Path("/run/dpsandbox")


class RelayError(RuntimeError):
    """The relay's runtime directory or sockets cannot be set up."""


class HostRelay:
    """``<runtime_dir>/{gateway,hub}.sock`` -> the gateway's and the hub API's host:port."""

    def __init__(self, runtime_dir: Path, *, gateway: tuple[str, int], hub_api: tuple[str, int]):
        self.runtime_dir = runtime_dir
        self.targets = {"gateway.sock": gateway, "hub.sock": hub_api}
        self._servers: list[asyncio.AbstractServer] = []
        self._cleanup_registered = False

    @property
    def running(self) -> bool:
        return bool(self._servers) and all(s.is_serving() for s in self._servers)

    def _prepare_dir(self) -> None:
        """A directory of this hub's user that every sandbox user can read: it holds the
        two sockets and the sandbox's first program, nothing secret."""
        try:
            self.runtime_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
            info = self.runtime_dir.lstat()
        except OSError as exc:
            raise RelayError(f"cannot create {self.runtime_dir}: {exc}") from exc
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise RelayError(f"{self.runtime_dir} exists and is not this hub's directory")
        os.chmod(self.runtime_dir, 0o755)  # noqa: S103  # sandboxes of every analyst bind it
        init = self.runtime_dir / SANDBOX_INIT.name
        shutil.copyfile(SANDBOX_INIT, init)
        os.chmod(init, 0o644)

    async def start(self) -> None:
        """Listen on both sockets (again, if a previous hub left them behind)."""
        if self.running:
            return
        self._prepare_dir()
        for name, (host, port) in self.targets.items():
            path = self.runtime_dir / name
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            server = await asyncio.start_unix_server(self._handler(host, port), path=str(path))
            os.chmod(path, 0o666)  # noqa: S103  # any sandbox user may connect
            self._servers.append(server)
        if not self._cleanup_registered:  # the hub leaves no socket behind when it exits
            atexit.register(self._remove_files)
            self._cleanup_registered = True

    @staticmethod
    def _handler(host: str, port: int) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await splice((reader, writer), lambda: asyncio.open_connection(host, port))

        return handle

    async def close(self) -> None:
        for server in self._servers:
            server.close()  # open connections end with their sandboxes
        self._servers.clear()
        self._remove_files()

    def _remove_files(self) -> None:
        for name in (*self.targets, SANDBOX_INIT.name):
            with contextlib.suppress(FileNotFoundError):
                (self.runtime_dir / name).unlink()
        with contextlib.suppress(OSError):
            self.runtime_dir.rmdir()  # unless something else was put there

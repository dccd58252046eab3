"""The first process of a bubblewrap sandbox: its network doors, then the server.

Runs inside the sandbox's own network namespace (standard library only, on the
sandbox's Python; the spawner binds this file in read-only).  The sandbox has
no network but its loopback, so this process:

- listens on ``127.0.0.1:<port>`` for each ``--forward PORT=SOCKET`` (the
  gateway's and the hub API's ports) and carries each connection to the Unix
  socket the hub relays to the real service, so the usual URLs work unchanged;
- starts the server (the command after ``--``), waits until it listens on
  ``127.0.0.1:--port`` in here, and only then calls ``listen()`` on the socket
  the hub bound on the host for it (``--listen-fd``): the proxy reaches the
  server through it, and the hub's readiness check succeeds exactly when the
  server is up;
- passes SIGTERM and SIGINT to the server and exits with its status.

Nothing a process of the sandbox binds is visible outside, and whatever it
binds (the gateway's port included) touches nothing outside.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable

CHUNK = 256 * 1024
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until end of file; the other direction goes on (half-close)."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def splice(client: Stream, opener: Callable[[], Awaitable[Stream]]) -> None:
    """Connect ``client`` to what ``opener`` opens and copy both ways until both end."""
    reader, writer = client
    try:
        up_reader, up_writer = await opener()
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
    for w in (writer, up_writer):
        with contextlib.suppress(OSError):
            w.close()


def _forward_to_unix(path: str) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await splice((reader, writer), lambda: asyncio.open_unix_connection(path))

    return handle


def _forward_to_port(port: int) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await splice((reader, writer), lambda: asyncio.open_connection("127.0.0.1", port))

    return handle


async def _listening(port: int, server: subprocess.Popen[bytes]) -> bool:
    while server.poll() is None:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        return True
    return False


async def main(args: argparse.Namespace) -> int:
    for spec in args.forward:
        port, path = spec.split("=", 1)
        await asyncio.start_server(_forward_to_unix(path), "127.0.0.1", int(port))
    server = subprocess.Popen(args.command)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.send_signal, signum)
    if await _listening(args.port, server):
        door = socket.socket(fileno=args.listen_fd)
        door.listen(128)
        await asyncio.start_server(_forward_to_port(args.port), sock=door)
    while server.poll() is None:
        await asyncio.sleep(0.1)
    return server.returncode


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sandbox_init")
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--forward", action="append", default=[], metavar="PORT=SOCKET")
    parser.add_argument("command", nargs="+")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse(sys.argv[1:]))))

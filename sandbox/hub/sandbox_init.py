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

The forwarding sockets listen before the server starts (connections wait in
their backlog), and asyncio is imported only after the server was started: its
import is then hidden behind the server's own start-up rather than added to it.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from asyncio import StreamReader, StreamWriter

CHUNK = 256 * 1024
Stream = tuple["StreamReader", "StreamWriter"]
Handler = Callable[["StreamReader", "StreamWriter"], Awaitable[None]]


async def _pipe(reader: StreamReader, writer: StreamWriter) -> None:
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
    import asyncio
    import contextlib

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


class Plan(NamedTuple):
    listen_fd: int
    port: int
    forwards: tuple[tuple[int, str], ...]
    command: tuple[str, ...]


def parse(argv: list[str]) -> Plan:
    """``--listen-fd N --port P [--forward PORT=SOCKET]... -- command...``"""
    if "--" not in argv:
        raise SystemExit("sandbox_init: no command after --")
    split = argv.index("--")
    options, command = argv[:split], tuple(argv[split + 1 :])
    values: dict[str, list[str]] = {"--listen-fd": [], "--port": [], "--forward": []}
    for flag, value in zip(options[::2], options[1::2], strict=True):
        if flag not in values:
            raise SystemExit(f"sandbox_init: unknown option {flag}")
        values[flag].append(value)
    forwards = tuple((int(p), path) for p, path in (v.split("=", 1) for v in values["--forward"]))
    if not command or len(values["--listen-fd"]) != 1 or len(values["--port"]) != 1:
        raise SystemExit("sandbox_init: needs --listen-fd, --port and a command")
    return Plan(int(values["--listen-fd"][0]), int(values["--port"][0]), forwards, command)


def _forward(path: str) -> Handler:
    async def handle(reader: StreamReader, writer: StreamWriter) -> None:
        import asyncio

        await splice((reader, writer), lambda: asyncio.open_unix_connection(path))

    return handle


def _to_server(port: int) -> Handler:
    async def handle(reader: StreamReader, writer: StreamWriter) -> None:
        import asyncio

        await splice((reader, writer), lambda: asyncio.open_connection("127.0.0.1", port))

    return handle


def _exit_status(pid: int) -> int | None:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done == 0:
        return None
    return os.waitstatus_to_exitcode(status)


async def serve(plan: Plan, server: int, forwards: list[tuple[socket.socket, str]]) -> int:
    import asyncio

    for sock, path in forwards:
        await asyncio.start_server(_forward(path), sock=sock)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, os.kill, server, signum)
    door_open = False
    while (status := _exit_status(server)) is None:
        if not door_open:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", plan.port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            door = socket.socket(fileno=plan.listen_fd)
            door.listen(128)
            await asyncio.start_server(_to_server(plan.port), sock=door)
            door_open = True
        await asyncio.sleep(0.1)
    return status if status >= 0 else 128 - status  # killed by a signal: 128 + its number


def main(argv: list[str]) -> int:
    plan = parse(argv)
    forwards = []
    for port, path in plan.forwards:
        sock = socket.create_server(("127.0.0.1", port), backlog=128)
        forwards.append((sock, path))
    os.set_inheritable(plan.listen_fd, False)  # the host socket stays with this process
    server = os.posix_spawnp(plan.command[0], list(plan.command), dict(os.environ))

    import asyncio

    return asyncio.run(serve(plan, server, forwards))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""TCP forwarders run by the hub: how sandboxes reach the gateway and the hub API.

The gateway and the hub API listen on the host's loopback, which no sandbox can
see.  The hub listens for the sandboxes on an address only they reach (the
host side of their Docker bridge) and relays each connection to loopback, so
what a sandbox talks to is decided by the host and no sandbox can bind an
address that carries anyone else's traffic.  Each relay is an asyncio task in
the hub's own event loop: a few hundred microseconds per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

__all__ = ["TcpForwarder"]

log = logging.getLogger(__name__)
_CHUNK = 64 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


class TcpForwarder:
    """Listen on ``listen`` and relay every connection to ``target``."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.listen = listen
        self.target = target
        self._server: asyncio.Server | None = None

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def start(self) -> None:
        if self.running:
            return
        self._server = await asyncio.start_server(self._relay, *self.listen, reuse_address=True)

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.target), timeout=10
            )
        except (TimeoutError, OSError) as exc:
            log.debug("forwarder %s -> %s: %s", self.listen, self.target, exc)
            client_writer.close()
            return
        try:
            await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))
        finally:
            for writer in (client_writer, upstream_writer):
                writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

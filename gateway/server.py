"""Serving the gateway with uvicorn, guarded against slow and excessive connections.

uvicorn 0.54's h11 protocol times out only idle keep-alive connections: a client that
opens a connection and sends its headers one byte at a time (or never) holds it for good,
and ``limit_concurrency`` answers 503 only once a request's headers have arrived. So the
protocol here adds, per connection:

- a **header timeout**: the request line and headers must be complete within
  ``header_timeout_seconds`` of the connection opening (or of the first byte of the next
  request on a kept-alive connection), else a 408 and the connection is closed;
- a **body timeout**: the body must be complete within ``body_timeout_seconds`` of the
  headers, else a 408 (if no response has started) and the connection is closed;
- a **connection cap**: beyond ``max_connections`` open connections a new one is answered
  503 ``unavailable`` with ``Retry-After`` and closed at once.

Header size stays bounded by h11 (16 KiB), bodies by the app (``max_body_bytes``).
``docs/deploy/gateway-server.md`` says how these fit behind a reverse proxy.

**Draining.** On SIGTERM uvicorn already shuts down gracefully: it closes its listener,
closes idle connections, lets every request in flight finish (a query computing is
answered, its release recorded), then runs the app's shutdown. :class:`GatewayServer`
adds a draining flag, set at the signal, under which ``/readyz`` answers 503 and any new
request that still reaches the app is refused with 503 ``unavailable`` before it starts;
with ``drain_seconds`` it keeps listening that long first, so a load balancer polling
``/readyz`` takes the replica out of rotation before its port closes. A second SIGTERM,
or SIGINT, stops draining at once (uvicorn's usual shutdown, still waiting for requests in
flight).
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.settings import Settings


@dataclass(frozen=True)
class ServerLimits:
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    keep_alive_seconds: int = 5
    max_connections: int = 256
    retry_after_seconds: int = 2

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerLimits:
        return cls(header_timeout_seconds=settings.header_timeout_seconds,
                   body_timeout_seconds=settings.body_timeout_seconds,
                   keep_alive_seconds=settings.keep_alive_seconds,
                   max_connections=settings.max_connections)


def _raw_response(status: int, reason: str, code: str, message: str,
                  extra_headers: str = "") -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n{extra_headers}\r\n")
    return head.encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with header and body deadlines and a connection cap."""

    limits: ClassVar[ServerLimits] = ServerLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_for: str | None = None  # "headers" or "body"

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        over_cap = len(self.connections) >= self.limits.max_connections
        super().connection_made(transport)
        if over_cap:
            self.logger.warning("connection refused: %d open connections", len(self.connections))
            transport.write(_raw_response(
                503, "Service Unavailable", "unavailable",
                "the gateway has too many open connections; retry shortly",
                f"retry-after: {self.limits.retry_after_seconds}\r\n"))
            transport.close()
            return
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._arm(None)
        super().connection_lost(exc)

    def _watch(self) -> None:
        """Arm the deadline that fits what the connection is waiting for from the client."""
        if self.transport is None or self.transport.is_closing():
            self._arm(None)
            return
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            self._arm("body")
        elif state is h11.IDLE and self.timeout_keep_alive_task is None:
            self._arm("headers")  # a request is due (or partly here): its headers must come
        else:
            self._arm(None)  # being answered, or idle under uvicorn's keep-alive timer

    def _arm(self, waiting_for: str | None) -> None:
        if waiting_for == self._waiting_for and (waiting_for is None or self._deadline):
            return  # a deadline runs from the start of the wait, not from the last byte
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._waiting_for = waiting_for
        if waiting_for is not None:
            seconds = (self.limits.header_timeout_seconds if waiting_for == "headers"
                       else self.limits.body_timeout_seconds)
            self._deadline = self.loop.call_later(seconds, self._expire, waiting_for, seconds)

    def _expire(self, waiting_for: str, seconds: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        responding = self.cycle is not None and self.cycle.response_started
        if not responding:
            self.transport.write(_raw_response(
                408, "Request Timeout", "invalid_request",
                f"the request's {waiting_for} did not arrive within {seconds:g} s"))
        self.transport.close()  # connection_lost tells a running request it is gone


def guarded_protocol(limits: ServerLimits) -> type[GuardedH11Protocol]:
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})


def server_config(app: Any, settings: Settings, *, host: str, port: int,
                  **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for the gateway: the guarded protocol and its limits."""
    limits = ServerLimits.from_settings(settings)
    return uvicorn.Config(
        app, host=host, port=port, http=guarded_protocol(limits),
        timeout_keep_alive=limits.keep_alive_seconds,
        log_level=options.pop("log_level", "warning"),
        access_log=options.pop("access_log", False), **options)


class GatewayServer(uvicorn.Server):
    """uvicorn's server that marks the app as draining on SIGTERM (see the module docstring)."""

    def __init__(self, config: uvicorn.Config, *, draining: threading.Event,
                 drain_seconds: float = 0.0) -> None:
        super().__init__(config)
        self.draining, self.drain_seconds = draining, drain_seconds
        self._drain_until: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        first = not self.draining.is_set()
        self.draining.set()
        if first and sig == signal.SIGTERM and self.drain_seconds > 0:
            self._captured_signals.append(sig)  # re-raised after shutdown, as uvicorn does
            self._drain_until = time.monotonic() + self.drain_seconds
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._drain_until is not None and time.monotonic() >= self._drain_until:
            return True
        return await super().on_tick(counter)


def serve(app: Any, settings: Settings, *, host: str, port: int) -> None:
    """Run the gateway until SIGTERM or SIGINT, draining as the settings say."""
    GatewayServer(server_config(app, settings, host=host, port=port),
                  draining=app.state.draining, drain_seconds=settings.drain_seconds).run()

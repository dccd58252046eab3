"""A real gateway on a free port, served by uvicorn in a background thread (real HTTP)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from gateway.app import create_app
from gateway.bootstrap import Services
from gateway.server import server_config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(services: Services, name: str) -> tuple[uvicorn.Server, threading.Thread, int] | None:
    """A server on a free port, started; None when it could not bind the port (another
    process took it between free_port() and the bind: the caller tries another)."""
    port = free_port()
    server = uvicorn.Server(server_config(create_app(services=services), services.settings,
                                          host="127.0.0.1", port=port))
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # generous: 2 busy cores
    while not server.started:
        if not thread.is_alive():
            return None
        if time.monotonic() > deadline:
            raise RuntimeError("the live gateway did not start")
        time.sleep(0.05)
    return server, thread, port


@contextmanager
def serve_gateway(services: Services, *, name: str = "live-gateway") -> Iterator[str]:
    """Serve ``services`` until the block ends; yields the base URL."""
    for _attempt in range(5):
        started = _start(services, name)
        if started is not None:
            break
    else:
        raise RuntimeError("the live gateway did not start on any of 5 free ports")
    server, thread, port = started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)

"""``python -m sandbox.hub.proxy``: PyPI's configurable-http-proxy, passing websocket
subprotocols through.

The PyPI port of configurable-http-proxy (0.4) ends each websocket at the proxy and opens
a second one to the target. It forwards the browser's ``Sec-WebSocket-Protocol`` to the
target, but its own handshake with the browser never names the subprotocol the target
chose. JupyterLab asks for ``v1.kernel.websocket.jupyter.org`` on every kernel connection;
Chrome then refuses the handshake ("Sent non-empty 'Sec-WebSocket-Protocol' header but
no response was received") and JupyterLab reconnects with the legacy protocol: every
kernel connection first failed. Here the proxy answers with the subprotocol the target
selected (or none when the target selected none). And it sends each websocket message
at once (TCP_NODELAY): tornado leaves Nagle's algorithm on after the handshake, so every
message after the first of a cell's burst waited about 40 ms for the browser's delayed ACK.

Health checks sent before the hub's route is in place are answered 404 by the proxy,
which logs each at error level ("[E] 404 GET /hub/health"); they are logged at info
level here: a hub that is still starting is not an error. Options are the proxy's own.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

__all__ = ["MARKER", "HealthChecksAreNotErrors", "install", "open_without_delay",
           "select_upstream_subprotocol"]

MARKER = b"sandbox.hub.proxy"  # in the process's command line (sandbox/hub/run.py)


def select_upstream_subprotocol(handler: Any, subprotocols: list[str]) -> str | None:
    """The subprotocol the target accepted, if the browser offered it."""
    client = getattr(handler, "ws_client", None)  # the proxy's connection to the target
    chosen = client.selected_subprotocol if client is not None else None
    return chosen if chosen in subprotocols else None


def open_without_delay(handler: Any, *args: Any, **kwargs: Any) -> None:
    """Once the browser's websocket is open: no Nagle delay on what is sent to it."""
    handler.set_nodelay(True)


class HealthChecksAreNotErrors(logging.Filter):
    """The proxy's "404 GET .../hub/health" (no route yet) at info level, not error."""

    PATTERN = re.compile(r"^404 (GET|HEAD) \S*/hub/health/?( |$)")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and self.PATTERN.match(record.getMessage()):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def install() -> None:
    from configurable_http_proxy.handlers import ProxyHandler

    ProxyHandler.select_subprotocol = select_upstream_subprotocol  # type: ignore[method-assign]
    ProxyHandler.open = open_without_delay  # type: ignore[method-assign]
    for name in ("configurable_http_proxy", "tornado.access"):  # the proxy's, and tornado's
        logging.getLogger(name).addFilter(HealthChecksAreNotErrors())


if __name__ == "__main__":
    from configurable_http_proxy.cli import main

    install()
    sys.exit(main())

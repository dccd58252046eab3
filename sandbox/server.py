"""Inside a sandbox: the analyst's Jupyter server sends kernel messages at once.

Tornado leaves Nagle's algorithm on for a websocket once its handshake is done, so of
the small messages one cell produces (status, execute_input, output, execute_reply)
each after the first waited for the peer's delayed ACK: about 40 ms on every cell,
whatever it ran. ``NoDelayKernelConnection`` turns Nagle off on the kernel's websocket
(TCP_NODELAY); both spawners name it on the server's command line
(``sandbox.hub.settings.SERVER_ARGS``). The hub's proxy does the same on its side (``sandbox/hub/proxy.py``).

Imported only by the Jupyter server (the sandbox environment and image ship it with
the client package); it grants nothing: the socket is the server's own.
"""

from __future__ import annotations

import asyncio

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection

__all__ = ["NoDelayKernelConnection"]


class NoDelayKernelConnection(ZMQChannelsWebsocketConnection):  # type: ignore[misc]
    """Jupyter's kernel websocket connection, with TCP_NODELAY on its socket."""

    def connect(self) -> asyncio.Future[None] | None:
        self.websocket_handler.set_nodelay(True)
        return super().connect()


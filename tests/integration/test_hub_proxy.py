"""The hub's proxy passes a websocket's subprotocol through (sandbox/hub/proxy.py).

JupyterLab opens every kernel connection asking for ``v1.kernel.websocket.jupyter.org``;
a proxy whose handshake does not name the subprotocol the server chose makes Chrome drop
the connection, and JupyterLab reconnects with the legacy protocol. Here a real
configurable-http-proxy process (the one the hub runs) stands between a tornado client
and a tornado websocket server.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from tornado.httpclient import HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.web import Application
from tornado.websocket import WebSocketHandler, websocket_connect

from tests.live import free_port

KERNEL_PROTOCOL = "v1.kernel.websocket.jupyter.org"


class Echo(WebSocketHandler):
    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return KERNEL_PROTOCOL if KERNEL_PROTOCOL in subprotocols else None

    def on_message(self, message: str | bytes) -> None:
        self.write_message(message)


class Burst(WebSocketHandler):
    """Answers each message with four small ones, as a kernel answers a cell (status,
    input, reply, status); sent without delay here, so only the proxy's hop is measured."""

    def open(self, *args: str) -> None:
        self.set_nodelay(True)

    def on_message(self, message: str | bytes) -> None:
        for part in ("busy", "input", "reply", "idle"):
            self.write_message(f"{message}:{part}")


def _wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture
def proxy_to() -> Iterator[tuple[int, int]]:
    """(proxy port, target port): the hub's proxy command, routing / to the target."""
    target, port, api = free_port(), free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.hub.proxy", "--ip", "127.0.0.1", "--port", str(port),
         "--api-ip", "127.0.0.1", "--api-port", str(api),
         "--default-target", f"http://127.0.0.1:{target}"],
        env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": "test-token"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port)
        _wait_port(api)
        assert httpx.get(f"http://127.0.0.1:{api}/api/routes",
                         headers={"Authorization": "token test-token"}).status_code == 200
        yield port, target
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _handshake(proxy_port: int, target_port: int,
                     subprotocols: list[str] | None) -> tuple[str | None, str]:
    server = HTTPServer(Application([(r"/.*", Echo)]))
    server.listen(target_port, "127.0.0.1")
    try:
        client = await websocket_connect(
            HTTPRequest(f"ws://127.0.0.1:{proxy_port}/user/x/api/kernels/k/channels"),
            subprotocols=subprotocols)
        chosen = client.selected_subprotocol
        await client.write_message("ping")
        echoed = await client.read_message()
        client.close()
        return chosen, str(echoed)
    finally:
        server.stop()


async def _burst_rounds(proxy_port: int, target_port: int, rounds: int, fast: float) -> list[float]:
    """Times (ms) of up to ``rounds`` bursts, stopping after the first under ``fast`` ms."""
    server = HTTPServer(Application([(r"/.*", Burst)]))
    server.listen(target_port, "127.0.0.1")
    try:
        client = await websocket_connect(
            HTTPRequest(f"ws://127.0.0.1:{proxy_port}/user/x/api/kernels/k/channels"))
        times: list[float] = []
        for i in range(rounds):
            start = time.perf_counter()
            await client.write_message(str(i))
            for _ in range(4):
                assert str(await client.read_message()).startswith(f"{i}:")
            times.append((time.perf_counter() - start) * 1000)
            if times[-1] < fast:
                break
        client.close()
        return times
    finally:
        server.stop()


def test_the_proxy_passes_each_websocket_message_on_at_once(proxy_to: tuple[int, int]) -> None:
    """No Nagle on the proxy's side of the browser's websocket: the messages after the
    first of a burst were held about 40 ms for the client's delayed ACK."""
    port, target = proxy_to
    with ThreadPoolExecutor(1) as pool:
        times = pool.submit(asyncio.run, _burst_rounds(port, target, 200, 30)).result(120)
    # Not a speed target: with Nagle on, every burst waits for the 40 ms delayed ACK, so
    # not one of them comes in under 30 ms; without it, one of up to 200 bursts does even
    # on a loaded machine (the rounds stop at the first that does).
    assert min(times) < 30, times


def _run(port: int, target: int, subprotocols: list[str] | None) -> tuple[str | None, str]:
    """The handshake on a loop of its own thread (another test's loop may run in this one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _handshake(port, target, subprotocols)).result(60)


def test_the_kernel_subprotocol_survives_the_proxy(proxy_to: tuple[int, int]) -> None:
    port, target = proxy_to
    chosen, echoed = _run(port, target, [KERNEL_PROTOCOL])
    assert chosen == KERNEL_PROTOCOL and echoed == "ping"  # the first handshake succeeds


def test_a_websocket_without_subprotocol_still_works(proxy_to: tuple[int, int]) -> None:
    port, target = proxy_to
    chosen, echoed = _run(port, target, None)
    assert chosen is None and echoed == "ping"


def test_a_health_check_before_the_hubs_route_is_no_error(tmp_path: object) -> None:
    """No route yet (the hub is starting): 404, logged at info level, not as an error."""
    port, api = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.hub.proxy", "--ip", "127.0.0.1", "--port", str(port),
         "--api-ip", "127.0.0.1", "--api-port", str(api)],
        env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": "test-token"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_port(port)
        assert httpx.get(f"http://127.0.0.1:{port}/hub/health").status_code == 404
        assert httpx.get(f"http://127.0.0.1:{port}/elsewhere").status_code == 404
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0].decode()
    health = [line for line in out.splitlines() if "/hub/health" in line]
    assert health and all(line.startswith("[I ") for line in health), out
    assert any(line.startswith("[E ") and "/elsewhere" in line for line in out.splitlines()), out

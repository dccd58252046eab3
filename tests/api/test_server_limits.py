"""The live server closes slow and excessive connections (raw sockets against real uvicorn)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_services
from tests.live import serve_gateway

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
MAX_CONNECTIONS = 6
# Upper bounds on when the server acts: generous, since 2 busy cores may delay it by
# seconds, yet far below what a server without the limit would take (it would never act).
SLACK = 10.0


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, demo_files: dict[str, Path]) -> Iterator[str]:
    services = make_services(tmp_path_factory.mktemp("limits"), demo_files, datasets=("exam",))
    services.settings = services.settings.model_copy(update={
        "header_timeout_seconds": HEADER_TIMEOUT, "body_timeout_seconds": BODY_TIMEOUT,
        "max_connections": MAX_CONNECTIONS})
    with serve_gateway(services) as base:
        yield base


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _read_until_closed(sock: socket.socket, limit: float = 30) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed."""
    start, data = time.monotonic(), b""
    sock.settimeout(limit)
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data, time.monotonic() - start
        data += chunk


def test_silent_connection_is_closed_after_the_header_timeout(url: str) -> None:
    with _connect(url) as sock:
        data, waited = _read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert b"headers did not arrive" in data
    assert HEADER_TIMEOUT * 0.8 <= waited < HEADER_TIMEOUT + SLACK


def test_headers_dribbled_byte_by_byte_do_not_extend_the_deadline(url: str) -> None:
    # 400 bytes, one every 0.1 s: a server whose deadline each byte extends keeps the
    # connection open for 40 s, far beyond HEADER_TIMEOUT + SLACK
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 400
    with _connect(url) as sock:
        start = time.monotonic()
        closed = False
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.1)
            if time.monotonic() - start > HEADER_TIMEOUT + SLACK:
                break
        if not closed:
            data, _ = _read_until_closed(sock, limit=0.5)  # closed already, or fails here
            assert data.startswith(b"HTTP/1.1 408 "), data
    assert time.monotonic() - start < HEADER_TIMEOUT + SLACK + 1


def test_slow_body_is_cut_off(url: str) -> None:
    with _connect(url) as sock:
        sock.sendall(b"POST /v1/auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 100\r\n\r\n{\"username\": ")
        data, waited = _read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert b"body did not arrive" in data
    assert waited < BODY_TIMEOUT + SLACK


def test_connections_over_the_cap_are_refused_then_service_resumes(url: str) -> None:
    idle = [_connect(url) for _ in range(MAX_CONNECTIONS)]
    try:
        # the server counts a connection once its loop has accepted it, which a loaded
        # machine may delay: an extra connection accepted before then times out (408) and
        # the next is tried; once all are counted, it is refused at once
        deadline = time.monotonic() + 30
        while True:
            with _connect(url) as extra:
                data, _ = _read_until_closed(extra)
            if data.startswith(b"HTTP/1.1 503 ") or time.monotonic() > deadline:
                break
        assert data.startswith(b"HTTP/1.1 503 "), data
        assert b"retry-after:" in data.lower() and b'"unavailable"' in data
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 30  # likewise, the closes are counted when the loop runs
    while (status := httpx.get(f"{url}/healthz", timeout=10).status_code) != 200:
        assert status == 503 and time.monotonic() < deadline, status
        time.sleep(0.2)


def test_a_kept_alive_client_is_served_normally(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(3):
            assert client.get("/healthz").json() == {"status": "ok"}
            time.sleep(HEADER_TIMEOUT * 0.6)  # idle between requests is keep-alive's business
        resp = client.post("/v1/auth/token", json={"username": "rita",
                                                   "password": "correct-horse-battery"})
        assert resp.status_code == 200, resp.text

"""An unusable store (read-only file, server down) answers 503 ``unavailable``, not a bug.

Real faults, no mocks: a SQLite database opened read-only, and PostgreSQL on a closed port.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.adapters.db import Store, StoreUnavailable
from gateway.app import create_app
from gateway.bootstrap import bootstrap
from gateway.settings import Settings
from tests.conftest import PASSWORD, GatewayEnv

MESSAGE = "the store is unavailable; try again shortly"


@pytest.fixture(scope="module")
def gateway_env(exam_env: GatewayEnv) -> GatewayEnv:
    """The accounts and the exam dataset."""
    return exam_env


def _app_on(env: GatewayEnv, url: str) -> TestClient:
    """A second gateway on the same home (same signing key), on another store URL."""
    settings = Settings(home=env.services.settings.home, database_url=url)
    return TestClient(create_app(services=bootstrap(settings, migrate=False)))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _assert_unavailable(resp: Any) -> None:
    assert resp.status_code == 503, resp.text
    assert resp.json() == {"error": {"code": "unavailable", "message": MESSAGE}}
    assert int(resp.headers["Retry-After"]) > 0


def test_a_read_only_database_answers_503_and_charges_nothing(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    env.grant("rita", "exam", 1.0)
    headers = env.headers("rita")
    path = Path(env.services.settings.db_url.removeprefix("sqlite:///"))
    with _app_on(env, f"sqlite:///file:{path}?mode=ro&uri=true") as read_only:
        assert read_only.get("/v1/me", headers=headers).status_code == 200  # reads still work
        resp = read_only.post("/v1/queries", headers=headers, json={
            "dataset": "exam", "select": [{"agg": "count"}], "epsilon": 0.1})
        _assert_unavailable(resp)
        page = read_only.get("/console/login")  # a console page that must write: say it in words
        signed = read_only.post("/console/login", follow_redirects=False, data={
            "username": "rita", "password": PASSWORD, "csrf_token": _csrf(page.text)},
            cookies=page.cookies)
        assert signed.status_code == 503 and "Temporarily unavailable" in signed.text
        assert MESSAGE in signed.text.lower()
        assert int(signed.headers["Retry-After"]) > 0
    grants = env.get("rita", "/v1/grants").json()
    assert [g["epsilon_spent"] for g in grants if g["dataset"] == "exam"] == [0]
    assert env.services.audit.verify().ok


def test_a_database_server_that_is_down_answers_503(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    url = f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/test"
    with _app_on(env, url) as down:
        _assert_unavailable(down.get("/v1/datasets", headers=env.headers("ron")))
    with pytest.raises(StoreUnavailable), Store(url, connect_timeout=2).read() as conn:
        conn.exec_driver_sql("SELECT 1")


def _csrf(html: str) -> str:
    import re

    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)

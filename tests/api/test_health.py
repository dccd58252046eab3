"""/healthz says the process is up; /readyz reports the store's state (SQLite, PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from gateway.adapters.db import Store
from gateway.adapters.db.health import migration_head, store_state
from gateway.app import create_app
from gateway.bootstrap import bootstrap
from gateway.settings import Settings
from tests.conftest import PG_BASE, GatewayEnv


def test_healthz_and_readyz_on_a_healthy_gateway(gateway_env: GatewayEnv) -> None:
    assert gateway_env.client.get("/healthz").json() == {"status": "ok"}
    resp = gateway_env.client.get("/readyz")
    assert resp.status_code == 200, resp.text
    store = resp.json()["store"]
    assert resp.json()["status"] == "ready"
    assert store["backend"] == "sqlite" and store["reachable"] and store["writable"]
    assert store["revision"] == store["head"] == migration_head()
    assert store["disk_free_bytes"] > 0


def test_readyz_is_503_when_migrations_are_behind(tmp_path: Path, store_url: str) -> None:
    services = bootstrap(Settings(home=tmp_path, database_url=store_url))
    with TestClient(create_app(services=services)) as client:
        assert client.get("/readyz").status_code == 200
        with services.store.engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
        resp = client.get("/readyz")
        assert client.get("/healthz").status_code == 200  # the process itself is fine
    services.store.dispose()
    assert resp.status_code == 503 and resp.headers["retry-after"]
    body = resp.json()
    assert body["error"]["code"] == "unavailable"
    assert "migrations are not current" in body["error"]["message"]
    assert body["store"]["revision"] == "0001"


def test_unreachable_postgresql_is_reported() -> None:
    store = Store("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2")
    state = store_state(store)
    store.dispose()
    assert not state.ready and not state.reachable
    assert "unreachable" in str(state.problem)


def test_read_only_postgresql_is_not_ready() -> None:
    store = Store(f"{PG_BASE}?options=-cdefault_transaction_read_only%3Don")
    state = store_state(store)
    store.dispose()
    assert state.reachable and state.writable is False
    assert "accepts no writes" in str(state.problem)

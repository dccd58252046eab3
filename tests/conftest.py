"""Shared fixtures: a real gateway (real store, real OpenDP engine) per test module.

``gateway_env`` builds one in a temporary DPSANDBOX_HOME with the demo datasets and one
account per role; ``client`` is a Starlette TestClient against it. PostgreSQL tests get
a fresh schema per test run in the `test` database at 127.0.0.1:5432.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

os.environ["RUST_BACKTRACE"] = "0"

from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.bootstrap import Services, bootstrap
from gateway.demo_data import export_demo_data
from gateway.services.common import Principal
from gateway.settings import Settings

PASSWORD = "correct-horse-battery"
ADMIN = Principal("cli:test", "admin")
PG_BASE = os.environ.get("DPSANDBOX_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ACCOUNTS = {
    "root_admin": ("admin", None),
    "admin2": ("admin", None),
    "audrey": ("auditor", None),
    "rita": ("researcher", None),
    "ron": ("researcher", None),
    "erin": ("enterprise", "acme"),
    "eve": ("enterprise", "acme"),
}


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    cache = Path(os.environ.get("DPSANDBOX_DEMO_CACHE", tmp_path_factory.mktemp("demo")))
    return export_demo_data(cache)


@dataclass
class GatewayEnv:
    services: Services
    client: TestClient
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, user: str) -> dict[str, str]:
        if user not in self.tokens:
            resp = self.client.post("/v1/auth/token", json={"username": user,
                                                            "password": PASSWORD})
            assert resp.status_code == 200, resp.text
            self.tokens[user] = resp.json()["access_token"]
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def get(self, user: str, path: str, **kw: Any) -> Any:
        return self.client.get(path, headers=self.headers(user), **kw)

    def post(self, user: str, path: str, body: Any = None, **kw: Any) -> Any:
        return self.client.post(path, json=body, headers=self.headers(user), **kw)

    def grant(self, user: str, dataset: str, epsilon: float, **kw: Any) -> dict[str, Any]:
        return self.services.ledger.give(ADMIN, user=user, org=None, dataset=dataset,
                                         epsilon=epsilon, delta=kw.get("delta"),
                                         days=kw.get("days"))


def make_services(home: Path, demo_files: dict[str, Path], db_url: str | None = None,
                  datasets: tuple[str, ...] = ("flights", "exam", "credit")) -> Services:
    settings = Settings(home=home, database_url=db_url, login_lockout_seconds=2)
    services = bootstrap(settings)
    for role_user, (role, org) in ACCOUNTS.items():
        services.users.create(ADMIN, username=role_user, role=role, password=PASSWORD, org=org)
    for name in datasets:
        services.catalog.register(ADMIN, name=name, data=demo_files[name])
    return services


def serve(services: Services) -> Iterator[GatewayEnv]:
    """The app of ``services`` behind a test client, for a fixture to ``yield from``."""
    with TestClient(create_app(services=services)) as client:
        yield GatewayEnv(services, client)


@pytest.fixture(scope="module")
def gateway_env(tmp_path_factory: pytest.TempPathFactory,
                demo_files: dict[str, Path]) -> Iterator[GatewayEnv]:
    yield from serve(make_services(tmp_path_factory.mktemp("home"), demo_files))


@pytest.fixture(scope="module")
def exam_env(tmp_path_factory: pytest.TempPathFactory,
             demo_files: dict[str, Path]) -> Iterator[GatewayEnv]:
    """A gateway with the accounts and one small dataset (exam), per test module."""
    yield from serve(make_services(tmp_path_factory.mktemp("home"), demo_files, datasets=("exam",)))


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for this test run, dropped afterwards."""
    import sqlalchemy as sa

    schema = f"dps_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_BASE)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:  # the contract says PostgreSQL is there: fail
        pytest.fail(f"PostgreSQL at {PG_BASE} is not reachable: {exc}")
    yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run a test against both stores (each PostgreSQL test in its own schema)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    import sqlalchemy as sa

    base_url = request.getfixturevalue("pg_url")
    schema = f"dps_t_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(PG_BASE)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    del base_url
    return f"{PG_BASE}?options=-csearch_path%3D{schema}"

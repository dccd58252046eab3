"""Gateways that read their secrets from DPSANDBOX_SECRETS_DIR or the environment accept
each other's tokens and hub secret; after a key rotation old tokens verify until their key
is dropped from the set (docs/deploy/replicas.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.adapters.secrets import new_signing_key_pem
from gateway.app import create_app
from gateway.bootstrap import bootstrap
from gateway.settings import Settings
from gateway.web.session import csrf_for
from tests.conftest import ADMIN, PASSWORD
from tests.unit.test_secrets import public_pem, secrets_dir


def gateway(home: Path, store: str) -> TestClient:
    """A gateway over a shared store, with its own (unshared) home; secrets from the env."""
    services = bootstrap(Settings(home=home, database_url=store))
    return TestClient(create_app(services=services))


def token_of(client: TestClient) -> str:
    resp = client.post("/v1/auth/token", json={"username": "rita", "password": PASSWORD})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def me(client: TestClient, token: str) -> tuple[int, str]:
    resp = client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    return resp.status_code, resp.json().get("error", {}).get("code", "")


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    services = bootstrap(Settings(home=tmp_path / "admin", database_url=url))
    services.users.create(ADMIN, username="rita", role="researcher", password=PASSWORD, org=None)
    services.store.dispose()
    return url


def test_the_secrets_dir_is_shared_and_rotation_keeps_old_tokens(
        tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = new_signing_key_pem(), new_signing_key_pem()
    shared = tmp_path / "secrets"
    monkeypatch.setenv("DPSANDBOX_SECRETS_DIR", str(shared))
    secrets_dir(shared, old)
    with gateway(tmp_path / "a", store) as a, gateway(tmp_path / "b", store) as b:
        old_token = token_of(a)
        assert me(b, old_token)[0] == 200
        hub = {"X-Hub-Secret": (shared / "hub_secret").read_text().strip()}
        assert b.post("/v1/auth/sandbox-token", json={"username": "rita"},
                      headers=hub).status_code == 200
        assert not (tmp_path / "b" / "state" / "hub_secret").exists()

    secrets_dir(shared, new, public_pem(old))  # the new key signs, the old one verifies
    with gateway(tmp_path / "c", store) as c:
        assert me(c, old_token)[0] == 200
        new_token = token_of(c)

    (shared / "verify_keys.pem").unlink()  # the old key dropped from the set
    with gateway(tmp_path / "d", store) as d:
        assert me(d, old_token) == (401, "unauthenticated")
        assert me(d, new_token)[0] == 200


def test_environment_variables_are_the_shared_secrets(
        tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DPSANDBOX_SECRETS_DIR", raising=False)
    monkeypatch.setenv("DPSANDBOX_SIGNING_KEY", new_signing_key_pem().decode())
    monkeypatch.setenv("DPSANDBOX_HUB_SECRET", "hub-from-the-environment-1234")
    monkeypatch.setenv("DPSANDBOX_CONSOLE_SECRET", "console-from-the-environment-1234")
    with gateway(tmp_path / "a", store) as a, gateway(tmp_path / "b", store) as b:
        assert me(b, token_of(a))[0] == 200
        hub = {"X-Hub-Secret": "hub-from-the-environment-1234"}
        for client in (a, b):
            assert client.post("/v1/auth/sandbox-token", json={"username": "rita"},
                               headers=hub).status_code == 200
        services_a, services_b = a.app.state.services, b.app.state.services  # type: ignore[attr-defined]
        assert csrf_for(services_a, "some-jti") == csrf_for(services_b, "some-jti")
    assert not (tmp_path / "a" / "state" / "signing_key.pem").exists()
    assert not (tmp_path / "a" / "state" / "console_secret").exists()

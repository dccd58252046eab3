"""Tokens: every forged, stale or misdirected token is refused (401) and audited."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.conftest import ADMIN as ADMIN_CLI
from tests.conftest import GatewayEnv


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(env: GatewayEnv, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": env.services.tokens.issuer, "aud": env.services.tokens.audience,
            "sub": "root_admin", "role": "admin", "scope": "full", "iat": now, "nbf": now,
            "exp": now + 600, "jti": uuid.uuid4().hex}
    base.update(over)
    return base


def signed(env: GatewayEnv, **over: Any) -> str:
    return jwt.encode(claims(env, **over), env.services.tokens._key, algorithm="EdDSA")


def hs256_with_public_key(env: GatewayEnv) -> str:
    public = env.services.tokens.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims(env)).encode())
    sig = hmac.new(public, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


def alg_none(env: GatewayEnv) -> str:
    head = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{head}.{_b64(json.dumps(claims(env)).encode())}."


FORGERIES = {
    "malformed": lambda env: "not-a-jwt",
    "expired": lambda env: signed(env, exp=int(time.time()) - 120, iat=int(time.time()) - 900,
                                  nbf=int(time.time()) - 900),
    "not yet valid": lambda env: signed(env, nbf=int(time.time()) + 600),
    "alg none": alg_none,
    "HS256 with the public key": hs256_with_public_key,
    "wrong audience": lambda env: signed(env, aud="someone-else"),
    "wrong issuer": lambda env: signed(env, iss="evil"),
    "missing jti": lambda env: jwt.encode({k: v for k, v in claims(env).items() if k != "jti"},
                                          env.services.tokens._key, algorithm="EdDSA"),
    "another key": lambda env: jwt.encode(claims(env), Ed25519PrivateKey.generate(),
                                          algorithm="EdDSA"),
}


@pytest.mark.parametrize("kind", sorted(FORGERIES))
def test_forged_or_stale_tokens_are_refused_and_audited(gateway_env: GatewayEnv,
                                                        kind: str) -> None:
    env = gateway_env
    before = env.services.audit.page(_flt(), page=1, size=1)[1]
    token = FORGERIES[kind](env)
    resp = env.client.get("/v1/users", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"]["code"] == "unauthenticated"
    entries, after = env.services.audit.page(_flt(), page=1, size=1)
    assert after == before + 1
    assert entries[0]["outcome"] == "denied"
    assert entries[0]["detail"]["code"] == "unauthenticated"


def _flt() -> Any:
    from gateway.services.audit import AuditFilter

    return AuditFilter(outcome="denied")


def test_a_valid_token_works_and_carries_the_required_claims(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    token = env.client.post("/v1/auth/token", json={"username": "root_admin",
                                                    "password": "correct-horse-battery"}).json()
    payload = jwt.decode(token["access_token"], options={"verify_signature": False})
    assert {"exp", "iat", "nbf", "iss", "aud", "sub", "role", "jti"} <= payload.keys()
    assert jwt.get_unverified_header(token["access_token"])["alg"] == "EdDSA"
    assert env.client.get("/v1/me", headers={
        "Authorization": f"Bearer {token['access_token']}"}).status_code == 200


def test_failed_logins_are_audited_and_lock_the_account(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    for _ in range(env.services.settings.login_max_failures):
        resp = env.client.post("/v1/auth/token", json={"username": "ron", "password": "wrong!!!"})
        assert resp.status_code == 401
    locked = env.client.post("/v1/auth/token", json={"username": "ron",
                                                     "password": "correct-horse-battery"})
    assert locked.status_code == 401 and "locked" in locked.json()["error"]["message"]
    from gateway.services.audit import AuditFilter

    entries, _ = env.services.audit.page(AuditFilter(actor="ron", action="auth.login",
                                                     outcome="denied"), page=1, size=50)
    assert len(entries) == env.services.settings.login_max_failures + 1
    time.sleep(env.services.settings.login_lockout_seconds + 0.5)
    again = env.client.post("/v1/auth/token", json={"username": "ron",
                                                    "password": "correct-horse-battery"})
    assert again.status_code == 200


def test_sandbox_tokens_need_the_hub_secret_and_cannot_administer(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    refused = env.client.post("/v1/auth/sandbox-token", json={"username": "rita"},
                              headers={"X-Hub-Secret": "guess"})
    assert refused.status_code == 401
    ok = env.client.post("/v1/auth/sandbox-token", json={"username": "rita"},
                         headers={"X-Hub-Secret": env.services.hub_secret})
    assert ok.status_code == 200
    headers = {"Authorization": f"Bearer {ok.json()['access_token']}"}
    assert env.client.get("/v1/me", headers=headers).json()["scope"] == "sandbox"
    assert env.client.get("/v1/users", headers=headers).status_code == 403
    admin_sandbox = env.client.post("/v1/auth/sandbox-token", json={"username": "root_admin"},
                                    headers={"X-Hub-Secret": env.services.hub_secret})
    assert admin_sandbox.status_code == 403
    fresh = env.client.post("/v1/auth/refresh", headers=headers)
    assert fresh.status_code == 200
    assert jwt.decode(fresh.json()["access_token"],
                      options={"verify_signature": False})["scope"] == "sandbox"


def test_a_role_change_ends_the_accounts_tokens(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    env.services.users.create(ADMIN_CLI, username="carl", role="researcher",
                              password="correct-horse-battery")
    old = env.headers("carl")
    assert env.client.get("/v1/me", headers=old).status_code == 200
    changed = env.post("root_admin", "/v1/users/carl/role", {"role": "auditor"})
    assert changed.status_code == 200 and changed.json()["role"] == "auditor"
    assert env.client.get("/v1/me", headers=old).status_code == 401
    env.tokens.pop("carl")
    assert env.get("carl", "/v1/me").json()["role"] == "auditor"
    own = env.post("root_admin", "/v1/users/root_admin/role", {"role": "researcher"})
    assert own.status_code == 403
    enterprise = env.post("root_admin", "/v1/users/carl/role", {"role": "enterprise"})
    assert enterprise.status_code == 422 and "org" in enterprise.json()["error"]["message"]


def test_logout_ends_the_token_on_the_server(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    token = env.client.post("/v1/auth/token", json={"username": "rita",
                                                    "password": "correct-horse-battery"})
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert env.client.get("/v1/me", headers=headers).status_code == 200
    assert env.client.post("/v1/auth/logout", headers=headers).status_code == 204
    after = env.client.get("/v1/me", headers=headers)
    assert after.status_code == 401 and "signed out" in after.json()["error"]["message"]
    assert env.get("rita", "/v1/me").status_code == 200  # other sessions go on


def test_the_hub_ends_a_stopped_servers_token_and_every_refresh_of_it(
    gateway_env: GatewayEnv,
) -> None:
    env = gateway_env
    secret = {"X-Hub-Secret": env.services.hub_secret}
    issued = env.client.post("/v1/auth/sandbox-token", json={"username": "rita"}, headers=secret)
    token = issued.json()["access_token"]
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    old = {"Authorization": f"Bearer {token}"}
    refreshed = env.client.post("/v1/auth/refresh", headers=old).json()["access_token"]
    assert jwt.decode(refreshed, options={"verify_signature": False})["sid"] == jti
    new = {"Authorization": f"Bearer {refreshed}"}
    other = env.client.post("/v1/auth/sandbox-token", json={"username": "rita"}, headers=secret)
    other_headers = {"Authorization": f"Bearer {other.json()['access_token']}"}
    body = {"jti": jti, "username": "rita"}
    path = "/v1/auth/sandbox-token/revoke"
    assert env.client.post(path, json=body).status_code == 401
    assert env.client.post(path, json=body, headers={"X-Hub-Secret": "guess"}).status_code == 401
    assert env.client.post(path, json=body, headers=old).status_code == 401  # a token is not the hub
    assert env.client.get("/v1/me", headers=old).status_code == 200  # nothing ended yet
    bad = env.client.post(path, json={"jti": "../x", "username": "rita"}, headers=secret)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    assert env.client.post(path, json=body, headers=secret).status_code == 204
    assert env.client.post(path, json=body, headers=secret).status_code == 204  # idempotent
    query = {"dataset": "flights", "select": [{"agg": "count"}], "epsilon": 0.1}
    for headers in (old, new):
        assert env.client.get("/v1/me", headers=headers).status_code == 401
        assert env.client.post("/v1/auth/refresh", headers=headers).status_code == 401
        assert env.client.post("/v1/queries", json=query, headers=headers).status_code == 401
    assert env.client.get("/v1/me", headers=other_headers).status_code == 200  # another server's
    audit = env.get("root_admin", "/v1/audit?actor=rita&action=auth.sandbox_revoke").json()
    assert [e["detail"]["jti"] for e in audit["entries"]] == [jti, jti]

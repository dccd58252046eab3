"""Irreversible actions say why, and a second grant is an extension (issue 14).

Revoking a grant and disabling an account need a reason, refused without one and changing
nothing; the reason is audited under the admin who acted. An active grant grows by
``extend`` (audited ``grant.extend``), and an application can be approved by extending the
applicant's grant instead of adding a second one.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.services.audit import AuditFilter
from tests.conftest import ADMIN, GatewayEnv

ZH = {"Accept-Language": "zh-CN"}
PURPOSE = "estimating departure delays by airport for a transport study"


def entries(env: GatewayEnv, **flt: Any) -> list[dict[str, Any]]:
    found, _total = env.services.audit.page(AuditFilter(**flt), page=1, size=50)
    return found


@pytest.mark.parametrize("body", [None, {}, {"note": ""}, {"note": "   "}])
def test_revoke_without_a_reason_is_refused(gateway_env: GatewayEnv, body: Any) -> None:
    env = gateway_env
    grant = env.grant("rita", "flights", 0.5)
    resp = env.client.post(f"/v1/grants/{grant['id']}/revoke", json=body,
                           headers={**env.headers("root_admin"), **ZH})
    assert resp.status_code == 422
    assert resp.json()["error"] == {"code": "invalid_request",
                                    "message": "撤销授权需要说明理由：分析人员会看到它"}
    assert env.get("rita", f"/v1/grants/{grant['id']}").json()["status"] == "active"
    [denied] = entries(env, action="grant.revoke", grant_id=grant["id"])
    assert denied["outcome"] == "denied" and denied["actor"] == "root_admin"
    assert denied["detail"]["reason"] == "revoking a grant needs a reason: the analyst sees it"


def test_revoke_with_a_reason_is_audited_under_the_admin(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    grant = env.grant("rita", "flights", 0.5)
    resp = env.post("root_admin", f"/v1/grants/{grant['id']}/revoke",
                    {"note": "  project ended early  "})
    assert resp.status_code == 200 and resp.json()["status"] == "revoked"
    [entry] = entries(env, action="grant.revoke", grant_id=grant["id"])
    assert (entry["actor"], entry["role"], entry["outcome"]) == ("root_admin", "admin", "ok")
    assert entry["detail"]["note"] == "project ended early"
    # the holder reads the reason with the grant, and when a query is refused
    shown = env.get("rita", f"/v1/grants/{grant['id']}").json()
    assert shown["revoke_reason"] == "project ended early" and shown["revoked_at"]
    listed = {g["id"]: g for g in env.get("rita", "/v1/grants").json()}
    assert listed[grant["id"]]["revoke_reason"] == "project ended early"


def test_disable_needs_a_reason_enable_does_not(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    env.services.users.create(ADMIN, username="dave", role="researcher",
                              password="correct-horse-battery")
    refused = env.post("root_admin", "/v1/users/dave/disable")
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request"
    assert not next(u for u in env.get("root_admin", "/v1/users").json()
                    if u["username"] == "dave")["disabled"]
    done = env.post("root_admin", "/v1/users/dave/disable", {"note": "left the institute"})
    assert done.status_code == 200 and done.json()["disabled"] is True
    [entry] = entries(env, action="user.disable", outcome="ok")
    assert entry["actor"] == "root_admin" and entry["detail"] == {
        "username": "dave", "reason": "left the institute"}
    assert env.post("root_admin", "/v1/users/dave/enable").status_code == 200


def test_extend_adds_epsilon_and_is_audited(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    grant = env.grant("ron", "flights", 1.0, days=10)
    resp = env.post("root_admin", f"/v1/grants/{grant['id']}/extend",
                    {"epsilon": 0.5, "days": 60, "note": "second phase"})
    assert resp.status_code == 200, resp.text
    after = resp.json()
    assert after["epsilon_total"] == 1.5 and after["expires_at"] > grant["expires_at"]
    [entry] = entries(env, action="grant.extend", grant_id=grant["id"])
    assert entry["actor"] == "root_admin" and entry["epsilon"] == "0.5"
    assert entry["detail"]["epsilon_total_before"] == "1"
    assert entry["detail"]["epsilon_total_after"] == "1.5"
    assert entry["detail"]["note"] == "second phase"


def test_extend_is_bounded_by_the_policys_maximum_per_grant(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    grant = env.grant("ron", "flights", 4.0)  # flights: at most 5 per grant
    resp = env.client.post(f"/v1/grants/{grant['id']}/extend", json={"epsilon": 2.0},
                           headers={**env.headers("root_admin"), **ZH})
    assert resp.status_code == 422
    assert "最多" in resp.json()["error"]["message"]
    assert env.get("ron", f"/v1/grants/{grant['id']}").json()["epsilon_total"] == 4.0


def test_approve_by_extending_the_active_grant(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    grant = env.grant("rita", "flights", 1.0)
    app = env.post("rita", "/v1/requests", {"dataset": "flights", "purpose": PURPOSE,
                                            "epsilon": 1.0, "days": 30}).json()
    before = [g for g in env.get("rita", "/v1/grants").json() if g["dataset"] == "flights"]
    resp = env.post("root_admin", f"/v1/requests/{app['id']}/approve",
                    {"extend_grant": grant["id"], "note": "one grant is enough"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "approved" and resp.json()["grant_id"] == grant["id"]
    after = [g for g in env.get("rita", "/v1/grants").json() if g["dataset"] == "flights"]
    assert len(after) == len(before)  # no second grant
    assert next(g for g in after if g["id"] == grant["id"])["epsilon_total"] == 2.0
    [approve] = entries(env, action="request.approve", request_id=app["id"])
    assert approve["actor"] == "root_admin" and approve["detail"]["extended_grant"] is True
    assert entries(env, action="grant.extend", grant_id=grant["id"])


def test_approve_cannot_extend_someone_elses_grant(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    other = env.grant("ron", "flights", 1.0)
    app = env.post("rita", "/v1/requests", {"dataset": "flights", "purpose": PURPOSE,
                                            "epsilon": 1.0, "days": 30}).json()
    resp = env.post("root_admin", f"/v1/requests/{app['id']}/approve",
                    {"extend_grant": other["id"]})
    assert resp.status_code == 422
    assert env.get("rita", f"/v1/requests/{app['id']}").json()["status"] == "pending"
    assert env.get("ron", f"/v1/grants/{other['id']}").json()["epsilon_total"] == 1.0

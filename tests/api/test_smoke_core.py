from __future__ import annotations

from tests.conftest import GatewayEnv


def test_login_me_catalog(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    me = env.get("rita", "/v1/me").json()
    assert me == {"username": "rita", "role": "researcher", "org": None, "scope": "full"}
    cat = env.get("rita", "/v1/datasets").json()
    assert {d["name"] for d in cat} == {"flights", "exam", "credit"}
    flights = env.get("rita", "/v1/datasets/flights").json()
    assert "tailnum" not in flights["columns"]
    dummy = env.get("rita", "/v1/datasets/flights/dummy?rows=5").json()
    assert len(dummy["rows"]) == 5 and "tailnum" not in dummy["columns"]
    assert env.get("rita", "/v1/users").json()["error"]["code"] == "forbidden"
    verify = env.get("audrey", "/v1/audit/verify").json()
    assert verify["ok"] is True and verify["entries"] > 5

"""POST /v1/queries with an Idempotency-Key: a retry returns the first attempt, charged once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from gateway.services.audit import AuditFilter
from tests.conftest import GatewayEnv

BODY = {"dataset": "exam", "select": [{"agg": "count"}, {"agg": "mean", "column": "normexam"}],
        "epsilon": 0.1}


@pytest.fixture(scope="module", autouse=True)
def grants(gateway_env: GatewayEnv) -> None:
    gateway_env.grant("rita", "exam", 4.0)


def _spent(env: GatewayEnv) -> float:
    return sum(g["epsilon_spent"] for g in env.get("rita", "/v1/grants").json()
               if g["dataset"] == "exam")


def _post(env: GatewayEnv, key: str, body: dict[str, Any]) -> Any:
    return env.client.post("/v1/queries", json=body,
                           headers={**env.headers("rita"), "Idempotency-Key": key})


def _charges(env: GatewayEnv, query_id: str) -> int:
    return env.services.audit.page(AuditFilter(action="query.charge", query_id=query_id),
                                   page=1, size=10)[1]


def test_a_retry_returns_the_first_answer_and_charges_once(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    body = {**BODY, "where": [{"column": "normexam", "op": ">=", "value": -1.5}]}
    before = _spent(env)
    first = _post(env, "retry-key-0001", body)
    assert first.status_code == 200, first.text
    again = _post(env, "retry-key-0001", body)
    assert again.status_code == 200, again.text
    one, two = first.json(), again.json()
    assert two["id"] == one["id"] and two["rows"] == one["rows"] and two["replayed"] is True
    assert two["epsilon_charged"] == one["epsilon_charged"] == 0.1  # the one charge, repeated
    assert _spent(env) == pytest.approx(before + 0.1)
    assert _charges(env, one["id"]) == 1


def test_concurrent_retries_share_one_charge(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    body = {**BODY, "where": [{"column": "normexam", "op": ">=", "value": -1.25}]}
    before = _spent(env)
    env.headers("rita")  # sign in once, before the threads
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _post(env, "retry-key-0002", body), range(8)))
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert len({str(a.json()["rows"]) for a in answers}) == 1
    assert _spent(env) == pytest.approx(before + 0.1)
    assert _charges(env, answers[0].json()["id"]) == 1


def test_a_key_reused_for_another_request_is_refused(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    body = {**BODY, "where": [{"column": "normexam", "op": ">=", "value": -1.0}]}
    assert _post(env, "retry-key-0003", body).status_code == 200
    before = _spent(env)
    other = _post(env, "retry-key-0003", {**body, "epsilon": 0.2})
    assert other.status_code == 409 and other.json()["error"]["code"] == "conflict"
    assert "Idempotency-Key" in other.json()["error"]["message"]
    assert _spent(env) == before


def test_keys_are_per_account(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    env.grant("ron", "exam", 1.0)
    body = {**BODY, "where": [{"column": "normexam", "op": ">=", "value": -0.5}]}
    mine = _post(env, "retry-key-0004", body).json()
    theirs = env.client.post("/v1/queries", json=body, headers={
        **env.headers("ron"), "Idempotency-Key": "retry-key-0004"}).json()
    assert theirs["id"] != mine["id"] and not theirs.get("replayed")


@pytest.mark.parametrize("key", ["short", "with space!", "k" * 129])
def test_a_malformed_key_is_invalid(gateway_env: GatewayEnv, key: str) -> None:
    resp = _post(gateway_env, key, BODY)
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_request"


def test_a_retried_synthetic_release_is_charged_once(gateway_env: GatewayEnv) -> None:
    """The synthetic and model endpoints share the mechanism (the release unit of work)."""
    env = gateway_env
    body = {"dataset": "exam", "columns": ["schgend", "sex"], "rows": 40, "epsilon": 0.3,
            "method": "mst", "bins": 4}
    headers = {**env.headers("rita"), "Idempotency-Key": "synthetic-key-0001"}
    before = _spent(env)
    first = env.client.post("/v1/synthetic", json=body, headers=headers)
    assert first.status_code == 200, first.text
    again = env.client.post("/v1/synthetic", json=body, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"] and again.json()["replayed"] is True
    assert again.json()["rows"] == first.json()["rows"]
    assert _spent(env) == pytest.approx(before + 0.3)

"""Bad input: a clear error with the contract's code and status, no charge, a denied entry."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.services.audit import AuditFilter
from tests.conftest import GatewayEnv

OK = {"dataset": "flights", "select": [{"agg": "count"}], "epsilon": 0.1}


def q(**over: Any) -> dict[str, Any]:
    body = {**OK, **over}
    return {k: v for k, v in body.items() if v is not ...}


CASES: list[tuple[str, dict[str, Any], int, str, str]] = [
    ("unknown dataset", q(dataset="nope"), 404, "not_found", "no dataset named nope"),
    ("unknown column", q(select=[{"agg": "mean", "column": "nope"}]), 422, "invalid_request",
     "no queryable column nope"),
    ("hidden column", q(select=[{"agg": "count", "column": "tailnum"}]), 422, "invalid_request",
     "no queryable column tailnum"),
    ("hidden group key", q(group_by=["tailnum"]), 422, "invalid_request", "tailnum"),
    ("epsilon zero", q(epsilon=0), 422, "invalid_request", "greater than 0"),
    ("epsilon negative", q(epsilon=-1), 422, "invalid_request", "greater than 0"),
    ("epsilon NaN", q(epsilon=float("nan")), 422, "invalid_request", "finite"),
    ("epsilon infinite", q(epsilon=float("inf")), 422, "invalid_request", "finite"),
    ("epsilon over the grant", q(epsilon=4.5), 409, "budget_exhausted", "left"),
    ("delta negative", q(delta=-0.1), 422, "invalid_request", "delta"),
    ("delta one", q(delta=1), 422, "invalid_request", "delta"),
    ("delta not needed", q(delta=1e-8), 422, "invalid_request", "needs no delta"),
    ("no bounds", q(select=[{"agg": "sum", "column": "sched_dep_time"}]), 422,
     "unsupported_query", "column sched_dep_time has no bounds in policy flights"),
    ("unknown field", q(colour="red"), 422, "invalid_request", "colour"),
    ("unknown aggregate field", q(select=[{"agg": "count", "weight": 2}]), 422,
     "invalid_request", "weight"),
    ("unknown aggregate", q(select=[{"agg": "stddev", "column": "dep_delay"}]), 422,
     "unsupported_query", "unknown aggregate"),
    ("sql and spec", q(sql="SELECT COUNT(*) FROM flights"), 422, "invalid_request",
     "either sql or"),
    ("no epsilon", q(epsilon=...), 422, "invalid_request", "epsilon"),
]


@pytest.fixture(scope="module", autouse=True)
def rita_grant(gateway_env: GatewayEnv) -> dict[str, Any]:
    return gateway_env.grant("rita", "flights", 4.0)


def _spent(env: GatewayEnv) -> float:
    return sum(g["epsilon_spent"] for g in env.get("rita", "/v1/grants").json())


def _denied(env: GatewayEnv) -> int:
    return env.services.audit.page(AuditFilter(outcome="denied"), page=1, size=1)[1]


@pytest.mark.parametrize(("name", "body", "status", "code", "message"), CASES,
                         ids=[c[0] for c in CASES])
def test_bad_query_is_refused_uncharged_and_audited(
    gateway_env: GatewayEnv, name: str, body: dict[str, Any], status: int, code: str,
    message: str,
) -> None:
    env = gateway_env
    spent, denied = _spent(env), _denied(env)
    for path in ("/v1/queries", "/v1/queries/preview"):
        if path.endswith("preview") and code == "budget_exhausted":
            continue  # a preview spends nothing, so it never runs out
        # json.dumps writes NaN/Infinity as JavaScript does; a careless client may send them.
        resp = env.client.post(path, content=json.dumps(body), headers={
            **env.headers("rita"), "Content-Type": "application/json"})
        assert resp.status_code == status, resp.text
        error = resp.json()["error"]
        assert error["code"] == code and message in error["message"], error
    assert _spent(env) == spent
    assert _denied(env) > denied


def test_body_over_one_megabyte(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    denied = _denied(env)
    resp = env.post("rita", "/v1/queries", {**OK, "sql": "x" * 1_100_000})
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "invalid_request"
    assert "body over" in resp.json()["error"]["message"]
    assert _denied(env) == denied + 1


@pytest.mark.parametrize("path", ["/v1/users", "/v1/audit", "/v1/audit/verify",
                                  "/v1/audit/export?format=csv"])
def test_researcher_cannot_call_admin_or_auditor_endpoints(gateway_env: GatewayEnv,
                                                           path: str) -> None:
    env = gateway_env
    denied = _denied(env)
    resp = env.get("rita", path)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden"
    assert _denied(env) == denied + 1


def test_researcher_cannot_create_grants_or_users(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    grant = env.post("rita", "/v1/grants", {"user": "rita", "dataset": "flights", "epsilon": 5})
    assert grant.status_code == 403
    user = env.post("rita", "/v1/users", {"username": "mallory", "role": "admin",
                                          "password": "x" * 12})
    assert user.status_code == 403


def test_another_users_query_is_not_found(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    mine = env.post("rita", "/v1/queries", q(epsilon=0.05))
    assert mine.status_code == 200, mine.text
    other = env.get("ron", f"/v1/queries/{mine.json()['id']}")
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
    assert mine.json()["id"] not in {x["id"] for x in env.get("ron", "/v1/queries").json()}


def test_no_grant_and_unknown_route(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    resp = env.post("ron", "/v1/queries", {**OK, "dataset": "flights", "epsilon": 0.1})
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "grant_required"
    assert env.get("ron", "/v1/nothing-here").json()["error"]["code"] == "not_found"


def test_huge_numbers_and_boolean_quantiles_are_refused(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    huge = env.post("rita", "/v1/queries", q(where=[{"column": "month", "op": "=",
                                                     "value": 10**400}]))
    assert huge.status_code == 422 and huge.json()["error"]["code"] == "invalid_request"
    boolean_q = env.post("rita", "/v1/queries", q(select=[{"agg": "quantile",
                                                           "column": "air_time", "q": True}]))
    assert boolean_q.status_code == 422


def test_refused_sql_is_audited_with_its_text(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    sql = "SELECT COUNT(*) FROM flights a JOIN flights b ON a.day = b.day"
    resp = env.post("rita", "/v1/queries", {"sql": sql, "epsilon": 0.1})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "unsupported_query"
    entries, _ = env.services.audit.page(AuditFilter(actor="rita", action="query",
                                                     outcome="denied"), page=1, size=1)
    assert entries[0]["detail"]["sql"] == sql


@pytest.mark.parametrize(("name", "body"), [
    ("huge integer epsilon", q(epsilon=10**400)),          # defect c: too big for a float
    ("huge integer delta", q(delta=10**400)),
    ("boolean epsilon", q(epsilon=True)),                  # defect d: a boolean is no number
    ("boolean delta", q(delta=False)),
    ("boolean limit", q(limit=True)),
    ("boolean bin edge", q(select=[{"agg": "histogram", "column": "dep_delay",
                                    "bins": [True, 10, 20]}])),
    ("boolean filter on a number", q(where=[{"column": "month", "op": ">", "value": True}])),
])
def test_numbers_are_numbers_and_fit(gateway_env: GatewayEnv, name: str,
                                     body: dict[str, Any]) -> None:
    env = gateway_env
    spent, denied = _spent(env), _denied(env)
    resp = env.post("rita", "/v1/queries", body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "invalid_request"
    assert _spent(env) == spent and _denied(env) == denied + 1


def test_a_cached_replay_answers_under_its_own_names(gateway_env: GatewayEnv) -> None:
    """Defect b: the same computation under other aliases is served from the cache,
    relabelled with the new names before ORDER BY runs on them."""
    env = gateway_env
    first = env.post("rita", "/v1/queries", {"sql": "SELECT COUNT(*) AS a FROM flights "
                                             "WHERE month = 7", "epsilon": 0.05})
    assert first.status_code == 200, first.text
    assert first.json()["columns"] == ["a"] and not first.json()["cached"]
    again = env.post("rita", "/v1/queries", {"sql": "SELECT COUNT(*) AS b FROM flights "
                                             "WHERE month = 7 ORDER BY b", "epsilon": 0.05})
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["cached"] is True and body["columns"] == ["b"]
    assert body["rows"] == first.json()["rows"] and body["epsilon_charged"] == 0
    assert "b" in body["accuracy"] and "a" not in body["accuracy"]

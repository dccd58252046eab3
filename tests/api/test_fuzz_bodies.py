"""Random and near-valid JSON bodies never give a 500, and a refused query charges nothing."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import GatewayEnv

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=12,
)
VALID = {"dataset": "flights",
         "select": [{"agg": "count"}, {"agg": "mean", "column": "dep_delay"}],
         "where": [{"column": "month", "op": "between", "value": [6, 8]}],
         "group_by": ["origin"], "epsilon": 0.01}
FIELDS = st.sampled_from(["dataset", "select", "where", "group_by", "epsilon", "delta",
                          "order_by", "limit", "sql"])
AGG_FIELDS = st.sampled_from(["agg", "column", "q", "bins", "alias"])


@st.composite
def near_valid(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {k: v for k, v in VALID.items()}
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            body[draw(FIELDS)] = draw(JSON)
        else:
            body["select"] = [{**VALID["select"][1], draw(AGG_FIELDS): draw(JSON)}]
    return body


def _spent(env: GatewayEnv) -> float:
    return sum(g["epsilon_spent"] for g in env.get("rita", "/v1/grants").json())


def _check(env: GatewayEnv, path: str, body: Any) -> None:
    before = _spent(env)
    resp = env.post("rita", path, body)
    assert resp.status_code != 500, (body, resp.text)
    if resp.status_code >= 400:
        assert resp.json()["error"]["code"], resp.text
    if resp.status_code != 200 or path.endswith("preview") or resp.json().get("cached"):
        assert _spent(env) == before, (body, resp.text)


# too_slow: Hypothesis times the generation of examples, which 2 busy cores slow down at
# random (a health check of speed, not of the code under test)
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(body=near_valid())
def test_near_valid_query_bodies(gateway_env: GatewayEnv, body: dict[str, Any]) -> None:
    if not gateway_env.get("rita", "/v1/grants").json():
        gateway_env.grant("rita", "flights", 5.0)
    _check(gateway_env, "/v1/queries", body)
    _check(gateway_env, "/v1/queries/preview", body)


@FUZZ
@given(body=JSON)
def test_arbitrary_json_bodies(gateway_env: GatewayEnv, body: Any) -> None:
    for path in ("/v1/queries", "/v1/queries/preview", "/v1/requests"):
        resp = gateway_env.post("rita", path, body)
        assert resp.status_code in (400, 401, 403, 404, 409, 422), (path, body, resp.text)
        assert resp.json()["error"]["code"]

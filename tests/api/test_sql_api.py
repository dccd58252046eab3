"""DP SQL through the API: same cost and release path as the structured form, audited with
its text, and no SQL string ever yields a 500 or spends budget without a release."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.adapters.sql import compile_sql
from gateway.services.audit import AuditFilter
from tests.api.test_queries import fresh_release
from tests.conftest import GatewayEnv

SQL = "SELECT origin, COUNT(*) AS n, AVG(dep_delay) FROM flights WHERE month BETWEEN 6 AND 8 GROUP BY origin"
STRUCTURED = {
    "dataset": "flights",
    "select": [{"agg": "count", "alias": "n"}, {"agg": "mean", "column": "dep_delay"}],
    "where": [{"column": "month", "op": "between", "value": [6, 8]}],
    "group_by": ["origin"],
}


def _spent(env: GatewayEnv, user: str) -> float:
    grants = env.get(user, "/v1/grants").json()
    return sum(g["epsilon_spent"] for g in grants)


def test_preview_costs_the_same_as_the_structured_form(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    env.grant("rita", "flights", 3.0)
    by_sql = env.post("rita", "/v1/queries/preview", {"sql": SQL, "epsilon": 0.4})
    by_spec = env.post("rita", "/v1/queries/preview", {**STRUCTURED, "epsilon": 0.4})
    assert by_sql.status_code == 200, by_sql.text
    assert by_spec.status_code == 200, by_spec.text
    sql_body, spec_body = by_sql.json(), by_spec.json()
    for key in ("columns", "epsilon", "delta", "access"):
        assert sql_body[key] == spec_body[key]
    assert sql_body["columns"] == ["origin", "n", "mean_dep_delay"]
    assert sql_body["accuracy"].keys() == spec_body["accuracy"].keys()
    assert sql_body["accuracy"]["n"] == pytest.approx(spec_body["accuracy"]["n"])
    assert _spent(env, "rita") == 0


def test_sql_release_is_the_structured_release(gateway_env: GatewayEnv) -> None:
    """Same spec, same loss: the structured query gets the SQL query's answer from cache."""
    env = gateway_env
    before = _spent(env, "rita")
    body = fresh_release(env.post("rita", "/v1/queries", {"sql": SQL, "epsilon": 0.3}),
                         ["origin", "n", "mean_dep_delay"], epsilon=0.3)
    assert _spent(env, "rita") == pytest.approx(before + 0.3)

    same = env.post("rita", "/v1/queries", {**STRUCTURED, "epsilon": 0.3}).json()
    assert same["cached"] is True and same["rows"] == body["rows"]
    assert same["epsilon_charged"] == 0
    assert _spent(env, "rita") == pytest.approx(before + 0.3)

    stored = env.get("rita", f"/v1/queries/{body['id']}").json()
    assert stored["sql"] == SQL
    assert stored["spec"]["select"] == STRUCTURED["select"]


def test_audit_records_the_sql_text_and_the_spec(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    sql = "SELECT COUNT(*) FROM flights WHERE origin = 'JFK' -- audited as written"
    resp = env.post("rita", "/v1/queries", {"sql": sql, "epsilon": 0.1})
    assert resp.status_code == 200, resp.text
    entries, _ = env.services.audit.page(AuditFilter(query_id=resp.json()["id"]), page=1, size=50)
    charge = next(e for e in entries if e["action"] == "query.charge")
    assert charge["detail"]["sql"] == sql
    assert charge["detail"]["spec"] == compile_sql(sql).to_json()
    assert float(charge["epsilon"]) == pytest.approx(0.1)


def test_order_by_and_limit_apply_to_the_released_rows(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    sql = "SELECT carrier, COUNT(*) AS n FROM flights GROUP BY carrier ORDER BY n DESC LIMIT 3"
    resp = env.post("rita", "/v1/queries", {"sql": sql, "epsilon": 0.2})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    counts = [row[1] for row in body["rows"]]
    assert len(counts) <= 3 and counts == sorted(counts, reverse=True)
    assert body["delta_charged"] > 0  # carrier keys are not public: thresholded release


@pytest.mark.parametrize(
    ("sql", "status", "code", "fragment"),
    [
        (
            "SELECT COUNT(*) FROM flights WHERE month = 1 OR month = 2",
            422,
            "unsupported_query",
            "OR is not supported",
        ),
        (
            "SELECT origin, COUNT(*) FROM flights GROUP BY origin HAVING COUNT(*) > 5",
            422,
            "unsupported_query",
            "HAVING filters on released values",
        ),
        ("SELECT COUNT(*) FROM flights; DROP TABLE flights", 422, "unsupported_query", "2 statements"),
        ("DELETE FROM flights", 422, "unsupported_query", "only SELECT"),
        ("SELECT COUNT(* FROM flights", 422, "invalid_request", "line 1, column 19"),
        ("SELECT AVG(tailnum) FROM flights", 422, "invalid_request", "no queryable column"),
        ("SELECT AVG(nope) FROM flights", 422, "invalid_request", "no queryable column nope"),
        ("SELECT origin, COUNT(*) FROM flights GROUP BY orign", 422, "invalid_request",
         "unknown column orign in GROUP BY: dataset flights has no queryable column orign; "
         "did you mean origin?"),
        ("SELECT COUNT(*) FROM nowhere", 404, "not_found", "nowhere"),
        ("SELECT COUNT(*) FROM flights WHERE origin < 'K'", 422, "unsupported_query", "text column"),
        ("", 422, "invalid_request", "empty"),
        ("SELECT COUNT(*) FROM flights " + "-" * 10_001, 422, "invalid_request", "sql"),
    ],
)
def test_refused_sql_is_a_clear_error_and_free(
    gateway_env: GatewayEnv, sql: str, status: int, code: str, fragment: str
) -> None:
    env = gateway_env
    before = _spent(env, "rita")
    for path in ("/v1/queries", "/v1/queries/preview"):
        resp = env.post("rita", path, {"sql": sql, "epsilon": 0.1})
        assert resp.status_code == status, resp.text
        error = resp.json()["error"]
        assert error["code"] == code and fragment in error["message"], error
    assert _spent(env, "rita") == before


def test_a_hidden_column_is_never_suggested(gateway_env: GatewayEnv) -> None:
    resp = gateway_env.post("rita", "/v1/queries/preview",
                            {"sql": "SELECT COUNT(*) FROM flights GROUP BY tailnu", "epsilon": 0.1})
    message = resp.json()["error"]["message"]
    assert resp.status_code == 422 and "unknown column tailnu" in message
    assert "tailnum" not in message and "did you mean" not in message


# --- fuzzing through the API -----------------------------------------------------------------

_SEEDS = [
    SQL,
    "SELECT COUNT(*), MEDIAN(air_time) FROM flights WHERE origin IN ('EWR', 'JFK')",
    "SELECT month, SUM(distance) AS d FROM flights WHERE dep_delay > -5 GROUP BY month "
    "ORDER BY d DESC LIMIT 4",
    "SELECT schgend, AVG(normexam) FROM exam WHERE sex = 'F' GROUP BY schgend",
    "SELECT PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY standLRT) FROM exam",
]
_TOKENS = [
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP BY",
    "ORDER BY",
    "LIMIT",
    "AND",
    "OR",
    "NOT",
    "IN",
    "BETWEEN",
    "HAVING",
    "JOIN",
    "UNION",
    "COUNT(*)",
    "AVG",
    "(",
    ")",
    ",",
    ";",
    "'",
    '"',
    "--",
    "/*",
    "*/",
    "=",
    "<",
    "-",
    "*",
    "1e999",
    "NULL",
    "TRUE",
    "flights",
    "exam",
    "credit",
    "tailnum",
    "origin",
    "DROP TABLE flights",
    "ATTACH 'x'",
    "\x00",
    "é",
]


@st.composite
def _fuzzed_sql(draw: st.DrawFn) -> str:
    tokens = re.findall(r"\w+|'[^']*'|\S", draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(0, 5))):
        i = draw(st.integers(0, len(tokens)))
        if draw(st.booleans()) or not tokens:
            tokens.insert(i, draw(st.sampled_from(_TOKENS) | st.text(max_size=6)))
        else:
            del tokens[min(i, len(tokens) - 1)]
    return " ".join(tokens)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(sql=st.one_of(_fuzzed_sql(), st.text(max_size=200)), preview=st.booleans())
def test_fuzzed_sql_never_500_and_never_charges_without_release(
    gateway_env: GatewayEnv, sql: str, preview: bool
) -> None:
    env = gateway_env
    if not env.get("ron", "/v1/grants").json():
        env.grant("ron", "flights", 5.0)
    before = _spent(env, "ron")
    path = "/v1/queries/preview" if preview else "/v1/queries"
    resp = env.post("ron", path, {"sql": sql, "epsilon": 0.001})
    assert resp.status_code != 500, (sql, resp.text)
    body: dict[str, Any] = resp.json()
    if resp.status_code == 200 and not preview:
        assert body["status"] in ("released", "pending_review")
        charged = body.get("epsilon_charged") or 0
        assert _spent(env, "ron") == pytest.approx(before + charged)
    else:
        if resp.status_code != 200:
            assert set(body) == {"error"} and body["error"]["message"]
        assert _spent(env, "ron") == pytest.approx(before)

"""The client's pieces that need no gateway: where strings, select shorthands, results."""

from __future__ import annotations

import base64
import json
import math
import re
import time
from pathlib import Path

import pytest

from sandbox.client import DPResult, parse_where
from sandbox.client._errors import (
    BudgetExhausted,
    Conflict,
    GrantExpired,
    NotFound,
    ServerError,
    error_from_response,
)
from sandbox.client._results import histogram_long, result_frame
from sandbox.client._session import freshest, token_expiry, write_token_file
from sandbox.client._spec import build_select, query_body


@pytest.mark.parametrize(("text", "expected"), [
    ("month >= 6", [{"column": "month", "op": ">=", "value": 6}]),
    ("month between 6 and 8", [{"column": "month", "op": "between", "value": [6, 8]}]),
    ("origin in ('JFK','LGA')", [{"column": "origin", "op": "in", "value": ["JFK", "LGA"]}]),
    ("a = 1 and b != 'x'", [{"column": "a", "op": "=", "value": 1},
                            {"column": "b", "op": "!=", "value": "x"}]),
    ("dep_delay<-5.5 AND name == 'it''s'", [{"column": "dep_delay", "op": "<", "value": -5.5},
                                            {"column": "name", "op": "=", "value": "it's"}]),
    ('"standLRT" <> 0 and flag = true', [{"column": "standLRT", "op": "!=", "value": 0},
                                         {"column": "flag", "op": "=", "value": True}]),
])
def test_where_strings(text: str, expected: list[dict[str, object]]) -> None:
    assert parse_where(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"),
    ("month", "expected an operator"),
    ("month >= ", "expected a value"),
    ("month >>= 6", "expected a value"),
    ("a = 1 or b = 2", "OR is not supported"),
    ("a not in (1, 2)", "NOT is not supported"),
    ("a in 1, 2", "'(' after in"),
    ("a in (1, 2", "',' or ')'"),
    ("a between 1 or 2", "'and' inside between"),
    ("a = 1 b = 2", "'and' between conditions"),
    ("a = @", "cannot read"),
])
def test_bad_where_strings_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_where(text)


def test_query_body_from_shorthands() -> None:
    select = build_select(count=True, mean=["x", "y"], quantile={"z": [0.25, 0.75]},
                          histogram={"d": [0, 10, 20]}, select=["sum(w)", "quantile(v, 0.5)"])
    assert select == [
        {"agg": "count"}, {"agg": "mean", "column": "x"}, {"agg": "mean", "column": "y"},
        {"agg": "quantile", "column": "z", "q": 0.25}, {"agg": "quantile", "column": "z", "q": 0.75},
        {"agg": "histogram", "column": "d", "bins": [0.0, 10.0, 20.0]},
        {"agg": "sum", "column": "w"}, {"agg": "quantile", "column": "v", "q": 0.5},
    ]
    body = query_body("flights", select=[{"agg": "count"}], where=[("month", "==", 7)],
                      group_by="origin", order_by=["-count", "origin"], limit=5, epsilon=0.5)
    assert body["where"] == [{"column": "month", "op": "=", "value": 7}]
    assert body["group_by"] == ["origin"] and body["limit"] == 5 and "delta" not in body
    assert body["order_by"] == [{"column": "count", "desc": True},
                                {"column": "origin", "desc": False}]
    with pytest.raises(ValueError, match="nothing to compute"):
        build_select()
    with pytest.raises(ValueError, match="cannot use"):
        build_select(select=["median(x)"])
    for bad in (math.nan, math.inf, 0, -1):
        with pytest.raises(ValueError, match="epsilon must be"):
            query_body("flights", select=[{"agg": "count"}], epsilon=bad)


def test_result_frames_carry_accuracy_and_budget() -> None:
    answer = {"id": "q1", "dataset": "flights", "status": "released", "cached": False,
              "columns": ["origin", "count", "quantile_air_time_0.5"],
              "rows": [["EWR", 10, 150.0], ["JFK", 12, 160.0]],
              "accuracy": {"alpha": 0.05, "count": 2.5, "quantile_air_time_0.5": None},
              "epsilon_charged": 0.2, "delta_charged": 0.0,
              "budget": {"grant_id": "g", "epsilon_remaining": 1.8, "delta_remaining": 0.0}}
    frame = result_frame(answer, group_by=["origin"])
    assert isinstance(frame, DPResult)
    assert list(frame.columns) == ["origin", "count", "count_accuracy", "quantile_air_time_0.5",
                                   "quantile_air_time_0.5_accuracy"]
    assert frame["count_accuracy"].tolist() == [2.5, 2.5]
    assert math.isnan(frame["quantile_air_time_0.5_accuracy"].iloc[0])
    assert frame.attrs["budget"]["epsilon_remaining"] == 1.8 and frame.attrs["query_id"] == "q1"
    assert "epsilon left 1.8" in (frame._repr_html_() or "")
    assert type(frame.head(1)) is not DPResult  # derived frames are plain DataFrames


def test_histograms_become_long() -> None:
    answer = {"id": "q2", "dataset": "flights", "columns": [
        "origin", "histogram_distance [0, 500)", "histogram_distance [500, 1000)"],
        "rows": [["EWR", 5, 7], ["JFK", 6, 8]],
        "accuracy": {"alpha": 0.05, "histogram_distance [0, 500)": 3.0,
                     "histogram_distance [500, 1000)": 3.0},
        "epsilon_charged": 0.1}
    long = histogram_long(result_frame(answer, group_by=["origin"]), column="distance",
                          group_by=["origin"])
    assert list(long.columns) == ["origin", "bin", "count", "count_accuracy"]
    assert long["bin"].tolist() == ["[0, 500)", "[500, 1000)"] * 2
    assert long["count"].tolist() == [5, 7, 6, 8] and long.attrs["query_id"] == "q2"


def test_server_errors_map_to_types() -> None:
    import httpx

    def answer(status: int, body: object) -> httpx.Response:
        return httpx.Response(status, json=body, request=httpx.Request("GET", "http://x/"))

    err = error_from_response(answer(409, {"error": {"code": "budget_exhausted",
                                                     "message": "only 0.1 left"}}))
    assert type(err) is BudgetExhausted and isinstance(err, Conflict)
    assert err.message == "only 0.1 left" and err.status == 409 and "only 0.1 left" in str(err)
    assert type(error_from_response(answer(403, {"error": {"code": "grant_expired",
                                                           "message": "m"}}))) is GrantExpired
    assert type(error_from_response(answer(404, {"detail": "x"}))) is NotFound
    broken = error_from_response(httpx.Response(502, text="Bad gateway from proxy",
                                                request=httpx.Request("GET", "http://x/")))
    assert type(broken) is ServerError and "502" in broken.message


def _jwt(claims: dict[str, object]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJub25lIn0.{body}.sig"


def test_tokens_are_read_without_verifying_and_stored_privately(tmp_path: Path) -> None:
    now = int(time.time())
    old, new = _jwt({"sub": "rita", "exp": now + 60}), _jwt({"sub": "rita", "exp": now + 900})
    other = _jwt({"sub": "ron", "exp": now + 9999})
    assert token_expiry(new) == now + 900 and token_expiry("garbage") is None
    assert freshest(old, new, other, subject="rita") == new
    assert freshest(None, "", old) == old
    path = tmp_path / "token"
    assert write_token_file(path, new)
    assert path.read_text().strip() == new and path.stat().st_mode & 0o777 == 0o600
    assert not write_token_file(tmp_path / "missing-dir" / "token", new)


def test_pending_query_waits_through_running(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reviewer's release passes through ``running``; that is not an outcome yet."""
    import httpx

    from sandbox.client import PendingQuery
    from sandbox.client._pending import WAITING
    from sandbox.client._session import Session

    states = iter(["pending_review", "running", "released"])
    view = {"id": "q9", "dataset": "credit", "epsilon": 0.2, "delta": 0.0, "grant_id": None,
            "columns": ["count"], "rows": [[42]], "accuracy": {"alpha": 0.05, "count": 3.0}}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer t"
        return httpx.Response(200, json={**view, "status": next(states)})

    monkeypatch.setattr("sandbox.client._pending.FIRST_POLL", 0.01)
    session = Session("http://gw", "t", transport=httpx.MockTransport(handler))
    pending = PendingQuery(session, {**view, "status": "pending_review"},
                           finish=lambda v: result_frame({**v, "cached": False}))
    assert "running" in WAITING
    result = pending.result(timeout=5)
    assert result["count"].tolist() == [42] and result.attrs["epsilon_charged"] == 0.2


def test_a_query_written_wrongly_is_an_invalid_query_and_still_a_value_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from sandbox.client import DPSandboxError, InvalidQuery
    from sandbox.client._spec import check_loss
    from sandbox.client._where import parse_where

    with pytest.raises(InvalidQuery) as bad_where:
        parse_where("month >= ")
    assert isinstance(bad_where.value, ValueError) and isinstance(bad_where.value, DPSandboxError)
    assert bad_where.value.code == "invalid_query" and "expected a value" in bad_where.value.message
    monkeypatch.setenv("DPSANDBOX_LANG", "zh_CN")
    with pytest.raises(InvalidQuery, match="epsilon 必须是正的有限数"):
        check_loss(-1, None)


@pytest.mark.parametrize(("shape", "model"), [
    ("Account", "Me"), ("Grant", "GrantAnswer"), ("Application", "ApplicationAnswer"),
    ("GrantBudget", "BudgetLeft"), ("QueryStatus", "QueryAnswer"),
])
def test_the_client_reads_the_apis_documented_shapes(shape: str, model: str) -> None:
    """A field a client shape cannot do without is one the API's response model requires;
    fields the model does not declare yet (it allows extras, e.g. zCDP's rho) are optional."""
    import dataclasses

    import sandbox.client as client
    from gateway.api import responses

    fields = dataclasses.fields(getattr(client, shape))
    documented = getattr(responses, model).model_fields
    required = [f.name for f in fields if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]
    assert required and all(documented[name].is_required() for name in required), required
    shared = [f.name for f in fields if f.name in documented]
    assert len(shared) >= len(documented) // 2, shared  # most of the documented shape is read


def test_a_keyed_query_is_retried_with_the_same_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connection lost, then 503 with Retry-After, then the answer: one key throughout."""
    import httpx

    from sandbox.client._runner import QueryRunner
    from sandbox.client._session import Session

    monkeypatch.setattr("sandbox.client._session.RETRY_FIRST_WAIT", 0.01)
    answer = {"id": "q1", "status": "released", "cached": False, "dataset": "exam",
              "columns": ["count"], "rows": [[7]], "accuracy": {"alpha": 0.05, "count": 1.0},
              "epsilon_charged": 0.1, "delta_charged": 0.0, "budget": None}
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/grants":
            return httpx.Response(200, json=[])
        keys.append(request.headers["Idempotency-Key"])
        if len(keys) == 1:
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        if len(keys) == 2:
            return httpx.Response(503, headers={"Retry-After": "0"}, json={
                "error": {"code": "unavailable", "message": "the store is unavailable"}})
        return httpx.Response(200, json=answer)

    session = Session("http://gw", "t", transport=httpx.MockTransport(handler))
    result = QueryRunner(session, say=lambda _: None).run(
        {"dataset": "exam", "select": [{"agg": "count"}], "epsilon": 0.1})
    assert result["count"].tolist() == [7]
    assert len(keys) == 3 and len(set(keys)) == 1 and len(keys[0]) == 32


def test_an_unkeyed_post_is_not_repeated_after_the_request_left() -> None:
    import httpx

    from sandbox.client._errors import DPSandboxError
    from sandbox.client._session import Session

    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        raise httpx.ReadError("connection reset", request=request)

    session = Session("http://gw", "t", transport=httpx.MockTransport(handler))
    with pytest.raises(DPSandboxError):
        session.post("/v1/requests", {"dataset": "exam"})
    assert calls == ["/v1/requests"]

"""Typed responses: every /v1 route declares its answer, and /v1/openapi.json documents it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi.routing import APIRoute
from pydantic import BaseModel

from tests.conftest import GatewayEnv


def _routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """Every APIRoute of the app with its full path (into included routers too)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        elif hasattr(route, "original_router"):  # FastAPI's included router
            yield from _routes(route.original_router.routes,
                               prefix + route.include_context.prefix)
        elif hasattr(route, "routes"):
            yield from _routes(route.routes, prefix + getattr(route, "path", ""))


def _declares_an_answer(route: APIRoute) -> bool:
    if route.status_code == 204:
        return True  # no body
    model = route.response_model
    if model is not None:
        inner = getattr(model, "__args__", (model,))[0]  # list[Model] -> Model
        return isinstance(inner, type) and issubclass(inner, BaseModel)
    documented = route.responses.get(200, {}).get("content", {})
    return bool(documented)  # a file (the audit export): its media types


def test_every_v1_route_declares_a_response_model(gateway_env: GatewayEnv) -> None:
    v1 = [(path, route) for path, route in _routes(gateway_env.client.app.routes)
          if path.startswith("/v1/")]
    assert len(v1) > 30  # the walk really reached the routers
    missing = [f"{sorted(r.methods)} {path}" for path, r in v1 if not _declares_an_answer(r)]
    assert missing == []


def test_openapi_documents_every_response(gateway_env: GatewayEnv) -> None:
    doc = gateway_env.client.get("/v1/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert {"QueryAnswer", "GrantAnswer", "ApplicationAnswer", "AuditPage",
            "ErrorBody"} <= set(schemas)
    undocumented = []
    for path, operations in doc["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            responses = operation["responses"]
            ok = [code for code in responses if code.startswith("2")]
            good = all(code == "204" or responses[code].get("content") for code in ok)
            errors = responses.get("403", {}).get("content", {}).get("application/json", {})
            if not ok or not good or "ErrorBody" not in str(errors):
                undocumented.append(f"{method.upper()} {path}")
    assert undocumented == []
    answer = doc["paths"]["/v1/queries"]["post"]["responses"]["200"]["content"]
    assert answer["application/json"]["schema"] == {"$ref": "#/components/schemas/QueryAnswer"}


def test_answers_keep_their_shape(gateway_env: GatewayEnv) -> None:
    """A field a service does not send stays absent (not null): the API is unchanged."""
    env = gateway_env
    env.grant("ron", "flights", 1.0)
    answer = env.post("ron", "/v1/queries", {"dataset": "flights", "select": [{"agg": "count"}],
                                             "epsilon": 0.1}).json()
    assert {"id", "status", "cached", "columns", "rows", "accuracy", "budget"} <= set(answer)
    assert "trace" not in answer and "review" not in answer and "spec" not in answer
    mine = env.get("ron", f"/v1/queries/{answer['id']}").json()
    assert "trace" not in mine and "cached" not in mine and mine["rows"] == answer["rows"]
    assert "trace" in env.get("audrey", f"/v1/queries/{answer['id']}").json()

"""Who may call what: every /v1 endpoint x every role -> the expected status.

Columns: nobody signed in, an admin, the auditor, ``rita`` (the analyst who owns the
application, grant and queries used in the paths), ``ron`` (another researcher) and
``erin`` (an enterprise analyst of another org). The table must name every /v1 route
the app serves, so a new endpoint cannot ship without its row.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select

from gateway.adapters.db import tables as t
from tests.conftest import ADMIN, PASSWORD, GatewayEnv

ROLES = ("anon", "root_admin", "audrey", "rita", "ron", "erin")
PURPOSE = "checking who may do what with data-use applications"
COUNT = {"dataset": "flights", "select": [{"agg": "count"}], "epsilon": 0.05}
# exam is open: every analyst gets a grant on first use
SYNTH = {"dataset": "exam", "columns": ["sex", "schgend"], "rows": 10, "epsilon": 0.05, "method": "mst"}
MODEL = {"dataset": "exam", "kind": "linear_regression", "x": ["standLRT"], "y": "normexam",
         "epsilon": 0.05}
HELD = {"dataset": "credit", "select": [{"agg": "count"}]}


class World:
    """The objects the paths point at, all owned by rita; fresh ones made on demand."""

    def __init__(self, env: GatewayEnv) -> None:
        self.env = env
        app = env.post("rita", "/v1/requests", {"dataset": "flights", "purpose": PURPOSE,
                                                "epsilon": 2.0, "days": 30}).json()
        approved = env.post("root_admin", f"/v1/requests/{app['id']}/approve", {}).json()
        self.request_id, self.grant_id = app["id"], approved["grant_id"]
        released = env.post("rita", "/v1/queries", COUNT)
        assert released.status_code == 200, released.text
        self.query_id = released.json()["id"]
        env.grant("rita", "credit", 3.0)
        self.serial = itertools.count()

    def pending_application(self) -> str:
        for app in self.env.get("rita", "/v1/requests?status=pending").json():
            if app["dataset"] == "flights":
                return str(app["id"])
        made = self.env.post("rita", "/v1/requests", {"dataset": "flights", "purpose": PURPOSE,
                                                      "epsilon": 1.0, "days": 30})
        return str(made.json()["id"])

    def pending_query(self) -> str:
        for held in self.env.get("rita", "/v1/queries?status=pending_review").json():
            return str(held["id"])
        epsilon = 0.01 + next(self.serial) / 1000  # never identical: no cached answer
        return str(self.env.post("rita", "/v1/queries", {**HELD, "epsilon": epsilon}).json()["id"])

    def fresh_grant(self) -> str:
        return str(self.env.grant("rita", "flights", 0.5)["id"])

    def throwaway_user(self) -> str:
        name = f"temp{next(self.serial)}"
        self.env.services.users.create(ADMIN, username=name, role="researcher",
                                       password=PASSWORD)
        return name

    def no_pending_credit_application(self, who: str) -> None:
        if who in ("anon", "root_admin", "audrey"):
            return
        for app in self.env.get(who, "/v1/requests?status=pending").json():
            if app["dataset"] == "credit":
                self.env.post(who, f"/v1/requests/{app['id']}/withdraw")


Params = Callable[[World, str], dict[str, str]]


def _none(_w: World, _who: str) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # the route as the app declares it
    expect: str  # one status per role in ROLES
    params: Params = _none
    body: Any = None
    own_token: bool = False  # sign in afresh: the call ends the token it is sent with
    statuses: dict[str, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        codes = [int(c) for c in self.expect.split()]
        assert len(codes) == len(ROLES), self.path
        self.statuses.update(zip(ROLES, codes, strict=True))

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"


def _login(_w: World, who: str) -> Any:
    return {"username": who if who != "anon" else "nobody", "password": PASSWORD}


def _new_user(w: World, _who: str) -> Any:
    return {"username": f"new{next(w.serial)}", "role": "researcher", "password": PASSWORD}


def _apply(w: World, who: str) -> Any:
    w.no_pending_credit_application(who)
    return {"dataset": "credit", "purpose": PURPOSE, "epsilon": 1.0, "days": 10}


CASES = [
    Case("POST", "/v1/auth/token", "401 200 200 200 200 200", body=_login),
    Case("POST", "/v1/auth/sandbox-token", "401 401 401 401 401 401",
         body={"username": "rita"}),
    Case("POST", "/v1/auth/sandbox-token/revoke", "401 401 401 401 401 401",
         body={"jti": "0" * 32, "username": "rita"}),
    Case("POST", "/v1/auth/refresh", "401 200 200 200 200 200"),
    Case("POST", "/v1/auth/logout", "401 204 204 204 204 204", own_token=True),
    Case("GET", "/v1/me", "401 200 200 200 200 200"),
    Case("GET", "/v1/datasets", "401 200 200 200 200 200"),
    Case("GET", "/v1/datasets/{name}", "401 200 200 200 200 200",
         lambda w, who: {"name": "flights"}),
    Case("GET", "/v1/datasets/{name}/dummy", "401 200 403 200 200 200",
         lambda w, who: {"name": "flights"}),
    Case("GET", "/v1/users", "401 200 200 403 403 403"),
    Case("POST", "/v1/users", "401 201 403 403 403 403", body=_new_user),
    Case("POST", "/v1/users/{username}/disable", "401 200 403 403 403 403",
         lambda w, who: {"username": w.throwaway_user()}, body={"note": "left the project"}),
    Case("POST", "/v1/users/{username}/enable", "401 200 403 403 403 403",
         lambda w, who: {"username": w.throwaway_user()}),
    Case("POST", "/v1/users/{username}/role", "401 200 403 403 403 403",
         lambda w, who: {"username": w.throwaway_user()}, body={"role": "auditor"}),
    Case("GET", "/v1/grants", "401 200 200 200 200 200"),
    Case("POST", "/v1/grants", "401 201 403 403 403 403",
         body={"user": "rita", "dataset": "flights", "epsilon": 0.5}),
    Case("GET", "/v1/grants/{grant_id}", "401 200 200 200 404 404",
         lambda w, who: {"grant_id": w.grant_id}),
    Case("POST", "/v1/grants/{grant_id}/revoke", "401 200 403 403 403 403",
         lambda w, who: {"grant_id": w.fresh_grant()}, body={"note": "project ended"}),
    Case("POST", "/v1/grants/{grant_id}/extend", "401 200 403 403 403 403",
         lambda w, who: {"grant_id": w.fresh_grant()}, body={"epsilon": 0.5, "note": "more"}),
    Case("POST", "/v1/synthetic/preview", "401 403 403 200 200 200", body=SYNTH),
    Case("POST", "/v1/synthetic", "401 403 403 200 200 200", body=SYNTH),
    Case("POST", "/v1/models/preview", "401 403 403 200 200 200", body=MODEL),
    Case("POST", "/v1/models", "401 403 403 200 200 200", body=MODEL),
    Case("POST", "/v1/queries/preview", "401 403 403 200 200 200", body=COUNT),
    Case("POST", "/v1/queries", "401 403 403 200 403 403", body=COUNT),
    Case("GET", "/v1/queries", "401 200 200 200 200 200"),
    Case("GET", "/v1/queries/{query_id}", "401 200 200 200 404 404",
         lambda w, who: {"query_id": w.query_id}),
    Case("POST", "/v1/queries/{query_id}/release", "401 200 403 403 403 403",
         lambda w, who: {"query_id": w.pending_query()}),
    Case("POST", "/v1/queries/{query_id}/reject", "401 200 403 403 403 403",
         lambda w, who: {"query_id": w.pending_query()}, body={"note": "not this one"}),
    Case("POST", "/v1/requests", "401 403 403 201 201 201", body=_apply),
    Case("GET", "/v1/requests", "401 200 200 200 200 200"),
    Case("GET", "/v1/requests/{request_id}", "401 200 200 200 404 404",
         lambda w, who: {"request_id": w.request_id}),
    Case("POST", "/v1/requests/{request_id}/approve", "401 200 403 403 403 403",
         lambda w, who: {"request_id": w.pending_application()}, body={"note": ""}),
    Case("POST", "/v1/requests/{request_id}/reject", "401 200 403 403 403 403",
         lambda w, who: {"request_id": w.pending_application()}, body={"note": "no"}),
    Case("POST", "/v1/requests/{request_id}/withdraw", "401 403 403 200 404 404",
         lambda w, who: {"request_id": w.pending_application()}),
    Case("GET", "/v1/audit", "401 200 200 403 403 403"),
    Case("GET", "/v1/audit/verify", "401 200 200 403 403 403"),
    Case("GET", "/v1/audit/export", "401 403 200 403 403 403"),
    Case("GET", "/v1/audit/{seq}", "401 200 200 403 403 403", lambda w, who: {"seq": "1"}),
]
MUTATING = [c for c in CASES if c.method == "POST" and not c.path.startswith("/v1/auth")]


@pytest.fixture(scope="module")
def world(gateway_env: GatewayEnv) -> World:
    return World(gateway_env)


def call(env: GatewayEnv, world: World, case: Case, who: str) -> Any:
    path = case.path.format(**case.params(world, who))
    body = case.body(world, who) if callable(case.body) else case.body
    headers = {} if who == "anon" or case.path == "/v1/auth/token" else env.headers(who)
    if case.own_token and headers:
        token = env.client.post("/v1/auth/token", json={"username": who, "password": PASSWORD})
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    return env.client.request(case.method, path, json=body, headers=headers)


def test_the_matrix_names_every_v1_route(gateway_env: GatewayEnv) -> None:
    spec = gateway_env.client.get("/v1/openapi.json").json()
    served = {(method.upper(), path) for path, ops in spec["paths"].items()
              if path.startswith("/v1") for method in ops}
    listed = {(c.method, c.path) for c in CASES}
    assert served == listed


@pytest.mark.parametrize("who", ROLES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_authorization(gateway_env: GatewayEnv, world: World, case: Case, who: str) -> None:
    resp = call(gateway_env, world, case, who)
    assert resp.status_code == case.statuses[who], (case.name, who, resp.text)
    if resp.status_code >= 400:
        assert set(resp.json()) == {"error"} and resp.json()["error"]["code"]


def test_sandbox_token_needs_the_hub_secret(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    secret = {"X-Hub-Secret": env.services.hub_secret}
    for who, status in (("rita", 200), ("erin", 200), ("root_admin", 403), ("audrey", 403)):
        resp = env.client.post("/v1/auth/sandbox-token", json={"username": who}, headers=secret)
        assert resp.status_code == status, (who, resp.text)


def _tables(env: GatewayEnv) -> dict[str, list[tuple[Any, ...]]]:
    """Every table but the audit log and the gateway's heartbeats (its own, every 5 s)."""
    with env.services.store.read() as conn:
        return {table.name: sorted(tuple(r) for r in conn.execute(select(table)).all())
                for table in t.metadata.sorted_tables
                if table.name not in ("audit", "gateway_instances")}


def test_auditors_change_nothing(gateway_env: GatewayEnv, world: World) -> None:
    env = gateway_env
    params = {c.name: (c.params(world, "audrey"), c.body(world, "audrey")
                       if callable(c.body) else c.body) for c in MUTATING}
    before = _tables(env)
    seq = env.get("audrey", "/v1/audit?page_size=1").json()["entries"][0]["seq"]
    for case in MUTATING:
        path_params, body = params[case.name]
        resp = env.client.request(case.method, case.path.format(**path_params), json=body,
                                  headers=env.headers("audrey"))
        assert resp.status_code == 403, (case.name, resp.text)
    assert _tables(env) == before
    entries = env.get("root_admin", "/v1/audit?actor=audrey&page_size=200").json()["entries"]
    refusals = [e for e in entries if e["seq"] > seq]
    assert len(refusals) == len(MUTATING) and {e["outcome"] for e in refusals} == {"denied"}


def test_analysts_never_see_each_others_records(gateway_env: GatewayEnv, world: World) -> None:
    env = gateway_env
    for other in ("ron", "erin"):
        assert world.request_id not in {a["id"] for a in env.get(other, "/v1/requests").json()}
        assert world.grant_id not in {g["id"] for g in env.get(other, "/v1/grants").json()}
        assert world.query_id not in {q["id"] for q in env.get(other, "/v1/queries").json()}
        for path in (f"/v1/requests/{world.request_id}", f"/v1/grants/{world.grant_id}",
                     f"/v1/queries/{world.query_id}"):
            assert env.get(other, path).json()["error"]["code"] == "not_found"
    assert {a["applicant"] for a in env.get("rita", "/v1/requests").json()} == {"rita"}
    assert {a["applicant"] for a in env.get("audrey", "/v1/requests").json()} >= {"rita", "ron"}

"""Data-use applications, decisions and access levels (issue 3).

The application state machine refuses every invalid transition with 409 and leaves no
trace but a denied audit entry; open datasets approve themselves, conditional ones wait
for an admin, restricted ones hold every query for review (nothing computed or charged
before release); expired and revoked grants stop queries at once; every released
number traces back to the decision that allowed it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from gateway.adapters.db import tables as t
from gateway.domain.errors import Forbidden
from gateway.services.common import Principal, iso, now
from tests.conftest import ADMIN, PASSWORD, GatewayEnv

PURPOSE = "estimating departure delays by airport for a transport study"
COUNT = {"select": [{"agg": "count"}], "epsilon": 0.1}
TERMINAL = ("approved", "rejected", "withdrawn")
ACTIONS = ("approve", "reject", "withdraw")


def apply(env: GatewayEnv, user: str, dataset: str = "flights", **over: Any) -> Any:
    body = {"dataset": dataset, "purpose": PURPOSE, "epsilon": 2.0, "days": 30, **over}
    return env.post(user, "/v1/requests", body)


def query(env: GatewayEnv, user: str, dataset: str, **over: Any) -> Any:
    return env.post(user, "/v1/queries", {"dataset": dataset, **COUNT, **over})


def state(env: GatewayEnv) -> dict[str, list[tuple[Any, ...]]]:
    """Everything but the audit log, to show that a refusal changed nothing."""
    with env.services.store.read() as conn:
        return {table.name: sorted(tuple(r) for r in conn.execute(select(table)).all())
                for table in (t.applications, t.grants, t.queries, t.datasets)}


def audit_since(env: GatewayEnv, seq: int) -> list[dict[str, Any]]:
    with env.services.store.read() as conn:
        rows = conn.execute(select(t.audit).where(t.audit.c.seq > seq)
                            .order_by(t.audit.c.seq)).mappings().all()
    return [dict(r) for r in rows]


def head(env: GatewayEnv) -> int:
    with env.services.store.read() as conn:
        return int(conn.execute(select(func.max(t.audit.c.seq))).scalar_one())


def decided(env: GatewayEnv, user: str, status: str) -> str:
    """A fresh application of ``user`` on flights, brought into ``status``."""
    request_id = apply(env, user, epsilon=0.5).json()["id"]
    if status == "approved":
        assert env.post("root_admin", f"/v1/requests/{request_id}/approve", {}).status_code == 200
    elif status == "rejected":
        assert env.post("root_admin", f"/v1/requests/{request_id}/reject",
                        {"note": "not now"}).status_code == 200
    elif status == "withdrawn":
        assert env.post(user, f"/v1/requests/{request_id}/withdraw").status_code == 200
    return str(request_id)


def expire(env: GatewayEnv, grant_id: str) -> None:
    with env.services.store.write() as conn:
        conn.execute(update(t.grants).where(t.grants.c.id == grant_id)
                     .values(expires_at=iso(now() - timedelta(seconds=1))))


def spent(env: GatewayEnv, grant_id: str) -> float:
    return float(env.get("root_admin", f"/v1/grants/{grant_id}").json()["epsilon_spent"])


def dataset_spent(env: GatewayEnv, name: str) -> int:
    with env.services.store.read() as conn:
        return int(conn.execute(select(t.datasets.c.epsilon_spent_units)
                                .where(t.datasets.c.name == name)).scalar_one())


# -- applications ---------------------------------------------------------------------------


def test_conditional_application_waits_for_an_admin(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    assert query(env, "ron", "flights").json()["error"]["code"] == "grant_required"
    made = apply(env, "ron", epsilon=2.0, days=20)
    assert made.status_code == 201, made.text
    app = made.json()
    assert (app["status"], app["applicant"], app["auto_approved"]) == ("pending", "ron", False)
    assert query(env, "ron", "flights").json()["error"]["code"] == "grant_required"
    assert env.get("ron", f"/v1/requests/{app['id']}").json()["purpose"] == PURPOSE
    assert [a["id"] for a in env.get("ron", "/v1/requests?status=pending").json()] == [app["id"]]

    approved = env.post("admin2", f"/v1/requests/{app['id']}/approve",
                        {"epsilon": 1.5, "days": 10, "note": "start with less"}).json()
    assert approved["status"] == "approved" and approved["decided_by"] == "admin2"
    assert approved["note"] == "start with less"
    grant = approved["grant"]
    assert grant["id"] == approved["grant_id"] and grant["user"] == "ron"
    assert grant["epsilon_total"] == 1.5 and grant["request_id"] == app["id"]
    assert grant["created_by"] == "admin2"
    released = query(env, "ron", "flights")
    assert released.status_code == 200, released.text
    assert released.json()["budget"]["grant_id"] == grant["id"]

    entries = [e for e in audit_since(env, 0) if e["request_id"] == app["id"]]
    approve = [e for e in entries if e["action"] == "request.approve"]
    assert [e["action"] for e in entries][:2] == ["request.create", "request.approve"]
    assert approve[0]["grant_id"] == grant["id"] and approve[0]["actor"] == "admin2"
    assert approve[0]["epsilon"] == "1.5"


def test_application_is_validated(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    for user in ("rita", "root_admin", "audrey"):
        env.headers(user)  # sign in first: logins are audited too
    before, seq = state(env), head(env)
    cases = [
        ("rita", {"purpose": "too short"}, 422, "purpose"),
        ("rita", {"purpose": None}, 422, "purpose"),
        ("rita", {"epsilon": 5.5}, 422, "max_epsilon_per_grant"),
        ("rita", {"epsilon": 0}, 422, "greater than 0"),
        ("rita", {"days": 0}, 422, "days"),
        ("rita", {"days": 1000}, 422, "days"),
        ("rita", {"dataset": "nope"}, 404, "no dataset"),
        ("rita", {"org_grant": True}, 422, "enterprise"),
        ("rita", {"colour": "red"}, 422, "colour"),
        ("root_admin", {}, 403, "researcher or enterprise"),
        ("audrey", {}, 403, "researcher or enterprise"),
    ]
    for user, over, status, words in cases:
        resp = apply(env, user, **over)
        assert resp.status_code == status, (over, resp.text)
        assert words in resp.json()["error"]["message"], (over, resp.text)
    assert state(env) == before
    refusals = audit_since(env, seq)
    assert [(e["outcome"], e["actor"]) for e in refusals] == [
        ("denied", user) for user, *_ in cases]


def test_one_pending_application_per_dataset(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    first = apply(env, "erin", "credit").json()
    again = apply(env, "erin", "credit")
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    assert env.post("erin", f"/v1/requests/{first['id']}/withdraw").json()["status"] == "withdrawn"
    assert apply(env, "erin", "credit").json()["status"] == "pending"


@pytest.mark.parametrize("status", TERMINAL)
@pytest.mark.parametrize("action", ACTIONS)
def test_invalid_transitions_are_refused_and_leave_no_trace(
    gateway_env: GatewayEnv, status: str, action: str
) -> None:
    env = gateway_env
    request_id = decided(env, "rita", status)
    before, seq = state(env), head(env)
    who, body = ("rita", None) if action == "withdraw" else ("root_admin", {"note": "again"})
    resp = env.post(who, f"/v1/requests/{request_id}/{action}", body)
    assert resp.status_code == 409, resp.text
    error = resp.json()["error"]
    assert error["code"] == "conflict" and f"it is {status}" in error["message"]
    assert state(env) == before
    [entry] = audit_since(env, seq)
    assert (entry["outcome"], entry["action"], entry["request_id"], entry["actor"]) == (
        "denied", f"request.{action}", request_id, who)


def test_approval_may_only_lower_and_must_explain(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    request_id = apply(env, "ron", "credit", epsilon=2.0, days=30).json()["id"]
    before, seq = state(env), head(env)
    refused = [
        ({"epsilon": 2.5, "note": "more"}, "never raise"),
        ({"days": 31, "note": "longer"}, "never lengthen"),
        ({"epsilon": 1.0}, "note"),
        ({"days": 7, "note": "  "}, "note"),
        ({"epsilon": 0, "note": "zero"}, "greater than 0"),
        ({"epsilon": 1.0, "note": "x", "colour": "red"}, "colour"),
    ]
    for body, words in refused:
        resp = env.post("root_admin", f"/v1/requests/{request_id}/approve", body)
        assert resp.status_code == 422 and words in resp.json()["error"]["message"], resp.text
    resp = env.post("root_admin", f"/v1/requests/{request_id}/reject", {"note": " "})
    assert resp.status_code == 422 and "note" in resp.json()["error"]["message"]
    assert state(env) == before
    assert [e["outcome"] for e in audit_since(env, seq)] == ["denied"] * (len(refused) + 1)

    same = env.post("root_admin", f"/v1/requests/{request_id}/approve", {}).json()
    assert same["status"] == "approved" and same["grant"]["epsilon_total"] == 2.0
    assert same["note"] is None


def test_reject_needs_a_note_and_creates_no_grant(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    request_id = apply(env, "eve", "flights").json()["id"]
    rejected = env.post("admin2", f"/v1/requests/{request_id}/reject",
                        {"note": "purpose does not need row-level delays"}).json()
    assert rejected["status"] == "rejected" and rejected["grant_id"] is None
    assert rejected["decided_by"] == "admin2"
    assert "flights" not in {g["dataset"] for g in env.get("eve", "/v1/grants").json()}
    [entry] = [e for e in audit_since(env, 0)
               if e["request_id"] == request_id and e["action"] == "request.reject"]
    assert "purpose does not need" in entry["detail"]


def test_only_the_applicant_withdraws(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    request_id = apply(env, "rita", "credit").json()["id"]
    assert env.post("ron", f"/v1/requests/{request_id}/withdraw").status_code == 404
    assert env.post("root_admin", f"/v1/requests/{request_id}/withdraw").status_code == 403
    assert env.post("audrey", f"/v1/requests/{request_id}/withdraw").status_code == 403
    done = env.post("rita", f"/v1/requests/{request_id}/withdraw").json()
    assert done["status"] == "withdrawn" and done["decided_by"] == "rita"


def test_nobody_approves_their_own_application(gateway_env: GatewayEnv) -> None:
    """An analyst later made an admin still cannot decide their own application."""
    env = gateway_env
    env.services.users.create(ADMIN, username="pat", role="researcher", password=PASSWORD)
    request_id = apply(env, "pat", "flights").json()["id"]
    with env.services.store.write() as conn:
        conn.execute(update(t.users).where(t.users.c.username == "pat").values(role="admin"))
    pat = Principal("pat", "admin")
    for decide in (lambda: env.services.access.approve(pat, request_id, note=""),
                   lambda: env.services.access.reject(pat, request_id, note="mine")):
        with pytest.raises(Forbidden, match="your own application"):
            decide()
    assert env.services.access.get(pat, request_id)["status"] == "pending"
    assert env.services.access.approve(Principal("root_admin", "admin"), request_id,
                                       note="")["status"] == "approved"


def test_admin_view_carries_decision_context(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    request_id = apply(env, "erin", "flights", epsilon=3.0).json()["id"]
    own = env.get("erin", f"/v1/requests/{request_id}").json()
    assert "context" not in own
    view = env.get("root_admin", f"/v1/requests/{request_id}").json()
    ctx = view["context"]
    assert ctx["applicant"] == {"username": "erin", "role": "enterprise", "org": "acme",
                                "disabled": False}
    assert request_id not in {a["id"] for a in ctx["past_applications"]}
    assert {a["dataset"] for a in ctx["past_applications"]} >= {"credit"}
    assert isinstance(ctx["grants"], list) and isinstance(ctx["epsilon_spent_by_dataset"], dict)
    assert ctx["dataset"]["name"] == "flights"
    assert ctx["dataset"]["max_epsilon_per_grant"] == 5.0
    assert all(q["user"] and q["status"] for q in ctx["recent_queries"])
    assert any(q["user"] == "ron" for q in ctx["recent_queries"])
    assert env.get("audrey", f"/v1/requests/{request_id}").json()["context"] == ctx
    env.post("erin", f"/v1/requests/{request_id}/withdraw")


# -- access levels ---------------------------------------------------------------------------


def test_open_dataset_application_is_auto_approved(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    app = apply(env, "eve", "exam", epsilon=3.0, days=5).json()
    assert (app["status"], app["auto_approved"], app["decided_by"]) == (
        "approved", True, "system")
    assert app["grant"]["epsilon_total"] == 3.0 and app["grant"]["user"] == "eve"
    [entry] = [e for e in audit_since(env, 0) if e["request_id"] == app["id"]]
    assert entry["action"] == "request.auto_approve" and entry["grant_id"] == app["grant_id"]


def test_open_dataset_first_query_applies_by_itself(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    resp = query(env, "ron", "exam")
    assert resp.status_code == 200, resp.text
    grant_id = resp.json()["budget"]["grant_id"]
    [app] = [a for a in env.get("ron", "/v1/requests").json() if a["grant_id"] == grant_id]
    assert app["auto_approved"] is True and app["status"] == "approved"
    assert app["epsilon"] == 2.0  # the policy's default_epsilon


def test_revocation_on_open_data_is_not_undone_by_auto_grant(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    grant_id = query(env, "ron", "exam").json()["budget"]["grant_id"]
    env.post("root_admin", f"/v1/grants/{grant_id}/revoke", {"note": "misuse"})
    resp = query(env, "ron", "exam", epsilon=0.2)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "grant_required"
    assert "revoked" in resp.json()["error"]["message"]
    again = apply(env, "ron", "exam").json()
    assert again["status"] == "pending" and again["auto_approved"] is False
    assert query(env, "ron", "exam", epsilon=0.2).status_code == 403


def test_org_grant_needs_an_admin_even_on_open_data(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    app = apply(env, "erin", "exam", org_grant=True, epsilon=1.0).json()
    assert app["status"] == "pending" and app["org_grant"] and app["org"] == "acme"
    approved = env.post("root_admin", f"/v1/requests/{app['id']}/approve", {}).json()
    assert approved["grant"]["org"] == "acme" and approved["grant"]["user"] is None
    assert approved["grant_id"] in {g["id"] for g in env.get("eve", "/v1/grants").json()}
    assert approved["grant_id"] not in {g["id"] for g in env.get("rita", "/v1/grants").json()}


def test_expired_grant_stops_queries_at_once(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    env.services.users.create(ADMIN, username="xena", role="researcher", password=PASSWORD)
    grant = env.grant("xena", "flights", 1.0)
    assert query(env, "xena", "flights").status_code == 200
    expire(env, grant["id"])
    before = spent(env, grant["id"])
    resp = query(env, "xena", "flights", epsilon=0.2)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "grant_expired"
    assert spent(env, grant["id"]) == before
    assert env.get("xena", f"/v1/grants/{grant['id']}").json()["status"] == "expired"


def test_revoked_grant_stops_queries_at_once(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    env.services.users.create(ADMIN, username="yuri", role="researcher", password=PASSWORD)
    grant = env.grant("yuri", "flights", 1.0)
    assert query(env, "yuri", "flights").status_code == 200
    assert env.post("root_admin", f"/v1/grants/{grant['id']}/revoke",
                    {"note": "pilot over"}).status_code == 200
    resp = query(env, "yuri", "flights", epsilon=0.2)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "grant_required"
    assert spent(env, grant["id"]) == pytest.approx(0.1)


class SpyEngine:
    """Wraps the real engine and counts releases (the only step that reads data)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.releases, self.plans = inner, 0, 0

    def plan(self, *args: Any, **kwargs: Any) -> Any:
        self.plans += 1
        plan, spy = self.inner.plan(*args, **kwargs), self

        class Counted:
            output_columns = plan.output_columns

            def accuracy(self, alpha: float = 0.05) -> Any:
                return plan.accuracy(alpha)

            def release(self) -> Any:
                spy.releases += 1
                return plan.release()

        return Counted()


@pytest.fixture
def spy(gateway_env: GatewayEnv) -> Any:
    queries = gateway_env.services.queries
    original = queries.engine
    queries.engine = SpyEngine(original)
    yield queries.engine
    queries.engine = original


def restricted_grant(env: GatewayEnv, user: str) -> str:
    request_id = apply(env, user, "credit", epsilon=2.0).json()["id"]
    approved = env.post("root_admin", f"/v1/requests/{request_id}/approve", {}).json()
    return str(approved["grant_id"])


def test_restricted_query_waits_for_review(gateway_env: GatewayEnv, spy: SpyEngine) -> None:
    env = gateway_env
    grant_id = restricted_grant(env, "eve")
    credit_before = dataset_spent(env, "credit")
    held = query(env, "eve", "credit", select=[{"agg": "count"}], group_by=["status"])
    assert held.status_code == 200, held.text
    held_view = held.json()
    assert held_view["status"] == "pending_review" and "rows" not in held_view
    assert spy.releases == 0 and spent(env, grant_id) == 0
    assert dataset_spent(env, "credit") == credit_before

    polled = env.get("eve", f"/v1/queries/{held_view['id']}").json()
    assert polled["status"] == "pending_review" and "rows" not in polled
    assert "review" not in polled
    review = env.get("root_admin", f"/v1/queries/{held_view['id']}").json()
    assert review["spec"]["group_by"] == ["status"]
    assert review["review"]["epsilon"] == 0.1 and review["review"]["purpose"] == PURPOSE
    assert review["review"]["accuracy"]["count"] > 0 and review["review"]["problem"] is None
    assert review["trace"]["application"]["applicant"] == "eve"
    assert spy.releases == 0 and spent(env, grant_id) == 0

    for who, status in (("eve", 403), ("audrey", 403), ("erin", 403)):
        assert env.post(who, f"/v1/queries/{held_view['id']}/release").status_code == status
    released = env.post("admin2", f"/v1/queries/{held_view['id']}/release",
                        {"note": "aggregate only"}).json()
    assert released["status"] == "released" and released["reviewed_by"] == "admin2"
    assert spy.releases == 1 and spent(env, grant_id) == pytest.approx(0.1)
    assert dataset_spent(env, "credit") == credit_before + 100_000_000
    polled = env.get("eve", f"/v1/queries/{held_view['id']}").json()
    assert polled["status"] == "released" and {r[0] for r in polled["rows"]} <= {"good", "bad"}
    again = env.post("root_admin", f"/v1/queries/{held_view['id']}/release")
    assert again.status_code == 409


def review_of(env: GatewayEnv, query_id: str) -> dict[str, Any]:
    return dict(env.get("root_admin", f"/v1/queries/{query_id}").json()["review"])


def stored_review(env: GatewayEnv, query_id: str) -> str | None:
    with env.services.store.read() as conn:
        return conn.execute(select(t.queries.c.review_json)
                            .where(t.queries.c.id == query_id)).scalar_one()


def test_reviewers_read_the_accuracy_stored_when_the_query_was_held(
        gateway_env: GatewayEnv, spy: SpyEngine) -> None:
    """A held query is planned once, when asked; the admin's views (API, review page) read
    the accuracy stored with it and plan nothing; one held before the store kept it is
    planned once more, by its first reviewer, and then read like the others."""
    from gateway.web.views import with_accuracy

    env, admin = gateway_env, Principal("root_admin", "admin")
    env.services.users.create(ADMIN, username="hal", role="researcher", password=PASSWORD)
    restricted_grant(env, "hal")
    plans = spy.plans
    held = query(env, "hal", "credit", select=[{"agg": "count"}, {"agg": "sum", "column": "age"}],
                 group_by=["status"]).json()
    assert held["status"] == "pending_review" and spy.plans == plans + 1
    plans = spy.plans
    first = review_of(env, held["id"])
    assert first["accuracy"]["count"] > 0 and first["accuracy"]["sum_age"] > 0
    assert first["problem"] is None and first["epsilon"] == 0.1
    [page] = [q for q in with_accuracy(env.services, admin,
                                       env.services.queries.list(admin, status="pending_review"))
              if q["id"] == held["id"]]
    assert page["expected_accuracy"] == first["accuracy"]
    assert review_of(env, held["id"]) == first and spy.plans == plans  # read, not planned

    with env.services.store.write() as conn:  # held before the store kept the preview
        conn.execute(update(t.queries).where(t.queries.c.id == held["id"]).values(review_json=None))
    assert review_of(env, held["id"]) == first and spy.plans == plans + 1  # the same, planned
    assert stored_review(env, held["id"]) is not None
    assert review_of(env, held["id"]) == first and spy.plans == plans + 1

    with env.services.store.write() as conn:  # the data changed since: the reviewer is told
        version = conn.execute(select(t.datasets.c.version)
                               .where(t.datasets.c.name == "credit")).scalar_one()
        conn.execute(update(t.datasets).where(t.datasets.c.name == "credit")
                     .values(version="x" * 64))
    try:
        changed = review_of(env, held["id"])
        assert changed["accuracy"] is None and "dataset changed" in changed["problem"]
    finally:
        with env.services.store.write() as conn:
            conn.execute(update(t.datasets).where(t.datasets.c.name == "credit")
                         .values(version=version))
    released = env.post("admin2", f"/v1/queries/{held['id']}/release", {"note": "ok"}).json()
    assert released["status"] == "released" and spy.plans == plans + 2  # approval plans again
    assert set(released["accuracy"]) == set(first["accuracy"])


def test_review_decisions_are_audited_under_the_admin_with_the_note(
        gateway_env: GatewayEnv) -> None:
    """Issue 14: the admin who releases or rejects is the actor; the analyst is in detail."""
    env = gateway_env
    env.services.users.create(ADMIN, username="wynn", role="researcher", password=PASSWORD)
    restricted_grant(env, "wynn")
    held = query(env, "wynn", "credit", select=[{"agg": "count"}]).json()
    env.post("admin2", f"/v1/queries/{held['id']}/release", {"note": "aggregate, fine"})
    mine = env.get("audrey", f"/v1/audit?actor=admin2&query_id={held['id']}").json()["entries"]
    assert {e["action"] for e in mine} == {"query.charge", "query.release"}
    assert {(e["role"], e["detail"]["analyst"], e["detail"]["note"]) for e in mine} == {
        ("admin", "wynn", "aggregate, fine")}
    by_admin = env.get("audrey", "/v1/audit?actor=admin2&action=query.release").json()
    assert held["id"] in {e["query_id"] for e in by_admin["entries"]}
    assert env.get("audrey", "/v1/audit?actor=wynn&action=query.release").json()["total"] == 0

    other = query(env, "wynn", "credit", select=[{"agg": "mean", "column": "age"}]).json()
    env.post("root_admin", f"/v1/queries/{other['id']}/reject", {"note": "too fine"})
    [decision] = env.get("audrey", f"/v1/audit?query_id={other['id']}&action=query.review"
                         ).json()["entries"]
    assert (decision["actor"], decision["role"]) == ("root_admin", "admin")
    assert decision["detail"] == {"decision": "rejected", "note": "too fine", "analyst": "wynn"}


def test_a_release_the_store_cannot_charge_stays_held_and_not_in_flight(
        gateway_env: GatewayEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """The admin's charge transaction fails: nothing charged, the query still held, and no
    stale in-flight mark is left (recovery and the next release see it as it is)."""
    from sqlalchemy.exc import OperationalError

    env = gateway_env
    env.services.users.create(ADMIN, username="quin", role="researcher", password=PASSWORD)
    grant_id = restricted_grant(env, "quin")
    held = query(env, "quin", "credit", select=[{"agg": "count"}]).json()
    real_append = env.services.audit.append

    def failing_append(tx: Any, **fields: Any) -> int:
        if fields.get("action") == "query.charge":
            raise OperationalError("INSERT INTO audit", {}, Exception("database is locked"))
        return real_append(tx, **fields)

    with monkeypatch.context() as patch:
        patch.setattr(env.services.audit, "append", failing_append)
        resp = env.post("root_admin", f"/v1/queries/{held['id']}/release")
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "unavailable"
    assert not env.services.queries.releases.computing(held["id"])
    assert env.get("quin", f"/v1/queries/{held['id']}").json()["status"] == "pending_review"
    assert spent(env, grant_id) == 0
    released = env.post("root_admin", f"/v1/queries/{held['id']}/release")
    assert released.status_code == 200 and released.json()["status"] == "released"
    assert not env.services.queries.releases.computing(held["id"])
    assert spent(env, grant_id) == pytest.approx(0.1)


def test_restricted_reject_charges_nothing(gateway_env: GatewayEnv, spy: SpyEngine) -> None:
    env = gateway_env
    grant_id = restricted_grant(env, "rita")
    credit_before = dataset_spent(env, "credit")
    held = query(env, "rita", "credit", select=[{"agg": "mean", "column": "age"}]).json()
    no_note = env.post("root_admin", f"/v1/queries/{held['id']}/reject", {"note": ""})
    assert no_note.status_code == 422
    rejected = env.post("root_admin", f"/v1/queries/{held['id']}/reject",
                        {"note": "too close to one applicant"}).json()
    assert rejected["status"] == "rejected" and "rows" not in rejected
    assert spy.releases == 0 and spent(env, grant_id) == 0
    assert dataset_spent(env, "credit") == credit_before
    polled = env.get("rita", f"/v1/queries/{held['id']}").json()
    assert polled["status"] == "rejected" and polled["review_note"] == "too close to one applicant"
    assert env.post("root_admin", f"/v1/queries/{held['id']}/release").status_code == 409
    [entry] = [e for e in audit_since(env, 0)
               if e["query_id"] == held["id"] and e["action"] == "query.review"
               and e["outcome"] == "ok"]
    assert entry["epsilon"] == "0" and entry["request_id"] is not None


def revoke(env: GatewayEnv, grant_id: str) -> None:
    env.post("root_admin", f"/v1/grants/{grant_id}/revoke", {"note": "project ended"})


@pytest.mark.parametrize(("analyst", "end", "code"),
                         [("zoe", revoke, "grant_required"), ("vic", expire, "grant_expired")],
                         ids=["revoked", "expired"])
def test_a_grant_ended_before_release_charges_nothing(
    gateway_env: GatewayEnv, spy: SpyEngine, analyst: str,
    end: Callable[[GatewayEnv, str], None], code: str,
) -> None:
    env = gateway_env
    env.services.users.create(ADMIN, username=analyst, role="researcher", password=PASSWORD)
    grant_id = restricted_grant(env, analyst)
    held = query(env, analyst, "credit").json()
    end(env, grant_id)
    resp = env.post("root_admin", f"/v1/queries/{held['id']}/release")
    assert resp.status_code == 403 and resp.json()["error"]["code"] == code
    assert spy.releases == 0 and spent(env, grant_id) == 0
    assert env.get(analyst, f"/v1/queries/{held['id']}").json()["status"] == "pending_review"


# -- traceability ----------------------------------------------------------------------------


def test_released_number_traces_back_to_the_decision(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    env.services.users.create(ADMIN, username="una", role="researcher", password=PASSWORD)
    request_id = apply(env, "una", "flights", epsilon=1.0).json()["id"]
    env.post("admin2", f"/v1/requests/{request_id}/approve",
             {"epsilon": 0.5, "note": "half for a pilot"})
    released = query(env, "una", "flights").json()

    seen = env.get("audrey", f"/v1/queries/{released['id']}").json()
    assert seen["grant_id"] == released["budget"]["grant_id"] and seen["request_id"] == request_id
    application = seen["trace"]["application"]
    assert (application["id"], application["applicant"], application["decided_by"],
            application["note"]) == (request_id, "una", "admin2", "half for a pilot")
    assert application["decided_at"] and application["purpose"] == PURPOSE
    assert seen["trace"]["grant"]["created_by"] == "admin2"

    charge = env.get("audrey", f"/v1/audit?query_id={released['id']}").json()["entries"]
    assert {e["action"] for e in charge} == {"query.charge", "query.release"}
    assert {(e["grant_id"], e["request_id"]) for e in charge} == {
        (seen["grant_id"], request_id)}
    history = env.get("audrey", f"/v1/audit?request_id={request_id}").json()["entries"]
    actions = [e["action"] for e in reversed(history)]
    assert actions[:2] == ["request.create", "request.approve"]
    decision = history[::-1][1]
    assert (decision["actor"], decision["grant_id"]) == ("admin2", seen["grant_id"])
    assert "half for a pilot" in str(decision["detail"])
    users = {u["username"]: u for u in env.get("audrey", "/v1/users").json()}
    assert users[application["applicant"]]["role"] == "researcher"


def test_two_admins_deciding_at_once_make_one_decision(gateway_env: GatewayEnv) -> None:
    from concurrent.futures import ThreadPoolExecutor

    env = gateway_env
    env.services.users.create(ADMIN, username="wes", role="researcher", password=PASSWORD)
    request_id = apply(env, "wes", "flights").json()["id"]
    decisions = [("root_admin", "approve", {}), ("admin2", "reject", {"note": "no"})] * 4
    env.headers("root_admin"), env.headers("admin2")  # sign in before the race
    with ThreadPoolExecutor(max_workers=len(decisions)) as pool:
        codes = list(pool.map(
            lambda d: env.post(d[0], f"/v1/requests/{request_id}/{d[1]}", d[2]).status_code,
            decisions))
    assert sorted(codes) == [200] + [409] * (len(decisions) - 1)
    with env.services.store.read() as conn:
        grants = conn.execute(select(t.grants).where(t.grants.c.request_id == request_id)).all()
    final = env.get("wes", f"/v1/requests/{request_id}").json()
    assert len(grants) == (1 if final["status"] == "approved" else 0)


def test_no_grant_for_a_disabled_account(gateway_env: GatewayEnv) -> None:
    env = gateway_env
    env.services.users.create(ADMIN, username="dora", role="researcher", password=PASSWORD)
    made = apply(env, "dora", epsilon=1.0, days=10)
    assert made.status_code == 201, made.text
    assert env.post("root_admin", "/v1/users/dora/disable",
                    {"note": "left the institute"}).status_code == 200
    refused = env.post("admin2", f"/v1/requests/{made.json()['id']}/approve", {"note": "ok"})
    assert refused.status_code == 409 and "disabled" in refused.json()["error"]["message"]
    assert env.get("admin2", f"/v1/requests/{made.json()['id']}").json()["status"] == "pending"
    assert env.post("root_admin", "/v1/users/dora/enable").status_code == 200
    approved = env.post("admin2", f"/v1/requests/{made.json()['id']}/approve", {"note": "ok"})
    assert approved.status_code == 200 and approved.json()["status"] == "approved"

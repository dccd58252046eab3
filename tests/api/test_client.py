"""The ``sandbox`` client library against a live gateway (uvicorn in a thread, real HTTP).

``live_gateway`` is reused by tests/integration/test_notebooks.py.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from gateway.bootstrap import Services
from sandbox import connect
from sandbox.client import (
    AccessDenied,
    BudgetExhausted,
    DPResult,
    GatewayUnreachable,
    GrantRequired,
    InvalidRequest,
    NotFound,
    PendingQuery,
    QueryRejected,
    ReleasePending,
    ReviewTimeout,
    Unauthenticated,
    UnsupportedQuery,
)
from sandbox.client._session import token_claims, token_expiry
from tests.conftest import ADMIN, PASSWORD, make_services
from tests.live import free_port, serve_gateway

pytestmark = pytest.mark.xdist_group("client")  # one live gateway for the whole module

@dataclass
class LiveGateway:
    services: Services
    url: str

    def token(self, user: str) -> str:
        resp = httpx.post(f"{self.url}/v1/auth/token",
                          json={"username": user, "password": PASSWORD}, timeout=60)
        assert resp.status_code == 200, resp.text
        return str(resp.json()["access_token"])

    def sandbox_token(self, user: str) -> str:
        resp = httpx.post(f"{self.url}/v1/auth/sandbox-token", json={"username": user},
                          headers={"X-Hub-Secret": self.services.hub_secret}, timeout=60)
        assert resp.status_code == 200, resp.text
        return str(resp.json()["access_token"])

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        resp = httpx.request(method, f"{self.url}{path}", json=body,
                             headers={"Authorization": f"Bearer {self.token('root_admin')}"}, timeout=60)
        assert resp.is_success, resp.text
        return resp.json()


@contextmanager
def live_gateway(home: Path, demo_files: dict[str, Path]) -> Iterator[LiveGateway]:
    """A real gateway on a free port, served by uvicorn in a background thread."""
    services = make_services(home, demo_files)
    with serve_gateway(services) as url:
        yield LiveGateway(services, url)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory,
         demo_files: dict[str, Path]) -> Iterator[LiveGateway]:
    with live_gateway(tmp_path_factory.mktemp("home"), demo_files) as gateway:
        yield gateway


@pytest.fixture(autouse=True)
def _private_token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the real ~/.dpsandbox_token."""
    monkeypatch.setenv("DPSANDBOX_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.delenv("DPSANDBOX_TOKEN", raising=False)
    monkeypatch.delenv("DPSANDBOX_GATEWAY_URL", raising=False)
    monkeypatch.delenv("DPSANDBOX_GATEWAY_SOCKET", raising=False)


# -- connecting ------------------------------------------------------------------------


def test_connect_from_the_environment(live: LiveGateway,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DPSANDBOX_GATEWAY_URL", live.url)
    monkeypatch.setenv("DPSANDBOX_TOKEN", live.sandbox_token("rita"))
    gw = connect()
    assert gw.me()["username"] == "rita" and gw.me()["scope"] == "sandbox"
    assert gw.username == "rita" and "rita" in repr(gw) and "rita" in gw._repr_html_()


@contextmanager
def hub_relay(run_dir: Path, gateway_url: str) -> Iterator[Path]:
    """The hub's real relay (sandbox/hub/relay.py) to ``gateway_url``, on a loop of its own."""
    import asyncio

    from sandbox.hub.relay import HostRelay

    host, port = gateway_url.removeprefix("http://").split(":")
    relay = HostRelay(run_dir, gateway=(host, int(port)), hub_api=(host, free_port()))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(relay.start(), loop).result(10)
    async def close() -> None:
        await relay.close()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:  # connections still open end with the relay
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    try:
        yield run_dir / "gateway.sock"
    finally:
        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_in_a_bubblewrap_sandbox_the_client_speaks_http_over_the_hubs_socket(
        live: LiveGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DPSANDBOX_GATEWAY_SOCKET: straight to the hub's relay, not through the sandbox's
    loopback forwarder. Nothing listens on the URL's port here: only the socket answers."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("DPSANDBOX_GATEWAY_URL", nowhere)
    monkeypatch.setenv("DPSANDBOX_TOKEN", live.sandbox_token("rita"))
    with hub_relay(tmp_path / "run", live.url) as socket_path:
        monkeypatch.setenv("DPSANDBOX_GATEWAY_SOCKET", str(socket_path))
        gw = connect()
        assert gw.me()["username"] == "rita" and gw.url == nowhere
        assert "flights" in gw.datasets().index
        gw.close()
        # Another gateway's URL, given explicitly, is not sent to the hub's socket.
        with pytest.raises(GatewayUnreachable):
            connect(f"http://127.0.0.1:{free_port()}", token=live.sandbox_token("rita"))
    # The socket gone (the hub stopped): the URL is tried, and the failure says so.
    with pytest.raises(GatewayUnreachable, match="could not reach the gateway"):
        connect()


def test_the_client_sends_without_nagles_delay(live: LiveGateway) -> None:
    """TCP_NODELAY on the client's connections: a POST's body leaves with its headers
    instead of waiting for the gateway's delayed ACK (tens of ms on every query)."""
    import socket

    gw = connect(live.url, token=live.token("rita"))
    with gw._session._http.stream("GET", "/v1/me") as response:
        sock = response.extensions["network_stream"].get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_connect_with_password_and_token(live: LiveGateway) -> None:
    assert connect(live.url, username="rita", password=PASSWORD).username == "rita"
    assert connect(live.url, token=live.token("ron")).username == "ron"
    with pytest.raises(Unauthenticated, match="wrong username or password") as info:
        connect(live.url, username="rita", password="not-the-password")
    assert info.value.status == 401 and info.value.code == "unauthenticated"
    with pytest.raises(Unauthenticated, match="DPSANDBOX_TOKEN"):
        connect(live.url)


def test_unreachable_gateway_is_translated() -> None:
    with pytest.raises(GatewayUnreachable, match="could not reach the gateway"):
        connect(f"http://127.0.0.1:{free_port()}", token="x.e30.y")


# -- catalog ---------------------------------------------------------------------------


def test_catalog_schema_and_dummy(live: LiveGateway) -> None:
    gw = connect(live.url, token=live.token("rita"), quiet=True)
    catalog = gw.datasets()
    assert isinstance(catalog, pd.DataFrame)
    assert set(catalog.index) == {"flights", "exam", "credit"}
    assert catalog.loc["credit", "access"] == "restricted"
    ds = gw.dataset("flights")
    assert ds.access == "conditional" and "tailnum" not in ds.columns
    assert ds.schema.loc["origin", "categories"] == ["EWR", "JFK", "LGA"]
    assert ds.schema.loc["dep_delay", "nullable"]
    assert "NYC departing flights" in ds._repr_html_()
    dummy = ds.dummy(50)
    assert len(dummy) == 50 and dummy.attrs["synthetic"] is True
    assert set(dummy["origin"].dropna()) <= {"EWR", "JFK", "LGA"}
    assert dummy["month"].between(1, 12).all() and str(dummy["month"].dtype) == "Int64"
    with pytest.raises(NotFound, match="no dataset named nope"):
        gw.dataset("nope")
    with pytest.raises(InvalidRequest, match="rows"):
        ds.dummy(0)


# -- applications, grants, queries ------------------------------------------------------


def test_application_then_queries_on_conditional_data(live: LiveGateway,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    gw = connect(live.url, token=live.token("ron"))
    ds = gw.dataset("flights")
    with pytest.raises(GrantRequired) as info:
        ds.count(epsilon=0.1)
    assert info.value.status == 403 and "flights" in info.value.message
    application = gw.request_access("flights", epsilon=2.0, days=30,
                                    purpose="departure delay study by airport and month")
    assert application["status"] == "pending"
    assert gw.requests().loc[0, "status"] == "pending"
    live.admin("POST", f"/v1/requests/{application['id']}/approve", {"note": "ok"})
    grants = gw.grants()
    assert grants.loc[0, "dataset"] == "flights" and grants.loc[0, "epsilon_total"] == 2.0

    preview = ds.preview(count=True, mean="dep_delay", by=["origin"], epsilon=0.5)
    assert preview.epsilon == 0.5 and preview.affordable is True
    assert preview.accuracy["count"] is not None and preview.accuracy["count"] > 0
    assert "mean_dep_delay" in preview.accuracy and "nothing spent" in preview._repr_html_()
    assert gw.grants().loc[0, "epsilon_spent"] == 0.0  # previews are free

    capsys.readouterr()
    counts = ds.count(by=["origin"], where="month >= 6", epsilon=0.2)
    assert isinstance(counts, DPResult)
    assert list(counts.columns) == ["origin", "count", "count_accuracy"]
    assert set(counts["origin"]) == {"EWR", "JFK", "LGA"}
    assert counts.attrs["epsilon_charged"] == pytest.approx(0.2)
    assert counts.attrs["budget"]["epsilon_remaining"] == pytest.approx(1.8)
    assert counts.attrs["cached"] is False and counts.attrs["query_id"]
    assert "epsilon left 1.8" in capsys.readouterr().out
    assert "charged epsilon 0.2" in counts._repr_html_()

    again = ds.count(by=["origin"], where="month >= 6", epsilon=0.2)
    assert again.attrs["cached"] is True and again.attrs["epsilon_charged"] == 0.0
    assert again["count"].tolist() == counts["count"].tolist()

    means = ds.mean("dep_delay", by="origin", where="month between 6 and 8", epsilon=0.3)
    assert {"mean_dep_delay", "mean_dep_delay_accuracy"} <= set(means.columns)
    assert means["mean_dep_delay"].between(-60, 600).all()
    total = ds.sum("distance", where="origin in ('JFK', 'LGA') and month != 1", epsilon=0.1)
    assert total.loc[0, "sum_distance"] > 0
    median = ds.quantile("air_time", 0.5, epsilon=0.2)
    assert 20 <= median.iloc[0, 0] <= 700
    hist = ds.histogram("distance", bins=[0, 500, 1000, 3000, 5000], epsilon=0.2)
    assert list(hist.columns) == ["bin", "count", "count_accuracy"] and len(hist) == 4
    assert hist.attrs["epsilon_charged"] == pytest.approx(0.2)
    both = ds.query(select=[{"agg": "count"}, "mean(arr_delay)"], where=[("month", "=", 7)],
                    group_by=["origin"], order_by="-count", limit=2, epsilon=0.2)
    assert len(both) == 2 and both["count"].iloc[0] >= both["count"].iloc[1]
    by_sql = gw.sql("SELECT origin, COUNT(*) AS n FROM flights GROUP BY origin", epsilon=0.2)
    assert set(by_sql.columns) >= {"origin", "n", "n_accuracy"}
    assert "origin_accuracy" not in by_sql.columns

    history = gw.queries(dataset="flights")
    assert (history["status"] == "released").sum() >= 7
    with pytest.raises(BudgetExhausted, match="epsilon"):
        ds.count(by=["origin"], epsilon=1.5)


def test_errors_carry_the_server_message(live: LiveGateway) -> None:
    gw = connect(live.url, token=live.token("rita"), quiet=True)
    exam = gw.dataset("exam")
    with pytest.raises(InvalidRequest) as info:
        exam.mean("student", epsilon=0.1)  # a hidden column
    assert info.value.status == 422 and "student" in info.value.message
    with pytest.raises(UnsupportedQuery) as unsupported:
        gw.sql("SELECT COUNT(*) FROM exam UNION SELECT COUNT(*) FROM exam", epsilon=0.1)
    assert unsupported.value.code == "unsupported_query"
    with pytest.raises(ValueError, match="OR is not supported"):
        exam.count(where="sex = 'F' or sex = 'M'", epsilon=0.1)
    with pytest.raises(ValueError, match="expected a value"):
        exam.count(where="school >= ", epsilon=0.1)
    admin = connect(live.url, token=live.token("root_admin"), quiet=True)
    with pytest.raises(AccessDenied) as denied:
        admin.dataset("exam").count(epsilon=0.1)
    assert denied.value.code == "forbidden" and not isinstance(denied.value, GrantRequired)


def test_open_dataset_grants_itself(live: LiveGateway) -> None:
    gw = connect(live.url, token=live.token("erin"), quiet=True)
    scores = gw.dataset("exam").mean("normexam", by=["schgend"], epsilon=0.2)
    assert set(scores["schgend"]) == {"mixed", "boys", "girls"}
    assert scores.attrs["budget"]["epsilon_remaining"] == pytest.approx(1.8)


def test_a_release_the_store_could_not_record_is_fetched_by_id_not_charged_again(
        live: LiveGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store fails after the charge: the analyst is told the query's id and that the
    charge stands (no silent re-send, no second charge), and fetches it once recovered."""
    from sqlalchemy.exc import OperationalError

    live.services.users.create(ADMIN, username="rosa", role="researcher", password=PASSWORD)
    gw = connect(live.url, token=live.token("rosa"), quiet=True)
    real_append = live.services.audit.append

    def failing_append(tx: Any, **fields: Any) -> int:
        if fields.get("action") == "query.release" and fields.get("outcome") == "ok":
            raise OperationalError("INSERT INTO audit", {}, Exception("disk I/O error"))
        return real_append(tx, **fields)

    with monkeypatch.context() as patch, pytest.raises(ReleasePending) as pending:
        patch.setattr(live.services.audit, "append", failing_append)
        gw.dataset("exam").count(by=["schgend"], epsilon=0.3)
    error = pending.value
    assert error.code == "release_pending" and error.status == 503
    assert f"query {error.query_id} was charged" in error.message
    assert f"gw.query_result({error.query_id!r})" in str(error)
    mine = [q for q in live.admin("GET", "/v1/queries") if q.get("user") == "rosa"]
    assert [(q["id"], q["status"]) for q in mine] == [(error.query_id, "running")]  # sent once
    spent = [g["epsilon_spent"] for g in live.admin("GET", "/v1/grants") if g["user"] == "rosa"]
    assert spent == [pytest.approx(0.3)]
    assert live.services.recovery is not None and live.services.recovery.run_once().released
    counts = gw.query_result(error.query_id)
    assert isinstance(counts, DPResult) and set(counts["schgend"]) == {"mixed", "boys", "girls"}
    spent = [g["epsilon_spent"] for g in live.admin("GET", "/v1/grants") if g["user"] == "rosa"]
    assert spent == [pytest.approx(0.3)]


# -- restricted data: review ------------------------------------------------------------


def _release_when_pending(live: LiveGateway, *, reject: bool = False) -> threading.Thread:
    def review() -> None:
        deadline = time.monotonic() + 120  # generous: the query is submitted meanwhile
        while time.monotonic() < deadline:
            pending = live.admin("GET", "/v1/queries?status=pending_review")
            for query in pending:
                action = "reject" if reject else "release"
                live.admin("POST", f"/v1/queries/{query['id']}/{action}",
                           {"note": "too fine-grained" if reject else "fine"})
            if pending:
                return
            time.sleep(0.1)

    thread = threading.Thread(target=review, daemon=True)
    thread.start()
    return thread


def test_restricted_queries_wait_for_review(live: LiveGateway) -> None:
    live.services.ledger.give(ADMIN, user="eve", org=None, dataset="credit", epsilon=2.0,
                              delta=None, days=None)
    gw = connect(live.url, token=live.token("eve"), quiet=True)
    credit = gw.dataset("credit")

    held = credit.count(by=["status"], epsilon=0.2, wait=False)
    assert isinstance(held, PendingQuery) and held.status == "pending_review"
    with pytest.raises(ReviewTimeout) as timeout:
        held.result(timeout=0.3)
    assert timeout.value.pending is held
    reviewer = _release_when_pending(live)
    result = held.result(timeout=30)
    reviewer.join()
    assert set(result["status"]) == {"good", "bad"}
    assert result.attrs["epsilon_charged"] == pytest.approx(0.2)
    assert result.attrs["budget"]["epsilon_remaining"] == pytest.approx(1.8)

    reviewer = _release_when_pending(live)
    waited = credit.mean("income", by="records", epsilon=0.2, timeout=30)
    reviewer.join()
    assert {"records", "mean_income", "mean_income_accuracy"} <= set(waited.columns)
    assert gw.query_result(waited.attrs["query_id"])["mean_income"].tolist() == \
        waited["mean_income"].tolist()

    reviewer = _release_when_pending(live, reject=True)
    with pytest.raises(QueryRejected, match="too fine-grained"):
        credit.histogram("age", bins=[18, 30, 50, 80], epsilon=0.2, timeout=30)
    reviewer.join()


def test_a_restricted_query_returns_a_pending_handle_at_once(live: LiveGateway) -> None:
    live.services.ledger.give(ADMIN, user="ron", org=None, dataset="credit", epsilon=1.0,
                              delta=None, days=None)
    gw = connect(live.url, token=live.token("ron"), quiet=True)
    credit = gw.dataset("credit")
    started = time.monotonic()
    held = credit.count(by=["status"], epsilon=0.3)  # the default: do not wait
    # at once: far below the 300 s a waiting call would block for (a loaded machine takes
    # a few seconds at worst)
    assert isinstance(held, PendingQuery) and time.monotonic() - started < 60
    shown = held._repr_html_()
    assert held.id in shown and "pending_review" in shown and ".result(" in shown
    assert held.query.status == "pending_review" and held.query.dataset == "credit"
    assert gw.budget_left("credit").epsilon == pytest.approx(1.0)  # nothing charged yet

    live.admin("POST", f"/v1/queries/{held.id}/release", {"note": "fine"})  # later, an admin
    result = held.result(timeout=30)
    released = live.admin("GET", f"/v1/queries/{held.id}")
    assert released["status"] == "released"
    assert result["count"].tolist() == [row[released["columns"].index("count")]
                                        for row in released["rows"]]
    assert result.attrs["epsilon_charged"] == pytest.approx(0.3)
    assert "released" in held._repr_html_()

    same_sql = gw.sql("SELECT COUNT(*) FROM credit", epsilon=0.1)
    assert isinstance(same_sql, PendingQuery)  # SQL too
    live.admin("POST", f"/v1/queries/{same_sql.id}/reject", {"note": "not now"})
    with pytest.raises(QueryRejected, match="not now"):
        same_sql.result(timeout=30)


def test_budget_left_adds_up_every_active_grant(live: LiveGateway) -> None:
    gw = connect(live.url, token=live.token("ron"), quiet=True)
    before = gw.budget_left("flights")
    for epsilon in (1.0, 0.5):
        live.services.ledger.give(ADMIN, user="ron", org=None, dataset="flights",
                                  epsilon=epsilon, delta=None, days=None)
    grants = [g for g in live.admin("GET", "/v1/grants")
              if g["user"] == "ron" and g["dataset"] == "flights" and g["status"] == "active"]
    expected = sum(g["epsilon_remaining"] for g in grants)
    left = gw.budget_left("flights")
    assert len(left.grants) == len(grants) == len(before.grants) + 2
    assert left.epsilon == pytest.approx(expected) == pytest.approx(before.epsilon + 1.5)
    flights = gw.dataset("flights")
    counts = flights.count(by=["origin"], epsilon=0.2)
    assert flights.epsilon_left == pytest.approx(expected - 0.2)
    assert counts.attrs["epsilon_left_total"] == pytest.approx(expected - 0.2)
    assert gw.datasets().loc["flights", "epsilon_left"] == pytest.approx(expected - 0.2)
    assert f"{expected - 0.2:.4g}" in flights._repr_html_()
    assert float(flights.budget_left()) == pytest.approx(expected - 0.2)


def test_a_mistyped_name_is_refused_with_the_closest_one(live: LiveGateway,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    gw = connect(live.url, token=live.token("rita"), quiet=True)
    exam = gw.dataset("exam")
    with pytest.raises(InvalidRequest) as typo:
        exam.count(by="schgen", epsilon=0.1)
    assert typo.value.message == ("dataset exam has no column schgen (group_by); "
                                  "did you mean schgend?")
    with pytest.raises(NotFound, match="no dataset named exams; did you mean exam"):
        gw.dataset("exams")
    with pytest.raises(InvalidRequest, match=r"unknown column schgen in GROUP BY.*did you mean "
                                             "schgend"):
        gw.sql("SELECT schgend, COUNT(*) FROM exam GROUP BY schgen", epsilon=0.1)
    monkeypatch.setenv("DPSANDBOX_LANG", "zh_CN")
    with pytest.raises(InvalidRequest) as chinese:
        exam.mean("normexm", epsilon=0.1)
    assert chinese.value.message == "数据集 exam 没有列 normexm（mean）；您是不是要找 normexam？"
    with pytest.raises(InvalidRequest) as from_the_gateway:  # asked for in Accept-Language
        gw.sql("SELECT schgend, COUNT(*) FROM exam GROUP BY schgen", epsilon=0.1)
    assert from_the_gateway.value.message == (
        "GROUP BY 中的列 schgen 不存在：数据集 exam 没有可查询的列 schgen；您是不是要找 schgend？")


# -- token refresh ---------------------------------------------------------------------


def test_token_is_refreshed_and_shared(live: LiveGateway, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    issue = live.services.tokens.issue
    short, _ttl = issue(username="rita", role="researcher", scope="sandbox", ttl=120,
                        session_expires_at=int(time.time()) + 3600)
    token_file = tmp_path / "token"
    monkeypatch.setenv("DPSANDBOX_GATEWAY_URL", live.url)
    monkeypatch.setenv("DPSANDBOX_TOKEN", short)
    gw = connect(quiet=True)  # under 5 minutes left: refreshed on the first call
    fresh = gw._session.token
    assert fresh != short and (token_expiry(fresh) or 0) > time.time() + 600
    assert token_claims(fresh)["scope"] == "sandbox"
    assert token_file.read_text().strip() == fresh
    assert token_file.stat().st_mode & 0o777 == 0o600

    # a second kernel started with the old environment picks up the shared fresh token
    other = connect(quiet=True)
    assert other._session.token == fresh
    assert other.datasets().shape[0] == 3

    # near the session's end a refresh cannot extend the token: the client does not try
    ending, _ttl = issue(username="ron", role="researcher", scope="sandbox", ttl=3600,
                         session_expires_at=int(time.time()) + 120)
    last = connect(live.url, token=ending, quiet=True)
    assert last._session.token == ending and last.datasets().shape[0] == 3

    expired, _ttl = issue(username="rita", role="researcher", scope="sandbox", ttl=1)
    time.sleep(1.1)
    with pytest.raises(Unauthenticated, match="expired"):
        connect(live.url, token=expired)


def test_the_client_imports_without_the_gateway(tmp_path: Path) -> None:
    """Inside a sandbox there is no gateway, no opendp, no jupyterhub."""
    import subprocess
    import sys

    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('gateway', 'opendp', 'polars', 'jupyterhub',"
            " 'fastapi', 'sqlalchemy'):\n"
            "            raise ImportError('blocked ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from sandbox import connect, DPSandboxError\n"
            "import sandbox.client\n"
            "print(sorted(n for n in sandbox.client.__all__ if n.endswith('Exhausted')"
            " or n == 'AccessDenied'))\n")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(root)}, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().replace("'", '"')) == ["AccessDenied", "BudgetExhausted"]


def test_a_revoked_grant_says_why(live: LiveGateway) -> None:
    """The admin's reason reaches the analyst with the grant and with the refusal."""
    live.services.users.create(ADMIN, username="rhea", role="researcher", password=PASSWORD)
    grant = live.services.ledger.give(ADMIN, user="rhea", org=None, dataset="flights",
                                      epsilon=1.0, delta=None, days=None)
    live.admin("POST", f"/v1/grants/{grant['id']}/revoke", {"note": "the project ended"})
    gw = connect(live.url, token=live.token("rhea"), quiet=True)
    listed = gw.grants().set_index("id")
    assert listed.loc[grant["id"], "status"] == "revoked"
    assert listed.loc[grant["id"], "revoke_reason"] == "the project ended"
    [shape] = gw.runner.grants()
    assert shape.revoke_reason == "the project ended" and shape.revoked_at and not shape.active
    with pytest.raises(GrantRequired, match=r"was revoked \(reason: the project ended\)"):
        gw.dataset("flights").count(epsilon=0.1)


def test_a_body_the_gateway_refuses_reads_in_dpsandbox_lang(
        live: LiveGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's validation message follows the notebook's language; the code does not."""
    gw = connect(live.url, token=live.token("rita"), quiet=True)
    body = {"dataset": "flights", "purpose": "p" * 30, "colour": "red"}
    monkeypatch.setenv("DPSANDBOX_LANG", "zh_CN")
    with pytest.raises(InvalidRequest) as chinese:
        gw.runner.post("/v1/requests", body)
    monkeypatch.setenv("DPSANDBOX_LANG", "en")
    with pytest.raises(InvalidRequest) as english:
        gw.runner.post("/v1/requests", body)
    assert chinese.value.code == english.value.code == "invalid_request"
    assert "colour：不是此处可用的字段" in chinese.value.message
    assert "colour: is not a known field here" in english.value.message

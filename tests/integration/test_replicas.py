"""Three real ``dpsandbox gateway`` processes on one PostgreSQL behave as one gateway.

Each replica has a home of its own; they share only the store (a fresh schema, migrated
by the replicas themselves as they start together), the datasets' directory
(``DPSANDBOX_DATA_DIR``) and the secrets (``DPSANDBOX_SECRETS_DIR``). The tests: spend under
concurrency, shared sessions and cache, a SIGKILL during a burst, and draining on SIGTERM.
"""

from __future__ import annotations

import re
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from gateway.adapters.secrets import new_signing_key_pem
from gateway.bootstrap import Services
from gateway.services.audit import AuditFilter
from tests.conftest import ADMIN, PASSWORD, PG_BASE, make_services
from tests.gateway_process import GatewayProcess

pytestmark = pytest.mark.xdist_group("replicas")
HUB_SECRET = "hub-secret-shared-by-replicas-0123456789"


@dataclass
class Cluster:
    replicas: list[GatewayProcess]
    admin: Services  # the operator's CLI view of the same store
    url: str
    settings: dict[str, str]

    def up(self) -> None:
        """Start again any replica an earlier test killed or stopped."""
        for replica in self.replicas:
            if replica.proc is None or replica.proc.poll() is not None:
                replica.start(timeout=120)

    def token(self, replica: int, user: str) -> str:
        return self.replicas[replica].token(user, PASSWORD)

    def grant(self, user: str, dataset: str, epsilon: float) -> dict[str, Any]:
        return self.admin.ledger.give(ADMIN, user=user, org=None, dataset=dataset,
                                      epsilon=epsilon, delta=None, days=None)

    def spent(self, grant_id: str) -> Decimal:
        with self.admin.store.reading() as tx:
            grant = tx.grants.get(grant_id)
        assert grant is not None
        return grant.spent.epsilon

    def audit(self, **flt: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            entries, total = self.admin.audit.page(AuditFilter(**flt), page=len(found) // 500 + 1,
                                                   size=500)
            found += entries
            if len(found) >= total or not entries:
                return found


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory,
            demo_files: dict[str, Path]) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("replicas")
    schema = f"dps_rep_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(PG_BASE)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG_BASE}?options=-csearch_path%3D{schema}"
    secrets = root / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "signing_key.pem").write_bytes(new_signing_key_pem())
    (secrets / "hub_secret").write_text(HUB_SECRET)
    (secrets / "console_secret").write_text(uuid.uuid4().hex)
    settings = {"DPSANDBOX_SECRETS_DIR": str(secrets),
                "DPSANDBOX_DATA_DIR": str(root / "admin" / "data"),
                "DPSANDBOX_DRAIN_SECONDS": "3"}
    replicas = []
    for i in range(3):
        (root / f"r{i}").mkdir()
        replicas.append(GatewayProcess(root / f"r{i}", url, **settings))
    with ThreadPoolExecutor(4) as pool:  # together, on an empty schema: they migrate it
        admin = pool.submit(make_services, root / "admin", demo_files, db_url=url,
                            datasets=("flights", "exam"))
        started = [pool.submit(r.start, timeout=120) for r in replicas]
    try:
        for future in started:
            future.result()
        yield Cluster(replicas, admin.result(), url, settings)
    finally:
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda r: r.stop(), replicas))
        if admin.exception() is None:
            admin.result().store.dispose()
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def test_spend_under_concurrency_is_exact_across_replicas(cluster: Cluster) -> None:
    cluster.up()
    grant = cluster.grant("rita", "exam", 1.0)
    tokens = [cluster.token(i, "rita") for i in range(3)]
    start = threading.Barrier(60)

    def one(i: int) -> tuple[int, int, str]:
        replica = i % 3
        body = {"dataset": "exam", "epsilon": 0.25, "select": [{"agg": "count"}],
                "where": [{"column": "normexam", "op": ">=", "value": -3 + i / 100}]}
        start.wait()
        resp = httpx.post(f"{cluster.replicas[replica].url}/v1/queries", json=body,
                          headers=bearer(tokens[replica]), timeout=120)
        code = resp.json()["status"] if resp.status_code == 200 else resp.json()["error"]["code"]
        return replica, resp.status_code, code

    with ThreadPoolExecutor(60) as pool:
        outcomes = list(pool.map(one, range(60)))
    assert Counter(code for _, _, code in outcomes) == {"released": 4, "budget_exhausted": 56}
    assert Counter(replica for replica, _, _ in outcomes) == {0: 20, 1: 20, 2: 20}

    charges = cluster.audit(action="query.charge", outcome="ok", grant_id=grant["id"])
    releases = cluster.audit(action="query.release", outcome="ok", grant_id=grant["id"])
    denied = [e for e in cluster.audit(action="query", outcome="denied", actor="rita")
              if e["detail"].get("code") == "budget_exhausted"]
    assert len(charges) == len(releases) == 4 and len(denied) == 56  # every answer audited
    assert cluster.spent(grant["id"]) == sum(Decimal(c["epsilon"]) for c in charges) == 1
    every_exam_charge = cluster.audit(action="query.charge", outcome="ok", dataset="exam")
    assert cluster.admin.catalog.record("exam").spent.epsilon == sum(
        Decimal(c["epsilon"]) for c in every_exam_charge)  # the dataset's cap counts them all
    report = cluster.admin.audit.verify()
    assert report.ok, report
    seqs = [e["seq"] for e in cluster.audit()]
    assert sorted(seqs) == list(range(1, len(seqs) + 1))  # one chain: no gap, no fork


def login_console(client: httpx.Client, replica: GatewayProcess, other: GatewayProcess,
                  user: str) -> None:
    """Sign in to the console: the form from one replica, the sign-in posted to another."""
    page = client.get(f"{replica.url}/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text[:500]
    resp = client.post(f"{other.url}/console/login", data={
        "username": user, "password": PASSWORD, "csrf_token": token.group(1)})
    assert resp.status_code == 303, resp.text[:500]


def test_sessions_revocation_and_cache_are_shared(cluster: Cluster) -> None:
    cluster.up()
    r0, r1, r2 = cluster.replicas
    grant = cluster.grant("ron", "exam", 1.0)
    token = cluster.token(0, "ron")
    for replica in (r1, r2):  # a token issued by one replica works on the others
        assert httpx.get(f"{replica.url}/v1/me", headers=bearer(token)).status_code == 200

    body = {"dataset": "exam", "epsilon": 0.1, "select": [{"agg": "mean", "column": "normexam"}]}
    first = httpx.post(f"{r1.url}/v1/queries", json=body, headers=bearer(token), timeout=60)
    assert first.status_code == 200 and first.json()["cached"] is False, first.text
    spent = cluster.spent(grant["id"])
    again = httpx.post(f"{r2.url}/v1/queries", json=body, headers=bearer(token), timeout=60)
    assert again.status_code == 200, again.text
    assert again.json()["cached"] is True and again.json()["id"] == first.json()["id"]
    assert again.json()["rows"] == first.json()["rows"]  # the release replayed, not recomputed
    assert cluster.spent(grant["id"]) == spent == Decimal("0.1")

    # the hub's secret and the console's CSRF secret are the same on every replica
    for replica in (r0, r1, r2):
        resp = httpx.post(f"{replica.url}/v1/auth/sandbox-token", json={"username": "ron"},
                          headers={"X-Hub-Secret": HUB_SECRET})
        assert resp.status_code == 200, resp.text
    with httpx.Client(timeout=30) as console:
        login_console(console, r2, r0, "ron")
        home = console.get(f"{r1.url}/console/")
        assert home.status_code == 200, home.text[:300]
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', home.text)
        assert csrf, home.text[:500]
        out = console.post(f"{r2.url}/console/logout", data={"csrf_token": csrf.group(1)})
        assert out.status_code == 303 and "signed-out" in out.headers["location"], out.text
        assert console.get(f"{r0.url}/console/").status_code != 200  # its session ended

    # a logout on one replica is refused on the others
    assert httpx.post(f"{r0.url}/v1/auth/logout", headers=bearer(token)).status_code == 204
    for replica in (r0, r1, r2):
        resp = httpx.get(f"{replica.url}/v1/me", headers=bearer(token))
        assert resp.status_code == 401 and resp.json()["error"]["code"] == "unauthenticated"


def keyed_body(i: int) -> dict[str, Any]:
    return {"dataset": "flights", "epsilon": 0.01, "group_by": ["origin"],
            "select": [{"agg": "count"}, {"agg": "mean", "column": "dep_delay"},
                       {"agg": "quantile", "column": "air_time", "q": 0.5}],
            "where": [{"column": "distance", "op": ">=", "value": i}]}


def burst(cluster: Cluster, token: str, sent: dict[str, int], answers: dict[str, Any],
          victim: int, kill_after: float) -> None:
    """Keyed queries from 6 threads on the victim and 1 on each other replica; the victim is
    SIGKILLed after ``kill_after`` seconds; threads end at the first error or at the kill."""
    killed = threading.Event()
    lock = threading.Lock()

    def worker(replica: int, lane: int) -> None:
        url = cluster.replicas[replica].url
        with httpx.Client(timeout=60, headers=bearer(token)) as client:
            for n in range(200):
                if killed.is_set():
                    return
                key = f"k{replica}-{lane}-{n}-{uuid.uuid4().hex[:6]}"
                with lock:
                    sent[key] = len(sent)
                try:
                    resp = client.post(f"{url}/v1/queries", json=keyed_body(sent[key]),
                                       headers={"Idempotency-Key": key})
                except httpx.HTTPError:
                    return  # cut off by the kill
                assert resp.status_code == 200, resp.text
                answers[key] = resp.json()

    def kill() -> None:
        time.sleep(kill_after)
        cluster.replicas[victim].kill()
        killed.set()

    lanes = [(victim, lane) for lane in range(6)] + [
        (r, 0) for r in range(len(cluster.replicas)) if r != victim]
    with ThreadPoolExecutor(len(lanes) + 1) as pool:
        futures = [pool.submit(worker, *lane) for lane in lanes] + [pool.submit(kill)]
        for future in futures:
            future.result()


def running_of(cluster: Cluster, user: str) -> list[dict[str, Any]]:
    return [q for q in cluster.admin.queries.list(ADMIN, status="running", limit=1000)
            if q["user"] == user]


def test_sigkill_during_a_burst_loses_nothing_and_peers_finish_it(cluster: Cluster) -> None:
    cluster.up()
    grant = cluster.grant("erin", "flights", 5.0)
    token = cluster.token(1, "erin")
    sent: dict[str, int] = {}
    answers: dict[str, Any] = {}
    orphans: list[str] = []
    for attempt in range(6):  # until a kill cuts off a charged query (it nearly always does)
        burst(cluster, token, sent, answers, victim=0, kill_after=1.0 + 0.3 * attempt)
        orphans = [q["id"] for q in running_of(cluster, "erin")]
        if orphans:
            break
        cluster.replicas[0].start()
    assert orphans, "no query was in flight at any of 6 kills"

    # the surviving replicas' recovery finishes the dead one's orphans, without a restart
    deadline = time.monotonic() + 60
    while running_of(cluster, "erin") and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not running_of(cluster, "erin"), "orphans left running on the surviving replicas"
    r1, r2 = cluster.replicas[1], cluster.replicas[2]
    for query_id in orphans:  # retrievable by id from another replica
        view = httpx.get(f"{r2.url}/v1/queries/{query_id}", headers=bearer(token)).json()
        assert view["status"] == "released" and view["recovered"] is True, view
        assert view["rows"] and view["columns"], view
    for key, answer in answers.items():  # what the dead replica released is kept as given
        view = httpx.get(f"{r2.url}/v1/queries/{answer['id']}", headers=bearer(token)).json()
        assert view["rows"] == answer["rows"], key

    # every request again with its key, on a survivor: one query per key, none charged twice
    def retry(key: str) -> tuple[str, str]:
        resp = httpx.post(f"{r1.url}/v1/queries", json=keyed_body(sent[key]), timeout=120,
                          headers={**bearer(token), "Idempotency-Key": key})
        assert resp.status_code == 200 and resp.json()["status"] == "released", resp.text
        return key, resp.json()["id"]

    with ThreadPoolExecutor(6) as pool:
        ids = dict(pool.map(retry, list(sent)))
    assert all(ids[key] == answer["id"] for key, answer in answers.items())
    assert set(orphans) <= set(ids.values())
    assert len(set(ids.values())) == len(sent)
    charges = cluster.audit(action="query.charge", outcome="ok", grant_id=grant["id"])
    releases = cluster.audit(action="query.release", grant_id=grant["id"])
    assert Counter(c["query_id"] for c in charges) == Counter(set(ids.values()))
    assert Counter(r["query_id"] for r in releases) == Counter(set(ids.values()))
    assert cluster.spent(grant["id"]) == sum(Decimal(c["epsilon"]) for c in charges)
    assert cluster.admin.audit.verify().ok


def test_sigterm_lets_the_query_in_flight_finish_and_starts_no_other(
        cluster: Cluster) -> None:
    cluster.up()
    draining = cluster.replicas[2]  # draining 3 s: /readyz 503 before the port closes
    grant = cluster.grant("eve", "flights", 5.0)
    token = draining.token("eve", PASSWORD)
    assert httpx.get(f"{draining.url}/readyz").status_code == 200
    slow: dict[str, Any] = {}

    def pca(epsilon: float) -> None:
        body = {"dataset": "flights", "kind": "pca", "epsilon": epsilon, "components": 2,
                "columns": ["distance", "air_time", "dep_delay", "arr_delay", "hour"]}
        resp = httpx.post(f"{draining.url}/v1/models", json=body, headers=bearer(token),
                          timeout=120)
        slow.update(status=resp.status_code, body=resp.json())

    for attempt in range(3):  # until the fit is caught computing (it takes ~0.5 s)
        thread = threading.Thread(target=pca, args=(0.5 + attempt / 10,))
        thread.start()
        while thread.is_alive() and not running_of(cluster, "eve"):
            time.sleep(0.01)
        if running_of(cluster, "eve"):
            break
        thread.join()
    else:
        pytest.fail("the fit was never caught in flight")
    assert draining.proc is not None
    draining.proc.send_signal(signal.SIGTERM)
    charged = cluster.audit(action="query.charge", outcome="ok", grant_id=grant["id"])

    ready = httpx.get(f"{draining.url}/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "draining"
    assert httpx.get(f"{draining.url}/healthz").status_code == 200
    refused = httpx.post(f"{draining.url}/v1/queries", headers=bearer(token), json={
        "dataset": "flights", "epsilon": 0.1, "select": [{"agg": "count"}]})
    assert refused.status_code == 503 and refused.headers["retry-after"]
    assert refused.json()["error"]["code"] == "unavailable"

    thread.join(timeout=120)
    assert slow["status"] == 200 and slow["body"]["status"] == "released", slow
    assert draining.proc.wait(timeout=60) == -signal.SIGTERM
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{draining.url}/healthz")
    assert slow["body"]["id"] in [c["query_id"] for c in charged]
    assert cluster.audit(action="query.charge", outcome="ok",
                         grant_id=grant["id"]) == charged  # the refused one: nothing
    assert not running_of(cluster, "eve")

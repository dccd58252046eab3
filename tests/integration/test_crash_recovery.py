"""A gateway SIGKILLed during a burst of queries, then started again (SQLite, PostgreSQL).

Afterwards every charge has exactly one release or one audited error, nothing is charged
twice, the ledger equals the charges, and the audit chain verifies. The orphans (charged
when the process died) are finished by the restarted gateway's recovery, visible through
``GET /v1/queries/{id}``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.bootstrap import Services
from gateway.services.audit import AuditFilter
from tests.conftest import ADMIN, PASSWORD, make_services
from tests.gateway_process import GatewayProcess

pytestmark = pytest.mark.xdist_group("crash")
THREADS = 8
BURST = 150


def audit_entries(svc: Services, **flt: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    page = 1
    while True:
        entries, total = svc.audit.page(AuditFilter(**flt), page=page, size=500)
        found += entries
        if len(found) >= total or not entries:
            return found
        page += 1


def running(svc: Services) -> list[dict[str, Any]]:
    return [q for q in svc.queries.list(ADMIN, status="running", limit=1000)]


SENT: dict[str, dict[str, Any]] = {}  # Idempotency-Key -> body, of every request sent


def body_of(i: int) -> dict[str, Any]:
    return {"dataset": "flights", "epsilon": 0.01,
            "select": [{"agg": "count"}, {"agg": "mean", "column": "dep_delay"}],
            "where": [{"column": "distance", "op": ">=", "value": i}]}


def burst(url: str, token: str, start: int, stop_after: int) -> list[str]:
    """Keyed queries from THREADS threads until the process is killed; the released ids."""
    released: list[str] = []
    done = threading.Event()
    counter = iter(range(start, start + BURST))
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            while not done.is_set():
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                key = f"burst-{start}-{i}-{uuid.uuid4().hex[:8]}"
                with lock:
                    SENT[key] = body_of(i)
                try:
                    resp = client.post("/v1/queries", json=SENT[key],
                                       headers={"Idempotency-Key": key})
                except httpx.HTTPError:
                    done.set()
                    return
                if resp.status_code == 200:
                    with lock:
                        released.append(resp.json()["id"])
                        if len(released) >= stop_after:
                            done.set()

    with ThreadPoolExecutor(THREADS) as pool:
        for _ in range(THREADS):
            pool.submit(worker)
    return released


def retry_every_request(url: str, headers: dict[str, str]) -> dict[str, str]:
    """Send every request of the bursts again with its key; key -> query id."""
    def again(key: str) -> tuple[str, str]:
        resp = httpx.post(f"{url}/v1/queries", json=SENT[key], timeout=120,
                          headers={**headers, "Idempotency-Key": key})
        assert resp.status_code == 200 and resp.json()["status"] == "released", resp.text
        return key, resp.json()["id"]

    with ThreadPoolExecutor(THREADS) as pool:
        return dict(pool.map(again, list(SENT)))


def kill_during_burst(gateway: GatewayProcess, svc: Services, token: str) -> list[str]:
    """Burst, SIGKILL while queries run; again until at least one query is orphaned."""
    for attempt in range(4):
        warm_up = burst(gateway.url, token, start=10_000 + attempt, stop_after=1)
        assert warm_up, "the gateway answers no query"
        killer = threading.Timer(1.0 + 0.37 * attempt, gateway.kill)
        killer.start()
        burst(gateway.url, token, start=attempt * BURST, stop_after=10_000)
        killer.join()
        orphans = [q["id"] for q in running(svc)]
        if orphans:
            return orphans
        gateway.start()
    pytest.fail("no query was in flight at any of 4 kills")


def test_sigkill_during_a_burst_then_restart(tmp_path: Path, store_url: str,
                                             demo_files: dict[str, Path]) -> None:
    SENT.clear()
    svc = make_services(tmp_path, demo_files, db_url=store_url, datasets=("flights",))
    grant = svc.ledger.give(ADMIN, user="rita", org=None, dataset="flights", epsilon=5.0,
                            delta=None, days=None)
    gateway = GatewayProcess(tmp_path, store_url).start()
    try:
        token = gateway.token("rita", PASSWORD)
        orphans = kill_during_burst(gateway, svc, token)
        gateway.start()  # the same home and store: recovery finds the orphans
        deadline = time.monotonic() + 60
        while running(svc) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not running(svc), "orphans left running after the restart"

        headers = {"Authorization": f"Bearer {gateway.token('rita', PASSWORD)}"}
        retried = retry_every_request(gateway.url, headers)
        for query_id in orphans:
            view = httpx.get(f"{gateway.url}/v1/queries/{query_id}", headers=headers,
                             timeout=30).json()
            assert view["status"] in ("released", "error"), view
            if view["status"] == "released":
                assert view["rows"] and view["columns"], view
    finally:
        gateway.stop()

    # Every request retried with its key: the first attempt's query if it was charged
    # (orphans included), a new one if it was cut off before; one query per key.
    with svc.store.reading() as tx:
        for key, query_id in retried.items():
            first = tx.queries.by_idempotency_key("rita", key)
            if first is None:  # answered from the release cache: no query, no charge
                continue
            assert first.id == query_id, "a retry did not get its first attempt's query"
    assert set(orphans) <= set(retried.values())

    charges = audit_entries(svc, action="query.charge", outcome="ok", grant_id=grant["id"])
    releases = audit_entries(svc, action="query.release")
    charged = Counter(c["query_id"] for c in charges)
    finished = Counter(r["query_id"] for r in releases)
    assert charged and max(charged.values()) == 1, "a query was charged twice"
    assert set(finished) == set(charged), "a charge without its one release or error"
    assert max(finished.values()) == 1, "a query was released twice"
    recovered = [r for r in releases if (r["detail"] or {}).get("recovered")]
    assert {r["query_id"] for r in recovered} == set(orphans)
    for query in svc.queries.list(ADMIN, limit=1000):
        assert query["status"] in ("released", "error"), query
    spent = next(g for g in svc.ledger.list(ADMIN) if g["id"] == grant["id"])["epsilon_spent"]
    assert Decimal(str(spent)) == sum(Decimal(c["epsilon"]) for c in charges)
    assert svc.audit.verify().ok
    svc.store.dispose()

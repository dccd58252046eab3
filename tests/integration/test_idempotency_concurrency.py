"""Concurrent requests with one Idempotency-Key, on SQLite and PostgreSQL: one charge, one
query, and every request answered with it (never a 500)."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.adapters.db import IdempotencyKeyTaken, Tx
from gateway.domain.budget import Budget
from gateway.domain.query import Aggregate, Filter, QuerySpec
from gateway.domain.records import QueryRecord
from gateway.services.audit import AuditFilter
from gateway.services.common import Principal, iso, new_id, now
from gateway.services.queries import QueryRequest
from tests.conftest import ADMIN, PG_BASE, make_services, serve

BODY = {"dataset": "exam", "select": [{"agg": "count"}],
        "where": [{"column": "normexam", "op": ">=", "value": -1.5}], "epsilon": 0.25}


def _spent(svc: Any, grant_id: str) -> float:
    return float(svc.ledger.get(ADMIN, grant_id)["epsilon_spent"])


def _charges(svc: Any, **filters: Any) -> int:
    return int(svc.audit.page(AuditFilter(action="query.charge", **filters), page=1, size=50)[1])


def test_concurrent_requests_with_one_key_are_charged_once(
        tmp_path: Path, store_url: str, demo_files: dict[str, Path]) -> None:
    svc = make_services(tmp_path, demo_files, db_url=store_url, datasets=("exam",))
    grant = svc.ledger.give(ADMIN, user="rita", org=None, dataset="exam", epsilon=1.0,
                            delta=None, days=None)
    with contextmanager(serve)(svc) as env:
        headers = {**env.headers("rita"), "Idempotency-Key": "concurrent-key-0001"}
        start = threading.Barrier(12)

        def post(_: int) -> Any:
            start.wait(timeout=30)
            return env.client.post("/v1/queries", json=BODY, headers=headers)

        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(post, range(12)))
        assert [a.status_code for a in answers] == [200] * 12, [a.text for a in answers]
        assert len({a.json()["id"] for a in answers}) == 1
        assert len({json.dumps(a.json()["rows"]) for a in answers}) == 1
        assert sum(bool(a.json().get("replayed")) for a in answers) == 11
    assert _spent(svc, grant["id"]) == pytest.approx(0.25)
    assert _charges(svc, grant_id=grant["id"]) == 1
    assert svc.audit.verify().ok
    svc.store.dispose()


def _waits_for(admin: sa.Engine, holder: int) -> bool:
    """Whether some backend waits for a lock the backend ``holder`` holds."""
    with admin.connect() as conn:
        return bool(conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE :holder = ANY(pg_blocking_pids(pid))"),
            {"holder": holder}).scalar_one())


def test_a_key_taken_by_a_concurrent_writer_answers_its_query_not_500(
        tmp_path: Path, pg_url: str, demo_files: dict[str, Path]) -> None:
    """The unique index on (username, Idempotency-Key) is the last line: a writer that
    holds the key uncommitted (another process, outside the gateway's write lock) makes
    the gateway's insert wait, then fail. The gateway's transaction (its charge) is rolled
    back and the request is answered with the other's query, as a retry would be."""
    del pg_url  # a schema of its own (the session's PostgreSQL fixture creates the role)
    schema = f"dps_idem_{new_id()[:10]}"
    admin = sa.create_engine(PG_BASE, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    svc = make_services(tmp_path, demo_files,
                        db_url=f"{PG_BASE}?options=-csearch_path%3D{schema}", datasets=("exam",))
    try:
        grant = svc.ledger.give(ADMIN, user="rita", org=None, dataset="exam", epsilon=1.0,
                                delta=None, days=None)
        rita = Principal("rita", "researcher")
        request = QueryRequest(spec=QuerySpec(dataset="exam", select=(Aggregate("count"),),
                                              where=(Filter("normexam", ">=", -1.0),)),
                               epsilon=0.25, idempotency_key="concurrent-key-0002")
        ticket = svc.queries.prepare(request).ticket
        first = QueryRecord(
            id=new_id(), username="rita", dataset="exam", dataset_version=ticket.dataset.version,
            grant_id=grant["id"], query_key=ticket.key, spec_json=ticket.spec_json,
            sql_text=None, status="running", cost=ticket.cost, created_at=iso(now()),
            idempotency_key="concurrent-key-0002")
        with svc.store.engine.connect() as other, other.begin() as other_tx:
            tx = Tx(other)  # charged and recorded, not committed yet, without the write lock
            holder = int(other.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
            svc.ledger.charge(tx, grant_id=grant["id"], dataset=ticket.dataset,
                              cost=ticket.cost)
            tx.queries.add(first)
            tx.queries.move(first.id, was="running", status="released",
                            result_json=json.dumps({"columns": ["count"], "rows": [[4000]]}),
                            accuracy_json=json.dumps({"alpha": 0.05}), finished_at=iso(now()))
            with ThreadPoolExecutor(1) as pool:
                answer = pool.submit(svc.queries.run, rita, request)
                deadline = time.monotonic() + 60
                while not _waits_for(admin, holder):
                    assert time.monotonic() < deadline, "the gateway never met the writer"
                    assert not answer.done(), answer.result()
                    time.sleep(0.05)
                other_tx.commit()
                result = answer.result(timeout=60)
        assert result["id"] == first.id and result["replayed"] is True
        assert result["rows"] == [[4000]] and result["status"] == "released"
        assert _spent(svc, grant["id"]) == pytest.approx(0.25)  # the other's charge only
        assert _charges(svc, grant_id=grant["id"]) == 0  # the gateway's rolled back
        assert svc.audit.verify().ok
    finally:
        svc.store.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_the_stores_name_the_key_clash_alike(tmp_path: Path, store_url: str,
                                            demo_files: dict[str, Path]) -> None:
    """Both stores' unique-violation reports are read as the key clash (a 409 at worst,
    replayed by the release unit of work), and nothing of the transaction is kept."""
    svc = make_services(tmp_path, demo_files, db_url=store_url, datasets=("exam",))
    grant = svc.ledger.give(ADMIN, user="rita", org=None, dataset="exam", epsilon=1.0,
                            delta=None, days=None)
    record = QueryRecord(id=new_id(), username="rita", dataset="exam", dataset_version="v",
                         grant_id=grant["id"], query_key="k", spec_json="{}", sql_text=None,
                         status="running", cost=Budget(), created_at=iso(now()),
                         idempotency_key="clash-key-0001")
    with pytest.raises(IdempotencyKeyTaken) as clash, svc.store.writing() as tx:
        tx.queries.add(record)
        tx.queries.add(replace(record, id=new_id()))
    assert clash.value.code == "conflict"
    with svc.store.reading() as tx:
        assert tx.queries.by_idempotency_key("rita", "clash-key-0001") is None
    svc.store.dispose()

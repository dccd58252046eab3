"""A held query's reviewer preview is stored once, on both stores: the first reviewer of a
query held before the store kept previews stores it; nobody overwrites it afterwards, and
a decided query takes none."""

from __future__ import annotations

from gateway.adapters.db import Store
from gateway.domain.budget import Budget
from gateway.domain.records import QueryRecord


def held(query_id: str, review_json: str | None = None) -> QueryRecord:
    return QueryRecord(id=query_id, username="rita", dataset="credit", dataset_version="v1",
                       grant_id="g1", query_key="k" * 64, spec_json="{}", sql_text=None,
                       status="pending_review", cost=Budget(100_000_000, 0, 0),
                       created_at="2026-01-01T00:00:00+00:00", review_json=review_json)


def test_a_held_querys_preview_is_kept_once(store_url: str) -> None:
    store = Store(store_url)
    store.migrate()
    with store.writing() as tx:
        tx.queries.add(held("q-new", '{"accuracy":{"alpha":0.05,"count":3.0}}'))
        tx.queries.add(held("q-legacy"))
        tx.queries.add(held("q-decided"))
        assert tx.queries.move("q-decided", was="pending_review", status="rejected")
    with store.writing() as tx:
        assert not tx.queries.keep_review("q-new", '{"accuracy":{}}')  # it has its own
        assert tx.queries.keep_review("q-legacy", '{"accuracy":{"alpha":0.05,"count":5.0}}')
        assert not tx.queries.keep_review("q-legacy", '{"accuracy":{}}')  # kept once
        assert not tx.queries.keep_review("q-decided", '{"accuracy":{}}')
    with store.reading() as tx:
        records = {q: tx.queries.get(q) for q in ("q-new", "q-legacy", "q-decided")}
    kept = {q: record.review_json if record else "missing" for q, record in records.items()}
    assert kept == {"q-new": '{"accuracy":{"alpha":0.05,"count":3.0}}',
                    "q-legacy": '{"accuracy":{"alpha":0.05,"count":5.0}}', "q-decided": None}
    store.dispose()

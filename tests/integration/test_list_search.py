"""The console's lists are searched and paged by the store (LIMIT/OFFSET, filters in SQL),
on SQLite and PostgreSQL, with more rows than a page."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.adapters.db import Store
from gateway.domain.budget import Budget
from gateway.domain.errors import InvalidRequest
from gateway.domain.paging import PAGE_SIZE, Window
from gateway.domain.records import Application, QueryRecord
from gateway.services.common import iso, now

ROWS = PAGE_SIZE + 12  # two pages


@pytest.fixture
def store(store_url: str) -> Store:
    store = Store(store_url)
    store.migrate()
    base = now() - timedelta(days=1)
    with store.writing() as tx:
        for i in range(ROWS):
            name = f"user{i:02d}"
            org = "Acme_Labs" if i % 3 == 0 else None
            tx.users.add(username=name, role="enterprise" if org else "researcher", org=org,
                         password_hash="x", created_at=iso(base), created_by="test")
            at = iso(base + timedelta(minutes=i))
            # every fourth grant ended yesterday: shown (and found) as expired
            ends = base - timedelta(hours=1) if i % 4 == 0 else base + timedelta(days=30)
            tx.grants.add(grant_id=f"g{i:02d}", dataset="flights" if i % 2 else "exam",
                          budget=Budget.of(1.0), username=name, org=None, created_at=at,
                          expires_at=iso(ends), created_by="admin", request_id=None)
            tx.applications.add(Application(
                id=f"a{i:02d}", applicant=name, org=org, dataset="flights",
                purpose=f"study number {i} of 100% delays" if i == 7 else f"study number {i}",
                epsilon=Budget.of(1.0), days=30, status="pending" if i % 2 else "approved",
                auto_approved=False, created_at=at))
            tx.queries.add(QueryRecord(
                id=f"q{i:02d}", username=name, dataset="flights", dataset_version="v1",
                grant_id=f"g{i:02d}", query_key=f"k{i}", spec_json="{}",
                sql_text=f"SELECT COUNT(*) FROM flights WHERE month = {i % 12 + 1}",
                status="released" if i % 5 else "error", cost=Budget.of(0.1), created_at=at))
    yield store
    store.dispose()


def test_pages_cut_in_order_and_count_all(store: Store) -> None:
    with store.reading() as tx:
        first = tx.users.search(Window())
        second = tx.users.search(Window(page=2))
        beyond = tx.users.search(Window(page=99))  # the last page, as the console shows
        grants = tx.grants.search(Window(page=2), now=iso(now()))
    assert first.total == second.total == ROWS
    assert [u.username for u in first.items] == [f"user{i:02d}" for i in range(PAGE_SIZE)]
    assert [u.username for u in second.items] == [f"user{i:02d}" for i in range(PAGE_SIZE, ROWS)]
    assert beyond.page == 2 and beyond.items == second.items
    # newest first
    assert [g.id for g in grants.items] == [f"g{i:02d}" for i in reversed(range(ROWS - PAGE_SIZE))]


def test_search_is_case_insensitive_over_the_named_columns(store: Store) -> None:
    with store.reading() as tx:
        by_org = tx.users.search(Window("acme_LABS"))
        by_name = tx.users.search(Window("USER1"))
        none = tx.users.search(Window("acme%labs"))  # % and _ are literal
        purpose = tx.applications.search(Window("100%"))
        pending = tx.applications.search(Window("study"), status="pending")
        sql = tx.queries.search(Window("month = 12"))
        error = tx.queries.search(Window("ERROR"))
        mine = tx.queries.search(Window(), username="user03")
    assert by_org.total == len(range(0, ROWS, 3))
    assert {u.org for u in by_org.items} == {"Acme_Labs"}
    assert [u.username for u in by_name.items] == [f"user1{i}" for i in range(10)]
    assert none.total == 0
    assert [a.id for a in purpose.items] == ["a07"]
    assert pending.total == len(range(1, ROWS, 2))
    assert {q.id for q in sql.items} == {f"q{i:02d}" for i in range(ROWS) if i % 12 == 11}
    assert error.total == len(range(0, ROWS, 5)) and {q.status for q in error.items} == {"error"}
    assert [q.id for q in mine.items] == ["q03"]


def test_grants_are_found_by_the_status_they_show(store: Store) -> None:
    moment = iso(now())
    with store.reading() as tx:
        expired = tx.grants.search(Window("expired", size=100), now=moment)
        active = tx.grants.search(Window("active", size=100), now=moment)
        held = tx.grants.search(Window(), now=moment, username="user05")
    assert {g.id for g in expired.items} == {f"g{i:02d}" for i in range(0, ROWS, 4)}
    assert all(g.shown_status == "expired" for g in expired.items)
    assert active.total == ROWS - expired.total
    assert all(g.shown_status == "active" for g in active.items)
    assert [g.id for g in held.items] == ["g05"]


def test_a_window_out_of_bounds_is_refused() -> None:
    for bad in ({"page": 0}, {"size": 0}, {"size": 501}, {"search": "x" * 65}):
        with pytest.raises(InvalidRequest):
            Window(**bad)  # type: ignore[arg-type]

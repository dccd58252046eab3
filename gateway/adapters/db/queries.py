"""Query records: held for review, running, released (with the stored answer) or failed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, insert, or_, select, true, update

from gateway.adapters.db import tables as t
from gateway.adapters.db.rows import RecordRepo, budget_of, record_of
from gateway.domain.paging import Found, Window
from gateway.domain.records import QueryRecord

Q = t.queries.c


def _query(row: Any) -> QueryRecord:
    return record_of(QueryRecord, row, cost=budget_of(row, "units"), recovered=bool(row.recovered))


class QueryRepo(RecordRepo[QueryRecord]):
    table = t.queries
    to_record = staticmethod(_query)

    def get(self, query_id: str) -> QueryRecord | None:
        return self.first(Q.id == query_id)

    def released(self, grant_id: str, key: str) -> QueryRecord | None:
        """The first answer released under this grant for this query key (the cache)."""
        return self.first(Q.grant_id == grant_id, Q.query_key == key, Q.status == "released",
                          order_by=Q.created_at)

    def list(self, *, username: str | None = None, status: str | None = None,
             dataset: str | None = None, limit: int = 200) -> list[QueryRecord]:
        conds = []
        for column, value in ((Q.username, username), (Q.status, status), (Q.dataset, dataset)):
            if value:
                conds.append(column == value)
        return [_query(r) for r in self.conn.execute(
            select(t.queries).where(*conds).order_by(Q.created_at.desc()).limit(limit))]

    def search(self, window: Window, *, username: str | None = None,
               status: str | None = None) -> Found[QueryRecord]:
        """A page of queries, newest first, searched in user, dataset, SQL, id and status."""
        return self.window(select(t.queries), window,
                           equal=((Q.username, username), (Q.status, status)),
                           searched=(Q.username, Q.dataset, Q.sql_text, Q.id, Q.status),
                           order=(Q.created_at.desc(), Q.id)).map(_query)

    def add(self, record: QueryRecord) -> None:
        self.conn.execute(insert(t.queries).values(
            id=record.id, username=record.username, dataset=record.dataset,
            dataset_version=record.dataset_version, grant_id=record.grant_id,
            query_key=record.query_key, spec_json=record.spec_json, sql_text=record.sql_text,
            status=record.status, epsilon_units=record.cost.epsilon_units,
            delta_units=record.cost.delta_units, rho_units=record.cost.rho_units,
            created_at=record.created_at, runner=record.runner,
            idempotency_key=record.idempotency_key, review_json=record.review_json))

    def by_idempotency_key(self, username: str, key: str) -> QueryRecord | None:
        return self.first(Q.username == username, Q.idempotency_key == key)

    def running_without(self, *, live: set[str], charged_before: str,
                        limit: int = 100) -> Sequence[QueryRecord]:
        """Running queries, charged before ``charged_before``, whose runner is not one of
        the ``live`` processes (or unknown)."""
        rows = self.conn.execute(select(t.queries).where(and_(
            Q.status == "running", Q.created_at < charged_before,
            or_(Q.runner.is_(None), Q.runner.not_in(live) if live else true())))
            .order_by(Q.created_at).limit(limit)).all()
        return [_query(r) for r in rows]

    def running_by(self, runner: str, *, limit: int = 100) -> Sequence[QueryRecord]:
        rows = self.conn.execute(select(t.queries).where(and_(
            Q.status == "running", Q.runner == runner)).order_by(Q.created_at).limit(limit))
        return [_query(r) for r in rows]

    def claim(self, query_id: str, *, runner_was: str | None, runner: str) -> bool:
        """Take a running query over from ``runner_was`` (compare and set)."""
        was = Q.runner.is_(None) if runner_was is None else Q.runner == runner_was
        return bool(self.conn.execute(update(t.queries).where(and_(
            Q.id == query_id, Q.status == "running", was)).values(runner=runner)).rowcount)

    def move(self, query_id: str, *, was: str, status: str, **values: Any) -> bool:
        """Move a query from ``was`` to ``status`` (setting result, reviewer, note, error...);
        False if it was not ``was`` (decided meanwhile)."""
        return bool(self.conn.execute(update(t.queries).where(and_(
            Q.id == query_id, Q.status == was)).values(status=status, **values)).rowcount)

    def keep_review(self, query_id: str, review_json: str) -> bool:
        """Store a held query's reviewer preview, unless it has one or was decided."""
        return bool(self.conn.execute(update(t.queries).where(and_(
            Q.id == query_id, Q.status == "pending_review", Q.review_json.is_(None)))
            .values(review_json=review_json)).rowcount)

    def annotate(self, query_id: str, *, review_note: str) -> None:
        self.conn.execute(update(t.queries).where(Q.id == query_id)
                          .values(review_note=review_note))

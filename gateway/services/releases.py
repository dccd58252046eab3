"""The unit of work every release goes through, whatever is released (today DP queries).

    ticket = Ticket(dataset=rec, cost=loss, key=..., spec_json=..., detail=...)
    admitted = releases.admit(actor, ticket, review=restricted)   # ONE write transaction:
        # grant (or an open dataset's automatic grant) -> cache -> hold for review, or
        # charge (grant + dataset caps) -> record the query -> audit
    ... compute, outside any transaction (the release kind's own step) ...
    record = releases.finish(actor, admitted, ticket, result)     # ONE write transaction:
        # store the answer -> audit; if the store is unavailable the query stays running,
        # charged, for recovery (ReleasePending names it); any other failure marks it error

A held query is decided by an admin: :meth:`approve_held` (charge + audit in one
transaction, then compute and :meth:`finish`) or :meth:`reject_held`. A new release kind
(say a synthetic data set) builds its own :class:`Ticket` and its own compute step and
reuses every step here; nothing is released unless its charge and audit entry were
committed first, and a charge is never refunded once data may have been read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gateway.adapters.db import IdempotencyKeyTaken, Store, Tx
from gateway.domain.audit import canonical_json
from gateway.domain.budget import Budget
from gateway.domain.errors import (
    Conflict,
    DomainError,
    InternalError,
    NotFound,
    ReleasePending,
    Unavailable,
)
from gateway.domain.records import Grant, QueryRecord
from gateway.domain.text import Text
from gateway.domain.workflow import QUERY_TRANSITIONS, next_state
from gateway.i18n import _l
from gateway.services.audit import AuditLog
from gateway.services.catalog import DatasetRecord
from gateway.services.common import Principal, iso, new_id, now
from gateway.services.grants import Ledger

log = logging.getLogger(__name__)


T = TypeVar("T")
REPLAY_WAIT_SECONDS = 30.0  # a retry waits this long for its first attempt to finish


@dataclass(frozen=True)
class Ticket:
    """What a release asks for: a cost on a dataset, keyed for the cache (same key under the
    same grant: the stored answer is served again at no cost)."""

    dataset: DatasetRecord
    cost: Budget
    key: str
    spec_json: str  # canonical JSON of what is released (stored with the record)
    sql: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # every audit entry of it carries this
    idempotency_key: str | None = None  # a retried request: the first attempt's record
    review_json: str | None = None  # if held: its reviewers' preview, stored with it


@dataclass(frozen=True)
class Result:
    columns: list[str]
    rows: list[list[Any]]
    accuracy: dict[str, Any]

    @property
    def sha256(self) -> str:
        return result_hash(self.columns, self.rows)


@dataclass(frozen=True)
class Admitted:
    """The outcome of :meth:`Releases.admit`: the grant drawn on (as charged) and the record:
    ``released`` (a cached answer), ``pending_review`` (held) or ``running`` (charged)."""

    grant: Grant
    record: QueryRecord
    replayed: bool = False  # the same Idempotency-Key was seen before: the first attempt

    @property
    def cached(self) -> bool:
        return self.record.status == "released" and not self.replayed

    @property
    def held(self) -> bool:
        return self.record.status == "pending_review"


def result_hash(columns: list[str], rows: list[list[Any]]) -> str:
    return hashlib.sha256(canonical_json({"columns": columns, "rows": rows}).encode()).hexdigest()


class Releases:
    def __init__(self, store: Store, audit: AuditLog, ledger: Ledger, *,
                 runner: str | None = None) -> None:
        self.store, self.audit, self.ledger = store, audit, ledger
        self.runner = runner  # this process's id (gateway/services/recovery.py)
        self.in_flight: set[str] = set()  # running here: being computed by this process
        self._lock = threading.Lock()

    def computing(self, query_id: str) -> bool:
        with self._lock:
            return query_id in self.in_flight

    def start(self, query_id: str) -> None:
        """This process computes ``query_id`` now (recovery leaves it alone)."""
        with self._lock:
            self.in_flight.add(query_id)

    def done(self, query_id: str) -> None:
        with self._lock:
            self.in_flight.discard(query_id)

    def admit(self, actor: Principal, ticket: Ticket, *, review: bool) -> Admitted:
        """Grant -> cache -> hold or charge -> record -> audit, in one write transaction.

        With an idempotency key already used by this caller, nothing happens but a look:
        the first attempt's record comes back (``replayed``), whatever its state. That holds
        for a concurrent attempt too: if another request with the key committed its record
        first (the store's unique index refuses this one, rolled back, nothing charged), its
        record comes back the same way."""
        try:
            return self._admit_once(actor, ticket, review=review)
        except IdempotencyKeyTaken:
            assert ticket.idempotency_key is not None
            with self.store.reading() as tx:
                first = tx.queries.by_idempotency_key(actor.username, ticket.idempotency_key)
                if first is None:
                    raise
                return self._replay(tx, first, ticket)

    def _admit_once(self, actor: Principal, ticket: Ticket, *, review: bool) -> Admitted:
        record_id: str | None = None
        try:
            with self.store.writing() as tx:
                if ticket.idempotency_key is not None:
                    first = tx.queries.by_idempotency_key(actor.username, ticket.idempotency_key)
                    if first is not None:
                        return self._replay(tx, first, ticket)
                admitted = self._admit(tx, actor, ticket, review=review)
                if admitted.record.status == "running":
                    record_id = admitted.record.id
                    self.start(record_id)  # before the commit: recovery must never see it idle
            return admitted
        except BaseException:
            if record_id is not None:
                self.done(record_id)
            raise

    def settled(self, record: QueryRecord, *,
                wait: float = REPLAY_WAIT_SECONDS) -> QueryRecord:
        """``record`` once it is no longer running (it is being computed here, by another
        replica, or by recovery after a crash), or as it stands after ``wait`` seconds."""
        deadline = time.monotonic() + wait
        while record.status == "running" and time.monotonic() < deadline:
            time.sleep(0.2)
            with self.store.reading() as tx:
                record = tx.queries.get(record.id) or record
        return record

    def _replay(self, tx: Tx, first: QueryRecord, ticket: Ticket) -> Admitted:
        if (first.spec_json, first.cost, first.dataset) != (ticket.spec_json, ticket.cost,
                                                            ticket.dataset.name):
            raise Conflict(_l("this Idempotency-Key was sent before with another request; use "
                              "a new key for a new request"))
        grant = tx.grants.get(first.grant_id) if first.grant_id else None
        if grant is None:
            raise NotFound(_l("no grant behind query %(id)s", id=first.id))
        return Admitted(grant, first, replayed=True)

    def _admit(self, tx: Tx, actor: Principal, ticket: Ticket, *, review: bool) -> Admitted:
        grant = self.ledger.grant_for(tx, actor, ticket.dataset)
        cached = tx.queries.released(grant.id, ticket.key)
        if cached is not None:
            self._audit(tx, "query", actor, ticket, grant, cached.id, cost=Budget(),
                        cached=True, result_sha256=_stored_hash(cached))
            return Admitted(grant, cached)
        status = "pending_review" if review else "running"
        if not review:
            grant = self.ledger.charge(tx, grant_id=grant.id, dataset=ticket.dataset,
                                       cost=ticket.cost)
        record = self._record(tx, actor, ticket, grant, status)
        if review:
            self._audit(tx, "query.submit", actor, ticket, grant, record.id, cost=Budget(),
                        status=status, request_id=grant.request_id)
        else:
            self._audit(tx, "query.charge", actor, ticket, grant, record.id, cost=ticket.cost,
                        request_id=grant.request_id, reviewed_by=None)
        return Admitted(grant, record)

    def approve_held(self, reviewer: Principal, ticket: Ticket, query_id: str, *,
                     analyst: str, note: str) -> Admitted:
        """An admin releases a held query: it is charged now, audited under the admin's name
        (the analyst and the note in the detail), in one write transaction. As in
        :meth:`admit`, the query is marked in flight before the commit and unmarked if the
        transaction fails (it is then still held, and nothing is charged)."""
        try:
            with self.store.writing() as tx:
                held = _get(tx, query_id)
                next_state(QUERY_TRANSITIONS, held.status, "release", "query")  # or Conflict
                assert held.grant_id is not None
                grant = self.ledger.charge(tx, grant_id=held.grant_id, dataset=ticket.dataset,
                                           cost=ticket.cost)
                if not tx.queries.move(query_id, was=held.status, status="running",
                                       reviewed_by=reviewer.username, review_note=note or None,
                                       runner=self.runner):
                    raise Conflict(_l("this query was decided meanwhile"))
                self.start(query_id)  # before the commit: recovery must never see it idle
                self._audit(tx, "query.charge", reviewer, ticket, grant, query_id,
                            cost=ticket.cost, request_id=grant.request_id,
                            reviewed_by=reviewer.username, analyst=analyst, note=note)
                record = _get(tx, query_id)
        except BaseException:
            self.done(query_id)
            raise
        return Admitted(grant, record)

    def reject_held(self, reviewer: Principal, query_id: str, *, note: str) -> QueryRecord:
        with self.store.writing() as tx:
            held = _get(tx, query_id)
            state = next_state(QUERY_TRANSITIONS, held.status, "reject", "query")
            if not tx.queries.move(query_id, was=held.status, status=state,
                                   reviewed_by=reviewer.username, review_note=note,
                                   finished_at=iso(now())):
                raise Conflict(_l("this query was decided meanwhile"))
            grant = tx.grants.get(held.grant_id)
            self.audit.append(tx, action="query.review", outcome="ok", actor=reviewer,
                              dataset=held.dataset, grant_id=held.grant_id, query_id=query_id,
                              request_id=grant.request_id if grant else None, cost=Budget(),
                              detail={"decision": "rejected", "note": note,
                                      "analyst": held.username})
            return _get(tx, query_id)

    def finish(self, actor: Principal, admitted: Admitted, ticket: Ticket,
               result: Result, *, recovered: bool = False) -> QueryRecord:
        """Store the answer and audit its release; if that fails, it is not released.

        A store that is unavailable leaves the query ``running`` under its charge: the
        recovery finishes it once the store is back (gateway/services/recovery.py), and the
        caller gets :class:`ReleasePending` (with the query's id), not a plain retry hint."""
        query_id = admitted.record.id
        try:
            with self.store.writing() as tx:
                moved = tx.queries.move(
                    query_id, was="running",
                    status=next_state(QUERY_TRANSITIONS, "running", "finish", "query"),
                    result_json=canonical_json({"columns": result.columns, "rows": result.rows}),
                    accuracy_json=canonical_json(result.accuracy), finished_at=iso(now()),
                    recovered=recovered or None)
                if not moved:
                    raise Conflict(_l("this query was decided meanwhile"))
                reviewed = admitted.record.reviewed_by
                extra: dict[str, Any] = ({"analyst": admitted.record.username,
                                          "note": admitted.record.review_note or ""}
                                         if reviewed else {})
                if recovered:
                    extra["recovered"] = True
                self._audit(tx, "query.release", actor, ticket, admitted.grant, query_id,
                            cost=None, plain=True, result_sha256=result.sha256,
                            rows=len(result.rows), reviewed_by=reviewed, **extra)
                return _get(tx, query_id)
        except Unavailable as exc:
            raise ReleasePending(query_id) from exc
        except DomainError as exc:
            self.fail(actor, ticket.dataset.name, query_id, exc)
            raise
        finally:
            self.done(query_id)

    def compute_charged(self, actor: Principal, admitted: Admitted, release: Callable[[], T], *,
                        failed: Text) -> T:
        """Run an admitted (charged) computation; if it fails the query is marked ``error`` and
        audited, and the caller gets ``InternalError(failed)``: the charge stands, data may have
        been read."""
        try:
            return release()
        except Exception as exc:
            self.fail(actor, admitted.record.dataset, admitted.record.id, exc)
            raise InternalError(failed) from exc

    def fail(self, actor: Principal, dataset: str, query_id: str, exc: Exception, *,
             reason: str | None = None, recovered: bool = False) -> None:
        """Mark a charged query ``error`` and audit it, if the store lets us (the charge stays)."""
        log.error("release failed for query %s: %s", query_id, reason or type(exc).__name__)
        detail: dict[str, Any] = {"error": type(exc).__name__}
        if reason is not None:
            detail["reason"] = reason
        if recovered:
            detail["recovered"] = True
        try:
            with self.store.writing() as tx:
                if tx.queries.move(query_id, was="running",
                                   status=next_state(QUERY_TRANSITIONS, "running", "fail",
                                                     "query"),
                                   error=reason or type(exc).__name__, finished_at=iso(now()),
                                   recovered=recovered or None):
                    self.audit.append(tx, action="query.release", outcome="error",
                                      actor=actor, dataset=dataset,
                                      query_id=query_id, detail=detail)
        except DomainError:
            log.exception("could not record the failure of query %s", query_id)
        finally:
            self.done(query_id)

    # -- steps ---------------------------------------------------------------------------

    def _record(self, tx: Tx, actor: Principal, ticket: Ticket, grant: Grant,
                status: str) -> QueryRecord:
        record = QueryRecord(
            id=new_id(), username=actor.username, dataset=ticket.dataset.name,
            dataset_version=ticket.dataset.version, grant_id=grant.id, query_key=ticket.key,
            spec_json=ticket.spec_json, sql_text=ticket.sql, status=status, cost=ticket.cost,
            created_at=iso(now()), runner=self.runner if status == "running" else None,
            idempotency_key=ticket.idempotency_key,
            review_json=ticket.review_json if status == "pending_review" else None)
        tx.queries.add(record)
        return record

    def _audit(self, tx: Tx, action: str, actor: Principal, ticket: Ticket, grant: Grant,
               query_id: str, *, cost: Budget | None, plain: bool = False,
               **detail: Any) -> None:
        """One ``ok`` entry about this release; ``plain``: without the ticket's detail."""
        self.audit.append(tx, action=action, outcome="ok", actor=actor,
                          dataset=ticket.dataset.name, grant_id=grant.id, query_id=query_id,
                          request_id=grant.request_id, cost=cost,
                          detail=detail if plain else {**ticket.detail, **detail})


def _get(tx: Tx, query_id: str) -> QueryRecord:
    record = tx.queries.get(query_id)
    if record is None:
        raise NotFound(_l("no query %(query_id)s", query_id=query_id))
    return record


def _stored_hash(record: QueryRecord) -> str:
    stored = json.loads(record.result_json or "{}")
    return result_hash(stored.get("columns", []), stored.get("rows", []))

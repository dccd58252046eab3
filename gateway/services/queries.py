"""Running DP queries: validate, plan, charge + audit (committed), release, audit.

Fail closed: nothing is released unless its charge and audit entry are committed first;
a charge is never refunded once data was read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass, replace
from typing import Any, Protocol

from sqlalchemy import Connection, and_, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from gateway.adapters.db import Store, translate
from gateway.adapters.db import tables as t
from gateway.adapters.sql import compile_sql
from gateway.domain.audit import canonical_json
from gateway.domain.budget import DELTA_SCALE, Budget
from gateway.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    GrantExpired,
    GrantRequired,
    InternalError,
    InvalidRequest,
    NotFound,
)
from gateway.domain.query import QuerySpec, public_columns, query_key, resolve_loss, validate
from gateway.domain.workflow import QUERY_TRANSITIONS, next_state
from gateway.services import access
from gateway.services.audit import AuditLog
from gateway.services.catalog import Catalog, DatasetRecord
from gateway.services.common import Principal, iso, new_id, now, parse_iso
from gateway.services.grants import Ledger

log = logging.getLogger(__name__)
ALPHA = 0.05


class Plan(Protocol):
    output_columns: list[str]

    def accuracy(self, alpha: float = ALPHA) -> dict[str, float | None]: ...
    def release(self) -> Any: ...


class Engine(Protocol):
    def plan(self, spec: QuerySpec, policy: Any, *, parquet: Any, version: str,
             loss: Budget) -> Plan: ...


@dataclass(frozen=True)
class QueryRequest:
    """A request body: a structured spec or DP SQL (compiled in :meth:`QueryService.prepare`,
    so a refused SQL text is audited too), and the loss asked for."""

    spec: QuerySpec | None
    epsilon: Any
    delta: Any = None
    sql: str | None = None


@dataclass(frozen=True)
class Prepared:
    request: QueryRequest
    dataset: DatasetRecord
    loss: Budget
    key: str

    @property
    def spec(self) -> QuerySpec:
        assert self.request.spec is not None  # prepare() always compiles
        return self.request.spec

    def audit_detail(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"spec": self.spec.to_json(), "version": self.dataset.version}
        if self.request.sql is not None:
            detail["sql"] = self.request.sql
        return detail


def result_hash(columns: list[str], rows: list[list[Any]]) -> str:
    return hashlib.sha256(canonical_json({"columns": columns, "rows": rows}).encode()).hexdigest()


def post_process(spec: QuerySpec, columns: list[str], rows: list[list[Any]]) -> list[list[Any]]:
    """ORDER BY / LIMIT on the released table (post-processing costs no privacy)."""
    out = list(rows)
    for column, desc in reversed(spec.order_by):
        idx = columns.index(column)
        out.sort(key=lambda r: (r[idx] is None, r[idx]), reverse=desc)
    return out[: spec.limit] if spec.limit is not None else out


class QueryService:
    def __init__(self, store: Store, audit: AuditLog, catalog: Catalog, ledger: Ledger,
                 engine: Engine) -> None:
        self.store, self.audit, self.catalog = store, audit, catalog
        self.ledger, self.engine = ledger, engine

    # -- preparing -----------------------------------------------------------------------

    def prepare(self, request: QueryRequest) -> Prepared:
        if request.spec is None:
            request = replace(request, spec=compile_sql(request.sql or "",
                                                        columns=self._public_columns))
        spec = request.spec
        assert spec is not None
        rec = self.catalog.record(spec.dataset)
        validate(spec, rec.policy)
        loss = resolve_loss(spec, rec.policy, epsilon=request.epsilon, delta=request.delta)
        return Prepared(request, rec, loss, query_key(spec, loss, rec.version))

    def _public_columns(self, dataset: str) -> list[str]:
        return public_columns(self.catalog.record(dataset).policy)

    def _plan(self, prepared: Prepared) -> Plan:
        rec = prepared.dataset
        return self.engine.plan(prepared.spec, rec.policy, parquet=rec.parquet,
                                version=rec.version, loss=prepared.loss)

    def _denied(self, actor: Principal, action: str, exc: DomainError, request: QueryRequest,
                **fields: Any) -> None:
        detail: dict[str, Any] = {}
        if request.spec is not None:
            detail["spec"] = request.spec.to_json()
        if request.sql is not None:
            detail["sql"] = request.sql
        dataset = request.spec.dataset[:63] if request.spec is not None else None
        self.audit.denied(actor, action, exc, dataset=dataset, detail=detail, **fields)

    def preview(self, actor: Principal, request: QueryRequest) -> dict[str, Any]:
        try:
            actor.require("researcher", "enterprise")
            prepared = self.prepare(request)
            accuracy = self._plan(prepared).accuracy(ALPHA)
        except DomainError as exc:
            self._denied(actor, "query.preview", exc, request)
            raise
        budget = None
        with self.store.read() as conn:
            try:
                grant = self.ledger.usable_grant(conn, actor, prepared.dataset.name)
                budget = self._budget(grant)
            except (GrantRequired, GrantExpired):
                budget = None
        self.audit.record(action="query.preview", outcome="ok", actor=actor,
                          dataset=prepared.dataset.name, detail=prepared.audit_detail())
        return {
            "dataset": prepared.dataset.name, "columns": prepared.spec.output_columns,
            "epsilon": prepared.loss.epsilon_float, "delta": prepared.loss.delta_float,
            "accuracy": {"alpha": ALPHA, **accuracy},
            "access": prepared.dataset.policy.access, "budget": budget,
        }

    @staticmethod
    def _budget(grant: Any) -> dict[str, Any]:
        return {
            "grant_id": grant.id,
            "epsilon_remaining": (grant.epsilon_total_units - grant.epsilon_spent_units) / 1e9,
            "delta_remaining": (grant.delta_total_units - grant.delta_spent_units) / DELTA_SCALE,
        }

    # -- running -------------------------------------------------------------------------

    def run(self, actor: Principal, request: QueryRequest) -> dict[str, Any]:
        try:
            actor.require("researcher", "enterprise")
            prepared = self.prepare(request)
            grant, cached = self._grant_and_cached(actor, prepared)
            if cached is not None:
                return self._serve_cached(actor, prepared, grant, cached)
            if prepared.dataset.policy.access == "restricted":
                return self._hold(actor, prepared, grant)
            plan = self._plan(prepared)
            query_id = self._charge(actor, prepared, grant_id=grant.id)
        except DomainError as exc:
            self._denied(actor, "query", exc, request)
            raise
        return self._release(actor, prepared, plan, query_id)

    def _grant_and_cached(self, actor: Principal, prepared: Prepared) -> tuple[Any, Any]:
        """The caller's grant and any answer already released under it for this query.

        A read transaction serves the usual case; the serialised write transaction is taken
        only when an open dataset must grant itself (and then checks again under the lock).
        """
        rec = prepared.dataset
        with self.store.read() as conn:
            try:
                grant = self.ledger.usable_grant(conn, actor, rec.name)
            except GrantRequired:
                if rec.policy.access != "open":
                    raise
            else:
                return grant, self._cached(conn, grant.id, prepared.key)
        with self.store.write() as conn:
            grant = self._grant_for(conn, actor, rec)
            return grant, self._cached(conn, grant.id, prepared.key)

    def _grant_for(self, conn: Connection, actor: Principal, rec: DatasetRecord) -> Any:
        try:
            return self.ledger.usable_grant(conn, actor, rec.name)
        except GrantRequired:
            if rec.policy.access != "open" or access.has_revoked_grant(conn, actor, rec.name):
                raise
        return access.auto_grant(conn, audit=self.audit, ledger=self.ledger, actor=actor, rec=rec)

    def _cached(self, conn: Connection, grant_id: str, key: str) -> Any:
        return conn.execute(select(t.queries).where(and_(
            t.queries.c.grant_id == grant_id, t.queries.c.query_key == key,
            t.queries.c.status == "released")).order_by(t.queries.c.created_at)).first()

    def _serve_cached(self, actor: Principal, prepared: Prepared, grant: Any,
                      cached: Any) -> dict[str, Any]:
        result = json.loads(cached.result_json)
        self.audit.record(action="query", outcome="ok", actor=actor, dataset=prepared.dataset.name,
                          grant_id=grant.id, request_id=grant.request_id, query_id=cached.id,
                          epsilon_units=0, delta_units=0,
                          detail={**prepared.audit_detail(), "cached": True,
                                  "result_sha256": result_hash(result["columns"], result["rows"])})
        rows = post_process(prepared.spec, result["columns"], result["rows"])
        return self._response(cached, result["columns"], rows, json.loads(cached.accuracy_json),
                              cached=True, budget=self._budget(grant))

    def _hold(self, actor: Principal, prepared: Prepared, grant: Any) -> dict[str, Any]:
        """Restricted data: record the query for review; nothing computed, nothing charged."""
        query_id = new_id()
        with self.store.write() as conn:
            self._insert(conn, actor, prepared, grant.id, query_id, status="pending_review")
            self.audit.append(conn, action="query.submit", outcome="ok", actor=actor,
                              dataset=prepared.dataset.name, grant_id=grant.id, query_id=query_id,
                              request_id=grant.request_id, epsilon_units=0, delta_units=0,
                              detail={**prepared.audit_detail(), "status": "pending_review",
                                      "request_id": grant.request_id})
        return self.get(actor, query_id)

    def _insert(self, conn: Connection, actor: Principal, prepared: Prepared, grant_id: str,
                query_id: str, *, status: str) -> None:
        conn.execute(insert(t.queries).values(
            id=query_id, username=actor.username, dataset=prepared.dataset.name,
            dataset_version=prepared.dataset.version, grant_id=grant_id, query_key=prepared.key,
            spec_json=canonical_json(prepared.spec.to_json()), sql_text=prepared.request.sql,
            status=status, epsilon_units=prepared.loss.epsilon_units,
            delta_units=prepared.loss.delta_units, created_at=iso(now())))

    def _charge(self, actor: Principal, prepared: Prepared, *, grant_id: str,
                query_id: str | None = None, reviewer: Principal | None = None) -> str:
        """Reserve the cost and write the charge's audit entry, in one committed transaction."""
        with self.store.write() as conn:
            grant = conn.execute(select(t.grants).where(t.grants.c.id == grant_id)).one()
            if grant.status != "active":
                raise GrantRequired(f"grant {grant_id} was {grant.status}; nothing was charged")
            if parse_iso(grant.expires_at) <= now():
                raise GrantExpired(f"grant {grant_id} has expired; nothing was charged")
            self.ledger.charge(conn, grant=grant, dataset=prepared.dataset, cost=prepared.loss)
            if query_id is None:
                query_id = new_id()
                self._insert(conn, actor, prepared, grant_id, query_id, status="running")
            else:
                held = conn.execute(update(t.queries).where(and_(
                    t.queries.c.id == query_id, t.queries.c.status == "pending_review")).values(
                    status="running", reviewed_by=reviewer.username if reviewer else None)).rowcount
                if not held:
                    raise Conflict("this query was decided meanwhile")
            self.audit.append(conn, action="query.charge", outcome="ok",
                              actor=actor, dataset=prepared.dataset.name,
                              grant_id=grant_id, query_id=query_id, request_id=grant.request_id,
                              epsilon_units=prepared.loss.epsilon_units,
                              delta_units=prepared.loss.delta_units,
                              detail={**prepared.audit_detail(), "request_id": grant.request_id,
                                      "reviewed_by": reviewer.username if reviewer else None})
        return query_id

    def _release(self, actor: Principal, prepared: Prepared, plan: Plan, query_id: str,
                 reviewer: Principal | None = None) -> dict[str, Any]:
        try:
            release = plan.release()
        except Exception as exc:
            self._fail(actor, prepared, query_id, exc)
            raise InternalError("the query failed after its budget was reserved; the charge "
                                "stands because data may have been read") from exc
        accuracy = {"alpha": ALPHA, **release.accuracy}
        digest = result_hash(release.columns, release.rows)
        try:
            with self.store.write() as conn:
                conn.execute(update(t.queries).where(t.queries.c.id == query_id).values(
                    status=next_state(QUERY_TRANSITIONS, "running", "finish", "query"),
                    result_json=canonical_json({"columns": release.columns, "rows": release.rows}),
                    accuracy_json=canonical_json(accuracy), finished_at=iso(now())))
                row = conn.execute(select(t.queries).where(t.queries.c.id == query_id)).one()
                grant = conn.execute(select(t.grants).where(t.grants.c.id == row.grant_id)).one()
                self.audit.append(conn, action="query.release", outcome="ok", actor=actor,
                                  dataset=prepared.dataset.name, grant_id=row.grant_id,
                                  query_id=query_id, request_id=grant.request_id,
                                  detail={"result_sha256": digest, "rows": len(release.rows),
                                          "reviewed_by": reviewer.username if reviewer else None})
        except SQLAlchemyError as exc:
            # Not stored, not audited: so not released. Record the failure if the store lets us.
            with contextlib.suppress(SQLAlchemyError):
                self._fail(actor, prepared, query_id, exc)
            raise translate(exc) from exc
        rows = post_process(prepared.spec, release.columns, release.rows)
        return self._response(row, release.columns, rows, accuracy, cached=False,
                              budget=self._budget(grant))

    def _fail(self, actor: Principal, prepared: Prepared, query_id: str, exc: Exception) -> None:
        log.exception("release failed for query %s", query_id)
        with self.store.write() as conn:
            conn.execute(update(t.queries).where(t.queries.c.id == query_id).values(
                status="error", error=type(exc).__name__, finished_at=iso(now())))
            self.audit.append(conn, action="query.release", outcome="error", actor=actor,
                              dataset=prepared.dataset.name, query_id=query_id,
                              detail={"error": type(exc).__name__})

    @staticmethod
    def _response(row: Any, columns: list[str], rows: list[list[Any]], accuracy: dict[str, Any],
                  *, cached: bool, budget: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "id": row.id, "status": "released", "cached": cached, "dataset": row.dataset,
            "columns": columns, "rows": rows, "accuracy": accuracy,
            "epsilon_charged": 0.0 if cached else row.epsilon_units / 1e9,
            "delta_charged": 0.0 if cached else row.delta_units / DELTA_SCALE,
            "budget": budget,
        }

    # -- reading and reviewing -----------------------------------------------------------

    def _row(self, conn: Connection, actor: Principal, query_id: str) -> Any:
        row = conn.execute(select(t.queries).where(t.queries.c.id == query_id)).first()
        if row is None or (actor.role not in ("admin", "auditor") and row.username != actor.username):
            raise NotFound(f"no query {query_id}")
        return row

    def view(self, row: Any, grant: Any = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": row.id, "user": row.username, "dataset": row.dataset, "status": row.status,
            "spec": json.loads(row.spec_json), "sql": row.sql_text,
            "epsilon": row.epsilon_units / 1e9, "delta": row.delta_units / DELTA_SCALE,
            "grant_id": row.grant_id, "request_id": grant.request_id if grant else None,
            "created_at": row.created_at, "finished_at": row.finished_at,
            "reviewed_by": row.reviewed_by, "review_note": row.review_note,
            "dataset_version": row.dataset_version,
        }
        if row.status == "released" and row.result_json:
            result = json.loads(row.result_json)
            out.update(columns=result["columns"], rows=result["rows"],
                       accuracy=json.loads(row.accuracy_json))
        return out

    def get(self, actor: Principal, query_id: str) -> dict[str, Any]:
        """One query; admins and auditors also get its trace to the grant and the decision."""
        with self.store.read() as conn:
            row = self._row(conn, actor, query_id)
            grant = conn.execute(select(t.grants).where(t.grants.c.id == row.grant_id)).first()
            out = self.view(row, grant)
            if actor.role in ("admin", "auditor"):
                out["trace"] = access.trace(conn, grant)
        if actor.role == "admin" and row.status == "pending_review":
            out["review"] = self._review_preview(row, out["trace"])
        return out

    def _review_preview(self, row: Any, trace: dict[str, Any]) -> dict[str, Any]:
        """What a reviewer weighs before releasing: cost and expected accuracy; spends nothing."""
        application = trace.get("application") or {}
        preview: dict[str, Any] = {
            "epsilon": row.epsilon_units / 1e9, "delta": row.delta_units / DELTA_SCALE,
            "purpose": application.get("purpose"), "accuracy": None, "problem": None,
        }
        try:
            prepared = self.prepare(self._stored_request(row))
            if prepared.dataset.version != row.dataset_version:
                raise Conflict("the dataset changed since this query was submitted")
            preview["accuracy"] = {"alpha": ALPHA, **self._plan(prepared).accuracy(ALPHA)}
        except DomainError as exc:
            preview["problem"] = exc.message
        return preview

    def _stored_request(self, row: Any) -> QueryRequest:
        from gateway.services.specs import spec_from_json

        return QueryRequest(spec=spec_from_json(json.loads(row.spec_json)),
                            epsilon=row.epsilon_units / 1e9, delta=row.delta_units / DELTA_SCALE,
                            sql=row.sql_text)

    def list(self, actor: Principal, *, status: str | None = None,
             dataset: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        conds = [] if actor.role in ("admin", "auditor") else [t.queries.c.username == actor.username]
        if status:
            conds.append(t.queries.c.status == status)
        if dataset:
            conds.append(t.queries.c.dataset == dataset)
        with self.store.read() as conn:
            rows = conn.execute(select(t.queries).where(*conds)
                                .order_by(t.queries.c.created_at.desc()).limit(limit)).all()
        return [self.view(r) for r in rows]

    def _pending(self, actor: Principal, query_id: str, action: str) -> tuple[Any, Prepared]:
        actor.require("admin", full_scope=True)
        with self.store.read() as conn:
            row = self._row(conn, actor, query_id)
        next_state(QUERY_TRANSITIONS, row.status, action, "query")
        if row.username == actor.username:
            raise Forbidden("you cannot review your own query")
        prepared = self.prepare(self._stored_request(row))
        if prepared.dataset.version != row.dataset_version:
            raise Conflict("the dataset changed since this query was submitted; reject it and "
                           "ask the analyst to resubmit")
        return row, prepared

    def release_review(self, actor: Principal, query_id: str, note: str = "") -> dict[str, Any]:
        """An admin releases a held query: compute, charge and audit in one step."""
        try:
            row, prepared = self._pending(actor, query_id, "release")
            analyst = self._analyst(row.username)
            plan = self._plan(prepared)
            self._charge(analyst, prepared, grant_id=row.grant_id, query_id=query_id,
                         reviewer=actor)
        except DomainError as exc:
            self.audit.denied(actor, "query.review", exc, query_id=query_id[:32])
            raise
        self._release(analyst, prepared, plan, query_id, reviewer=actor)
        if note:
            with self.store.write() as conn:
                conn.execute(update(t.queries).where(t.queries.c.id == query_id)
                             .values(review_note=note))
        return self.get(actor, query_id)

    def reject_review(self, actor: Principal, query_id: str, note: str) -> dict[str, Any]:
        try:
            row, _prepared = self._pending(actor, query_id, "reject")
            if not note.strip():
                raise InvalidRequest("rejecting a query needs a note for the analyst")
            with self.store.write() as conn:
                updated = conn.execute(update(t.queries).where(and_(
                    t.queries.c.id == query_id, t.queries.c.status == "pending_review")).values(
                    status="rejected", reviewed_by=actor.username, review_note=note,
                    finished_at=iso(now()))).rowcount
                if not updated:
                    raise Conflict("this query was decided meanwhile")
                request_id = conn.execute(select(t.grants.c.request_id)
                                          .where(t.grants.c.id == row.grant_id)).scalar()
                self.audit.append(conn, action="query.review", outcome="ok", actor=actor,
                                  dataset=row.dataset, grant_id=row.grant_id, query_id=query_id,
                                  request_id=request_id,
                                  epsilon_units=0, delta_units=0,
                                  detail={"decision": "rejected", "note": note,
                                          "analyst": row.username})
        except DomainError as exc:
            self.audit.denied(actor, "query.review", exc, query_id=query_id[:32])
            raise
        return self.get(actor, query_id)

    def _analyst(self, username: str) -> Principal:
        with self.store.read() as conn:
            user = conn.execute(select(t.users).where(t.users.c.username == username)).one()
        return Principal(user.username, user.role, user.org)

"""Running DP queries, in the design's order, top to bottom:

    validate -> plan -> admit (one transaction: grant or auto-grant, cache, charge, audit)
             -> compute -> finish (one transaction: release record, audit) -> response

The transactions are the shared release unit of work (:mod:`gateway.services.releases`);
this module adds what is particular to a DP query: the spec, the OpenDP plan, the answer.
Restricted datasets hold a query for an admin's review, who releases it the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Protocol

from gateway.adapters.db import Store
from gateway.adapters.sql import compile_sql
from gateway.domain.audit import canonical_json
from gateway.domain.budget import Budget
from gateway.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    GrantExpired,
    GrantRequired,
    InvalidRequest,
    NotFound,
)
from gateway.domain.paging import Found, Window
from gateway.domain.query import QuerySpec, public_columns, query_key, validate
from gateway.domain.records import Grant, QueryRecord
from gateway.domain.workflow import ANALYST_ROLES, QUERY_TRANSITIONS, next_state
from gateway.i18n import _l
from gateway.services import accounting
from gateway.services.audit import AuditLog
from gateway.services.catalog import Catalog, DatasetRecord
from gateway.services.common import READERS, Principal
from gateway.services.fits import FitService, kind_of
from gateway.services.grants import Ledger
from gateway.services.releases import Admitted, Releases, Result, Ticket
from gateway.services.specs import spec_from_json
from gateway.services.views import budget_view, query_view, trace

ALPHA = 0.05
FAILED = _l("the query failed after its budget was reserved; the charge stands because data may "
            "have been read")


class Plan(Protocol):
    output_columns: list[str]

    def accuracy(self, alpha: float = ALPHA) -> dict[str, float | None]: ...
    def release(self) -> Any: ...


class Engine(Protocol):
    def plan(self, spec: QuerySpec, policy: Any, *, parquet: Any, version: str,
             loss: Budget) -> Plan: ...


@dataclass(frozen=True)
class QueryRequest:
    """A query as asked: a spec, its JSON ``body`` or DP SQL (built and compiled in
    :meth:`QueryService.prepare`, so a refused spec or SQL text is audited too), and the
    loss asked for."""

    spec: QuerySpec | None
    epsilon: Any
    delta: Any = None
    sql: str | None = None
    body: dict[str, Any] | None = None
    rho: Any = None  # zCDP datasets: the loss in rho instead of epsilon
    idempotency_key: str | None = None  # the Idempotency-Key header: a retry's first attempt

    def audit_fields(self) -> dict[str, Any]:
        detail: dict[str, Any] = {}
        if self.spec is not None:
            detail["spec"] = self.spec.to_json()
        elif self.body is not None:
            detail["spec"] = self.body
        if self.sql is not None:
            detail["sql"] = self.sql
        dataset = self.spec.dataset if self.spec else (self.body or {}).get("dataset")
        return {"dataset": str(dataset)[:63] if dataset else None, "detail": detail}


@dataclass(frozen=True)
class Prepared:
    """A validated query: its dataset, its loss, and its ticket for the release unit of work."""

    spec: QuerySpec
    sql: str | None
    dataset: DatasetRecord
    loss: Budget
    idempotency_key: str | None = None

    @property
    def ticket(self) -> Ticket:
        detail: dict[str, Any] = {"spec": self.spec.to_json(), "version": self.dataset.version}
        if self.sql is not None:
            detail["sql"] = self.sql
        return Ticket(dataset=self.dataset, cost=self.loss,
                      key=query_key(self.spec, self.loss, self.dataset.version),
                      spec_json=canonical_json(self.spec.to_json()), sql=self.sql,
                      detail=detail, idempotency_key=self.idempotency_key)


def stored_request(record: QueryRecord) -> QueryRequest:
    """A stored query (held, or orphaned by a crash) as its request again."""
    return QueryRequest(spec=spec_from_json(json.loads(record.spec_json)),
                        epsilon=None if record.cost.rho_units else record.cost.epsilon,
                        delta=record.cost.delta, sql=record.sql_text,
                        rho=record.cost.rho if record.cost.rho_units else None)


def post_process(spec: QuerySpec, columns: list[str], rows: list[list[Any]]) -> list[list[Any]]:
    """ORDER BY / LIMIT on the released table (post-processing costs no privacy)."""
    out = list(rows)
    for column, desc in reversed(spec.order_by):
        idx = columns.index(column)
        out.sort(key=lambda r: (r[idx] is None, r[idx]), reverse=desc)
    return out[: spec.limit] if spec.limit is not None else out


def relabel(result: Result, columns: list[str]) -> Result:
    """A stored answer under this query's own output names (a replay may alias differently;
    the computation, so the key, is the same)."""
    if len(columns) != len(result.columns) or columns == result.columns:
        return result
    names = dict(zip(result.columns, columns, strict=True))
    accuracy = {names.get(k, k): v for k, v in result.accuracy.items()}
    return Result(list(columns), result.rows, accuracy)


class QueryService:
    def __init__(self, store: Store, audit: AuditLog, catalog: Catalog, ledger: Ledger,
                 engine: Engine, *, runner: str | None = None) -> None:
        self.store, self.catalog, self.ledger, self.engine = store, catalog, ledger, engine
        self.refusals = audit.refusals
        self.audit = audit
        self.releases = Releases(store, audit, ledger, runner=runner)
        # synthetic data and models: the same unit of work; held ones are reviewed here too
        self.fits = FitService(store, audit, catalog, ledger, self.releases)

    # -- the steps -----------------------------------------------------------------------

    def prepare(self, request: QueryRequest) -> Prepared:
        """Validate: compile SQL, check the spec against the policy, resolve the loss."""
        if request.spec is not None:
            spec = request.spec
        elif request.body is not None:
            spec = spec_from_json(request.body)
        else:
            spec = compile_sql(request.sql or "", columns=self._public_columns)
        rec = self.catalog.record(spec.dataset)
        validate(spec, rec.policy)
        loss = accounting.query_loss(spec, rec.policy, epsilon=request.epsilon,
                                     delta=request.delta, rho=request.rho)
        return Prepared(spec, request.sql, rec, loss, request.idempotency_key)

    def _public_columns(self, dataset: str) -> list[str]:
        return public_columns(self.catalog.record(dataset).policy)

    def plan(self, prepared: Prepared) -> Plan:
        rec = prepared.dataset
        return self.engine.plan(prepared.spec, rec.policy, parquet=rec.location,
                                version=rec.version, loss=prepared.loss)

    def compute(self, actor: Principal, prepared: Prepared, plan: Plan,
                admitted: Admitted) -> Result:
        """Read the data and draw the noise (the charge is committed already, and stands)."""
        release = self.releases.compute_charged(actor, admitted, plan.release, failed=FAILED)
        return Result(release.columns, release.rows, {"alpha": ALPHA, **release.accuracy})

    # -- use cases -----------------------------------------------------------------------

    def run(self, actor: Principal, request: QueryRequest) -> dict[str, Any]:
        with self.refusals(actor, "query", **request.audit_fields()):
            actor.require(*ANALYST_ROLES)
            prepared = self.prepare(request)
            plan = self.plan(prepared)
            restricted = prepared.dataset.policy.access == "restricted"
            ticket = replace(prepared.ticket, review_json=_held_review(plan)) if restricted \
                else prepared.ticket
            admitted = self.releases.admit(actor, ticket, review=restricted)
        if admitted.replayed:
            return self._replayed(actor, prepared, admitted)
        if admitted.held:
            return self.view(actor, admitted.record)
        if admitted.cached:
            return self._answer(prepared, admitted.record, admitted.grant, cached=True)
        result = self.compute(actor, prepared, plan, admitted)
        record = self.releases.finish(actor, admitted, prepared.ticket, result)
        return self._answer(prepared, record, admitted.grant, cached=False)

    def preview(self, actor: Principal, request: QueryRequest) -> dict[str, Any]:
        """Cost and expected accuracy of a query; spends nothing."""
        with self.refusals(actor, "query.preview", **request.audit_fields()):
            actor.require(*ANALYST_ROLES)
            prepared = self.prepare(request)
            accuracy = self.plan(prepared).accuracy(ALPHA)
        budget = None
        with self.store.reading() as tx:
            try:
                budget = budget_view(self.ledger.usable_grant(tx, actor, prepared.dataset.name))
            except (GrantRequired, GrantExpired):
                budget = None
        self.audit.record(action="query.preview", outcome="ok", actor=actor,
                          dataset=prepared.dataset.name, detail=prepared.ticket.detail)
        return {
            "dataset": prepared.dataset.name, "columns": prepared.spec.output_columns,
            "epsilon": prepared.loss.epsilon_float, "delta": prepared.loss.delta_float,
            **accounting.loss_fields(prepared.loss, prepared.dataset.policy.delta),
            "accuracy": {"alpha": ALPHA, **accuracy},
            "access": prepared.dataset.policy.access, "budget": budget,
        }

    def release_review(self, actor: Principal, query_id: str, note: str = "") -> dict[str, Any]:
        """An admin releases a held query: validate and plan again, charge + audit under the
        admin's name (one transaction), compute, record + audit (one transaction). A held
        fit (synthetic data, a model) takes the same steps in the fit service."""
        with self.refusals(actor, "query.review", query_id=query_id[:32]):
            record = self._decidable(actor, query_id, "release")
            if kind_of(record.spec_json):
                approved = self.fits.approve_held(actor, record, note)
            else:
                prepared = self._stored(record)
                plan = self.plan(prepared)
                admitted = self.releases.approve_held(actor, prepared.ticket, query_id,
                                                      analyst=record.username, note=note)
        if kind_of(record.spec_json):
            self.fits.finish_held(actor, approved)
        else:
            result = self.compute(actor, prepared, plan, admitted)
            self.releases.finish(actor, admitted, prepared.ticket, result)
        return self.get(actor, query_id)

    def reject_review(self, actor: Principal, query_id: str, note: str) -> dict[str, Any]:
        with self.refusals(actor, "query.review", query_id=query_id[:32]):
            record = self._decidable(actor, query_id, "reject")
            if not note.strip():
                raise InvalidRequest(_l("rejecting a query needs a note for the analyst"))
            self.releases.reject_held(actor, record.id, note=note)
        return self.get(actor, query_id)

    # -- reading -------------------------------------------------------------------------

    def get(self, actor: Principal, query_id: str) -> dict[str, Any]:
        """One query; admins and auditors also get its trace to the grant and the decision."""
        with self.refusals(actor, "query.show", query_id=query_id[:32]):
            with self.store.reading() as tx:
                record = self._visible(actor, tx.queries.get(query_id), query_id)
        return self.view(actor, record)

    def view(self, actor: Principal, record: QueryRecord) -> dict[str, Any]:
        with self.store.reading() as tx:
            grant = tx.grants.get(record.grant_id)
            out = query_view(record, grant)
            if actor.role in READERS:
                out["trace"] = trace(tx, grant)
        if actor.role == "admin" and record.status == "pending_review":
            out["review"] = self._review_preview(record, out["trace"])
        return out

    def list(self, actor: Principal, *, status: str | None = None,
             dataset: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        with self.refusals(actor, "query.list", detail={"status": (status or "")[:20]}):
            self._check_status(status)
        with self.store.reading() as tx:
            records = tx.queries.list(
                username=None if actor.role in READERS else actor.username,
                status=status, dataset=dataset, limit=limit)
        return [query_view(r) for r in records]

    def page(self, actor: Principal, window: Window, *,
             status: str | None = None) -> Found[dict[str, Any]]:
        """One page of the queries ``actor`` may see (as :meth:`list`), searched in the store."""
        with self.refusals(actor, "query.list", detail={"status": (status or "")[:20]}):
            self._check_status(status)
        with self.store.reading() as tx:
            found = tx.queries.search(
                window, username=None if actor.role in READERS else actor.username,
                status=status)
        return found.map(query_view)

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _check_status(status: str | None) -> None:
        if status is not None and status not in QUERY_TRANSITIONS:
            raise InvalidRequest(_l("status must be one of %(query_states)s",
                                    query_states=", ".join(QUERY_TRANSITIONS)))

    def _answer(self, prepared: Prepared, record: QueryRecord, grant: Grant, *,
                cached: bool) -> dict[str, Any]:
        stored = json.loads(record.result_json or "{}")
        result = relabel(Result(stored["columns"], stored["rows"],
                                json.loads(record.accuracy_json or "{}")),
                         prepared.spec.output_columns)
        charged = Budget() if cached else record.cost
        return {
            "id": record.id, "status": "released", "cached": cached, "dataset": record.dataset,
            "columns": result.columns,
            "rows": post_process(prepared.spec, result.columns, result.rows),
            "accuracy": result.accuracy, "epsilon_charged": charged.epsilon_float,
            "delta_charged": charged.delta_float, "budget": budget_view(grant),
            **self._zcdp_charged(record.cost, charged, grant),
        }

    def _replayed(self, actor: Principal, prepared: Prepared, admitted: Admitted) -> dict[str, Any]:
        """A retried request: the first attempt's answer, once it has one (waiting a while if
        it is still being computed, here, by another replica, or by recovery after a crash)."""
        record = self.releases.settled(admitted.record)
        if record.status == "released":
            return {**self._answer(prepared, record, admitted.grant, cached=False),
                    "replayed": True}
        return {**self.view(actor, record), "replayed": True}

    @staticmethod
    def _zcdp_charged(cost: Budget, charged: Budget, grant: Grant) -> dict[str, Any]:
        """A zCDP answer's charge in rho, and the epsilon it implies at the grant's delta."""
        if not cost.rho_units:
            return {"accounting": "pure"}
        delta = grant.conversion_delta.delta_float or None
        epsilon = accounting.epsilon_at(charged, delta) if delta and charged.rho_units else 0.0
        return {"accounting": "zcdp", "rho_charged": charged.rho_float,
                "epsilon_charged": epsilon, "conversion_delta": delta}

    @staticmethod
    def _visible(actor: Principal, record: QueryRecord | None, query_id: str) -> QueryRecord:
        if record is None or (actor.role not in READERS and record.username != actor.username):
            raise NotFound(_l("no query %(query_id)s", query_id=query_id))
        return record

    def _stored(self, record: QueryRecord) -> Prepared:
        """The held query as a request again (checked against today's policy and data)."""
        prepared = self.prepare(stored_request(record))
        if prepared.dataset.version != record.dataset_version:
            raise Conflict(_l(
                "the dataset changed since this query was submitted; reject it and ask the "
                "analyst to resubmit"))
        return prepared

    def _decidable(self, actor: Principal, query_id: str, action: str) -> QueryRecord:
        actor.require("admin", full_scope=True)
        with self.store.reading() as tx:
            record = self._visible(actor, tx.queries.get(query_id), query_id)
        next_state(QUERY_TRANSITIONS, record.status, action, "query")
        if record.username == actor.username:
            raise Forbidden(_l("you cannot review your own query"))
        return record

    def _review_preview(self, record: QueryRecord, trace: dict[str, Any]) -> dict[str, Any]:
        """What a reviewer weighs before releasing: cost and expected accuracy; spends nothing
        and plans nothing (the accuracy was stored when the query was held)."""
        application = trace.get("application") or {}
        preview: dict[str, Any] = {
            "epsilon": record.cost.epsilon_float, "delta": record.cost.delta_float,
            "purpose": application.get("purpose"), "accuracy": None, "problem": None,
        }
        if record.cost.rho_units:
            preview["rho"] = record.cost.rho_float
        try:
            if kind_of(record.spec_json):  # a fit: what will leave (no accuracy to show)
                preview.update(self.fits.review_summary(record))
            else:
                preview["accuracy"] = self._held_accuracy(record, self._stored(record))
        except DomainError as exc:
            preview["problem"] = exc.message
        return preview

    def _held_accuracy(self, record: QueryRecord, prepared: Prepared) -> dict[str, Any]:
        """The stored accuracy of a held query (``prepared``: checked against today's policy
        and data version, which the accuracy depends on alone). One held before the store
        kept it is planned once here and its accuracy stored for the next reviewer."""
        if record.review_json is not None:
            return dict(json.loads(record.review_json)["accuracy"])
        review_json = _review_json(self.plan(prepared))
        with self.store.writing() as tx:
            tx.queries.keep_review(record.id, review_json)
        return dict(json.loads(review_json)["accuracy"])


def _held_review(plan: Plan) -> str | None:
    """:func:`_review_json`, or None if it fails (the review page then says why)."""
    try:
        return _review_json(plan)
    except DomainError:
        return None


def _review_json(plan: Plan) -> str:
    """A held query's preview for its reviewers: the accuracy its release would have (it
    depends on the query, the policy and the loss, never on the data)."""
    return canonical_json({"accuracy": {"alpha": ALPHA, **plan.accuracy(ALPHA)}})


__all__ = ["ALPHA", "Engine", "Plan", "Prepared", "QueryRequest", "QueryService",
           "post_process", "relabel"]

"""DP synthetic data and DP models, released through the same unit of work as queries.

    validate -> plan (caps and refusals here: nothing charged) -> admit (grant or auto-grant,
    cache, hold for review or charge, audit) -> fit -> finish (record, audit) -> response

Only the kind-specific steps live here: the spec (:mod:`gateway.domain.fits`), the OpenDP
plan (``gateway/adapters/dp/synth.py``, ``models.py``) and the answer's shape. Grants,
charges, the release cache, reviews and the audit trail are
:class:`gateway.services.releases.Releases`, shared with DP queries. A fit is stored as a
query record whose spec carries its ``kind``; its released table is the synthetic rows, or
the model's coefficients / components, and everything else the answer holds (marginals,
notes, the model's fields) is stored beside the accuracy under ``release``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.adapters.db import Store
from gateway.domain.audit import canonical_json
from gateway.domain.budget import Budget
from gateway.domain.errors import GrantExpired, GrantRequired, UnsupportedQuery
from gateway.domain.fits import DEFAULT_BINS, ModelSpec, SyntheticSpec
from gateway.domain.records import Grant, QueryRecord
from gateway.domain.text import _l, localize
from gateway.domain.workflow import ANALYST_ROLES
from gateway.services.audit import AuditLog
from gateway.services.catalog import Catalog, DatasetRecord
from gateway.services.common import Principal
from gateway.services.grants import Ledger
from gateway.services.releases import Admitted, Releases, Result, Ticket
from gateway.services.views import budget_view

if TYPE_CHECKING:  # the OpenDP adapters load on first use (CLI commands never pay for them)
    from gateway.adapters.dp.models import FittedModel
    from gateway.adapters.dp.synth import SyntheticRelease, Tuning

ALPHA = 0.05
FAILED = _l("the fit failed after its budget was reserved; the charge stands because data may "
            "have been read")
FIT_KINDS = ("synthetic", "linear_regression", "pca")
Spec = SyntheticSpec | ModelSpec
FitPlan = Any  # SyntheticPlan | ModelPlan (imported on first use)


def kind_of(spec_json: str) -> str | None:
    """The fit kind of a stored spec, or None for a DP query."""
    try:
        kind = json.loads(spec_json).get("kind")
    except (ValueError, AttributeError):
        return None
    return kind if kind in FIT_KINDS else None


def spec_of(canonical: dict[str, Any]) -> Spec:
    if canonical.get("kind") == "synthetic":
        return SyntheticSpec(canonical["dataset"], tuple(canonical["columns"]), canonical["rows"],
                             canonical["method"], canonical["bins"])
    return ModelSpec(canonical["dataset"], canonical["kind"], x=tuple(canonical.get("x") or ()),
                     y=canonical.get("y"), columns=tuple(canonical.get("columns") or ()),
                     components=canonical.get("components"))


def spec_from_body(release: str, body: dict[str, Any]) -> Spec:
    """A request body (``release``: "synthetic" or "model") as a checked spec."""
    if release == "synthetic":
        return SyntheticSpec(body["dataset"], tuple(body.get("columns") or ()), body["rows"],
                             body.get("method", "aim"), body.get("bins", DEFAULT_BINS))
    return ModelSpec(body["dataset"], body["kind"], x=tuple(body.get("x") or ()), y=body.get("y"),
                     columns=tuple(body.get("columns") or ()), components=body.get("components"))


@dataclass(frozen=True)
class FitRequest:
    """A fit as asked: the body (its spec is built and checked inside the service, so a
    refused one is audited too), or a stored spec (a held fit), and the loss asked for."""

    release: str  # "synthetic" | "model"
    body: dict[str, Any]
    epsilon: Any
    delta: Any = None
    spec: Spec | None = None
    idempotency_key: str | None = None  # the Idempotency-Key header: a retry's first attempt

    def audit_fields(self) -> dict[str, Any]:
        dataset = self.body.get("dataset")
        return {"dataset": str(dataset)[:63] if dataset else None,
                "detail": {"spec": self.body}}


@dataclass(frozen=True)
class Prepared:
    spec: Spec
    dataset: DatasetRecord
    loss: Budget
    idempotency_key: str | None = None

    @property
    def ticket(self) -> Ticket:
        canonical = self.spec.canonical()
        key_source = canonical_json({"spec": canonical, "version": self.dataset.version,
                                     "epsilon": self.loss.epsilon_units,
                                     "delta": self.loss.delta_units})
        return Ticket(dataset=self.dataset, cost=self.loss,
                      key=hashlib.sha256(key_source.encode()).hexdigest(),
                      spec_json=canonical_json(canonical),
                      detail={"kind": self.spec.kind, "spec": canonical,
                              "version": self.dataset.version,
                              "summary": self.spec.summary().english},
                      idempotency_key=self.idempotency_key)


@dataclass(frozen=True)
class Approved:
    prepared: Prepared
    plan: Any
    admitted: Admitted


class FitService:
    def __init__(self, store: Store, audit: AuditLog, catalog: Catalog, ledger: Ledger,
                 releases: Releases, *, tuning: Tuning | None = None) -> None:
        self.store, self.audit, self.catalog, self.ledger = store, audit, catalog, ledger
        self.releases, self.tuning = releases, tuning
        self.refusals = audit.refusals

    # -- the steps -----------------------------------------------------------------------

    def prepare(self, request: FitRequest) -> Prepared:
        spec = request.spec or spec_from_body(request.release, request.body)
        rec = self.catalog.record(spec.dataset)
        if rec.policy.engine != "polars":
            raise UnsupportedQuery(_l(
                "synthetic data and models are not available on dataset %(dataset)s, which the "
                "Spark engine answers (counts, sums, means and histograms only)",
                dataset=rec.name))
        if rec.policy.accounting != "pure":
            raise UnsupportedQuery(_l(
                "synthetic data and models are charged in (epsilon, delta); dataset %(dataset)s "
                "keeps its budgets in zCDP (rho)", dataset=rec.name))
        delta = 0 if request.delta is None else request.delta
        return Prepared(spec, rec, Budget.query_loss(request.epsilon, delta),
                        request.idempotency_key)

    def plan(self, prepared: Prepared) -> FitPlan:
        from gateway.adapters.dp.models import plan_pca, plan_regression
        from gateway.adapters.dp.synth import plan_synthetic

        spec, rec, loss = prepared.spec, prepared.dataset, prepared.loss
        if isinstance(spec, SyntheticSpec):
            return plan_synthetic(rec.policy, parquet=rec.parquet, version=rec.version,
                                  columns=spec.columns, rows=spec.rows, method=spec.method,
                                  bins=spec.bins, loss=loss, tuning=self.tuning)
        if spec.kind == "linear_regression":
            return plan_regression(rec.policy, parquet=rec.parquet, x=spec.x, y=str(spec.y),
                                   loss=loss)
        return plan_pca(rec.policy, parquet=rec.parquet, columns=spec.columns,
                        components=int(spec.components or 0), loss=loss)

    def compute(self, actor: Principal, prepared: Prepared, plan: FitPlan,
                admitted: Admitted) -> Result:
        """Fit on the data (the charge is committed already, and stands)."""
        released = self.releases.compute_charged(actor, admitted, plan.release, failed=FAILED)
        return as_result(released, plan.accuracy(ALPHA))

    # -- use cases -----------------------------------------------------------------------

    def run(self, actor: Principal, request: FitRequest) -> dict[str, Any]:
        with self.refusals(actor, request.release, **request.audit_fields()):
            actor.require(*ANALYST_ROLES)
            prepared = self.prepare(request)
            plan = self.plan(prepared)
            admitted = self.releases.admit(actor, prepared.ticket,
                                           review=prepared.dataset.policy.access == "restricted")
        if admitted.replayed:  # a retry: the first attempt, as it stands now
            record = self.releases.settled(admitted.record)
            if record.status == "released":
                return {**answer(record, admitted.grant, cached=False), "replayed": True}
            return {**self.held_view(record, admitted.grant), "replayed": True}
        if admitted.held:
            return self.held_view(admitted.record, admitted.grant)
        if admitted.cached:
            return answer(admitted.record, admitted.grant, cached=True)
        result = self.compute(actor, prepared, plan, admitted)
        record = self.releases.finish(actor, admitted, prepared.ticket, result)
        return answer(record, admitted.grant, cached=False)

    def preview(self, actor: Principal, request: FitRequest) -> dict[str, Any]:
        """Cost (OpenDP's map of what would run) and accuracy where OpenDP gives one."""
        action = f"{request.release}.preview"
        with self.refusals(actor, action, **request.audit_fields()):
            actor.require(*ANALYST_ROLES)
            prepared = self.prepare(request)
            plan = self.plan(prepared)
            accuracy = plan.accuracy(ALPHA)
        with self.store.reading() as tx:
            try:
                budget = budget_view(self.ledger.usable_grant(tx, actor, prepared.dataset.name))
            except (GrantRequired, GrantExpired):
                budget = None
        self.audit.record(action=action, outcome="ok", actor=actor,
                          dataset=prepared.dataset.name, detail=prepared.ticket.detail)
        return {"dataset": prepared.dataset.name, "kind": prepared.spec.kind,
                "epsilon": prepared.loss.epsilon_float, "delta": prepared.loss.delta_float,
                "spent_by_map": {"epsilon": plan.spent[0], "delta": plan.spent[1]},
                "accuracy": {"alpha": ALPHA, **accuracy},
                "summary": localize(prepared.spec.summary()),
                "access": prepared.dataset.policy.access, "budget": budget}

    def prepare_stored(self, record: QueryRecord) -> Prepared:
        """A stored fit (held, or orphaned by a crash) prepared again against today's catalog."""
        spec = spec_of(json.loads(record.spec_json))
        release = "synthetic" if isinstance(spec, SyntheticSpec) else "model"
        return self.prepare(FitRequest(release, spec.canonical(), record.cost.epsilon,
                                       record.cost.delta, spec=spec))

    def approve_held(self, actor: Principal, record: QueryRecord, note: str) -> Approved:
        """An admin releases a held fit (the query review checked the admin, the state and
        separation of duties): plan again, then charge + audit under the admin's name."""
        prepared = self.prepare_stored(record)
        plan = self.plan(prepared)
        admitted = self.releases.approve_held(actor, prepared.ticket, record.id,
                                              analyst=record.username, note=note)
        return Approved(prepared, plan, admitted)

    def finish_held(self, actor: Principal, approved: Approved) -> None:
        """Fit and record a released held fit (its charge is committed)."""
        result = self.compute(actor, approved.prepared, approved.plan, approved.admitted)
        self.releases.finish(actor, approved.admitted, approved.prepared.ticket, result)

    def review_summary(self, record: QueryRecord) -> dict[str, Any]:
        """What will leave if an admin releases this held fit."""
        spec = spec_of(json.loads(record.spec_json))
        return {"kind": spec.kind, "summary": localize(spec.summary())}

    def held_view(self, record: QueryRecord, grant: Grant) -> dict[str, Any]:
        return {"id": record.id, "status": record.status, "cached": False,
                "kind": kind_of(record.spec_json), "dataset": record.dataset,
                "epsilon_charged": 0.0, "delta_charged": 0.0, "budget": budget_view(grant)}


def as_result(released: SyntheticRelease | FittedModel, accuracy: dict[str, Any]) -> Result:
    """A fit as the table the store keeps, the rest under accuracy["release"]."""
    from gateway.adapters.dp.synth import SyntheticRelease

    acc: dict[str, Any] = {"alpha": ALPHA, **accuracy}
    if isinstance(released, SyntheticRelease):
        acc["release"] = {"kind": "synthetic", "method": released.method, "note": released.note,
                          "marginals": released.marginals, "categories": released.categories}
        return Result(list(released.columns), released.rows, acc)
    values = dict(released.values)
    acc["release"] = {"kind": released.kind, **values}
    if released.kind == "linear_regression":
        rows = [[name, coef] for name, coef in zip(values["x"], values["coef_"], strict=True)]
        return Result(["term", "coefficient"], [*rows, ["intercept", values["intercept_"]]], acc)
    columns = ["component", *values["feature_names_in_"], "explained_variance",
               "explained_variance_ratio"]
    rows = [[i + 1, *vector, var, ratio] for i, (vector, var, ratio) in enumerate(zip(
        values["components_"], values["explained_variance_"], values["explained_variance_ratio_"],
        strict=True))]
    return Result(columns, rows, acc)


def answer(record: QueryRecord, grant: Grant, *, cached: bool) -> dict[str, Any]:
    stored = json.loads(record.result_json or "{}")
    accuracy = json.loads(record.accuracy_json or "{}")
    fields = dict(accuracy.pop("release", {}) or {})
    if fields.get("note"):
        fields["note"] = localize(fields["note"])  # stored in English, shown in the reader's
    charged = Budget() if cached else record.cost
    return {"id": record.id, "status": "released", "cached": cached, "dataset": record.dataset,
            **fields, "kind": kind_of(record.spec_json),
            "columns": stored.get("columns", []), "rows": stored.get("rows", []),
            "accuracy": accuracy, "epsilon_charged": charged.epsilon_float,
            "delta_charged": charged.delta_float, "budget": budget_view(grant)}

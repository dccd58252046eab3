"""Data-use applications: analysts apply, admins decide; open datasets grant themselves.

    application: pending -> approved | rejected | withdrawn   (gateway.domain.workflow)

- ``open`` datasets approve an application at once (and the first query applies by
  itself, see ``auto_grant``), recorded as ``auto_approved`` with ``decided_by`` system.
  Two exceptions go to an admin instead: an application for an org grant (it commits
  a budget that other people share), and one from an analyst whose grant on that
  dataset was revoked (the admin revoked it for a reason).
- ``conditional`` and ``restricted`` datasets wait for an admin, never the applicant,
  who may lower epsilon and shorten days (never raise them) and must say why.
- Org grants: an enterprise analyst may ask for a grant to their whole org
  (``org_grant=True``); approved, it is one grant with ``grants.org`` set, whose
  budget every member of the org shares (charged race-free by the ledger).
  ``applications.org`` holds that beneficiary org, and is empty for a personal
  application; the applicant's own org is read from their account.

Every refusal is audited with outcome ``denied``; every decision is audited with its
``request_id`` and ``grant_id``, so an auditor can walk query -> grant -> application
-> decision -> applicant.
"""

from __future__ import annotations

from typing import Any

from gateway.adapters.db import Store, Tx
from gateway.domain.budget import Budget
from gateway.domain.errors import Conflict, InvalidRequest, NotFound
from gateway.domain.paging import Found, Window
from gateway.domain.records import Application, Grant
from gateway.domain.text import lazy_gettext as _l
from gateway.domain.workflow import (
    ANALYST_ROLES,
    APPLICATION_TRANSITIONS,
    check_not_own,
    next_state,
)
from gateway.services import accounting
from gateway.services.audit import AuditLog
from gateway.services.catalog import Catalog, DatasetRecord
from gateway.services.common import READERS, Principal, iso, new_id, now
from gateway.services.grants import DEFAULT_GRANT_DAYS, Ledger, default_delta_total, holder_org
from gateway.services.views import application_view, grant_view, query_summary

__all__ = ["AccessService"]

WHAT = "data-use application"  # in messages: "cannot approve a data-use application ..."
MIN_PURPOSE = 20
MAX_PURPOSE = 4000
CONTEXT_ROWS = 20


class AccessService:
    """Data-use applications and the decisions on them (API, web console and CLI).

    Each use case: validate -> one write transaction (state change, grant, audit) -> view.
    """

    def __init__(self, store: Store, audit: AuditLog, catalog: Catalog, ledger: Ledger) -> None:
        self.store, self.audit, self.catalog, self.ledger = store, audit, catalog, ledger
        self.refusals = audit.refusals

    # -- applying ------------------------------------------------------------------------

    def apply(
        self, actor: Principal, *, dataset: str, purpose: str, epsilon: Any = None,
        days: int | None = None, org_grant: bool = False,
    ) -> dict[str, Any]:
        """An analyst applies for a grant; open datasets approve it at once."""
        with self.refusals(actor, "request.create", dataset=dataset[:63],
                           detail={"epsilon": epsilon, "days": days, "org_grant": org_grant}):
            actor.require(*ANALYST_ROLES)
            purpose = (purpose or "").strip()
            if not MIN_PURPOSE <= len(purpose) <= MAX_PURPOSE:
                raise InvalidRequest(_l(
                    "purpose must say what the data is for in %(min_purpose)s to %(max_purpose)s "
                    "characters (got %(purpose)s)",
                    min_purpose=MIN_PURPOSE, max_purpose=MAX_PURPOSE, purpose=len(purpose)))
            if org_grant and not (actor.role == "enterprise" and actor.org):
                raise InvalidRequest(_l(
                    "only an enterprise account with an org can apply for an org grant"))
            rec = self.catalog.record(dataset)
            epsilon = rec.policy.budget.default_epsilon if epsilon is None else epsilon
            days = DEFAULT_GRANT_DAYS if days is None else days
            budget = self.ledger.check_grant_size(rec.policy, epsilon, days)
            with self.store.writing() as tx:
                pending = tx.applications.pending(actor.username, rec.name)
                if pending is not None:
                    raise Conflict(_l(
                        "you already have a pending application on %(name)s (%(id)s); withdraw it or "
                        "wait for the decision",
                        name=rec.name, id=pending.id))
                if (rec.policy.access == "open" and not org_grant
                        and not self.ledger.has_revoked_grant(tx, actor, rec.name)):
                    grant = self.ledger.auto_grant(tx, actor=actor, rec=rec, purpose=purpose,
                                                   epsilon=epsilon, days=days)
                    request_id = grant.request_id
                else:
                    request_id = self._add_pending(tx, actor, rec, purpose=purpose,
                                                   budget=budget, days=days, org_grant=org_grant)
                assert request_id is not None
                return self._view(tx, request_id)

    def _add_pending(self, tx: Tx, actor: Principal, rec: DatasetRecord, *,
                     purpose: str, budget: Budget, days: int, org_grant: bool) -> str:
        org = actor.org if org_grant else None
        application = Application(
            id=new_id(), applicant=actor.username, org=org, dataset=rec.name, purpose=purpose,
            epsilon=budget, days=days, status="pending", auto_approved=False,
            created_at=iso(now()))
        tx.applications.add(application)
        self.audit.append(tx, action="request.create", outcome="ok", actor=actor,
                          dataset=rec.name, request_id=application.id, cost=budget,
                          epsilon_only=True,
                          detail={"purpose": purpose, "days": days, "access": rec.policy.access,
                                  "org": org})
        return application.id

    def withdraw(self, actor: Principal, request_id: str) -> dict[str, Any]:
        """The applicant takes back a pending application."""
        with self.refusals(actor, "request.withdraw", request_id=request_id[:32]):
            actor.require(*ANALYST_ROLES)
            with self.store.writing() as tx:
                app = self._visible(tx, actor, request_id)
                state = next_state(APPLICATION_TRANSITIONS, app.status, "withdraw", WHAT)
                self._decide(tx, app, state, by=actor.username, note=None)
                self.audit.append(tx, action="request.withdraw", outcome="ok", actor=actor,
                                  dataset=app.dataset, request_id=app.id)
                return self._view(tx, request_id)

    # -- reading -------------------------------------------------------------------------

    def _visible(self, tx: Tx, actor: Principal, request_id: str) -> Application:
        """An application the caller may see: admins and auditors all, analysts their own."""
        app = tx.applications.get(request_id)
        if app is None or (actor.role not in READERS and app.applicant != actor.username):
            raise NotFound(_l("no application %(request_id)s", request_id=request_id))
        return app

    def _view(self, tx: Tx, request_id: str) -> dict[str, Any]:
        app = tx.applications.get(request_id)
        assert app is not None
        return application_view(app, tx.grants.get(app.grant_id))

    def list(self, actor: Principal, status: str | None = None) -> list[dict[str, Any]]:
        """Applications, newest first: admins and auditors see all, analysts their own."""
        with self.refusals(actor, "request.list", detail={"status": (status or "")[:20]}):
            self._check_status(status)
        with self.store.reading() as tx:
            apps = tx.applications.list(
                applicant=None if actor.role in READERS else actor.username, status=status)
            grants = tx.grants.by_ids([a.grant_id for a in apps if a.grant_id])
        return [application_view(a, grants.get(a.grant_id or "")) for a in apps]

    def page(self, actor: Principal, window: Window, *,
             status: str | None = None) -> Found[dict[str, Any]]:
        """One page of the applications ``actor`` may see (as :meth:`list`), searched in
        the store."""
        with self.refusals(actor, "request.list", detail={"status": (status or "")[:20]}):
            self._check_status(status)
        with self.store.reading() as tx:
            found = tx.applications.search(
                window, applicant=None if actor.role in READERS else actor.username,
                status=status)
            grants = tx.grants.by_ids([a.grant_id for a in found.items if a.grant_id])
        return found.map(lambda a: application_view(a, grants.get(a.grant_id or "")))

    @staticmethod
    def _check_status(status: str | None) -> None:
        if status is not None and status not in APPLICATION_TRANSITIONS:
            raise InvalidRequest(_l(
                "status must be one of %(application_transitions)s",
                application_transitions=', '.join(APPLICATION_TRANSITIONS)))

    def get(self, actor: Principal, request_id: str) -> dict[str, Any]:
        """One application; admins and auditors also get the context a decision needs."""
        with self.refusals(actor, "request.show", request_id=request_id[:32]):
            with self.store.reading() as tx:
                app = self._visible(tx, actor, request_id)
                out = self._view(tx, app.id)
                if actor.role in READERS:
                    out["context"] = self._context(tx, app)
        return out

    def _context(self, tx: Tx, app: Application) -> dict[str, Any]:
        """What an admin weighs: who applies, their history, budgets, recent queries."""
        user = tx.users.get(app.applicant)
        applicant = Principal(app.applicant, user.role if user else "?",
                              user.org if user else None)
        past = tx.applications.list(applicant=app.applicant, exclude=app.id, limit=CONTEXT_ROWS)
        held = tx.grants.held_by(applicant.username, holder_org(applicant))
        recent = tx.queries.list(dataset=app.dataset, limit=CONTEXT_ROWS)
        spent: dict[str, Budget] = {}
        for grant in held:
            spent[grant.dataset] = spent.get(grant.dataset, Budget()) + grant.spent
        rec = self.catalog.record(app.dataset, tx)
        budget = rec.policy.budget
        return {
            "applicant": {"username": app.applicant, "role": applicant.role,
                          "org": applicant.org, "disabled": user.disabled if user else None},
            "past_applications": [application_view(a) for a in past],
            "grants": [grant_view(g) for g in held],
            "epsilon_spent_by_dataset": {k: v.epsilon_float for k, v in spent.items()},
            "recent_queries": [query_summary(q) for q in recent],
            "dataset": {
                "name": rec.name, "access": rec.policy.access,
                "default_epsilon": budget.default_epsilon,
                "max_epsilon_per_grant": budget.max_epsilon_per_grant,
                "dataset_epsilon_cap": budget.dataset_epsilon_cap,
                "epsilon_spent": rec.spent.epsilon_float,
                "active_grants": tx.grants.count_active(rec.name),
                **self._zcdp_context(app, rec),
            },
        }

    @staticmethod
    def _zcdp_context(app: Application, rec: DatasetRecord) -> dict[str, Any]:
        """On a zCDP dataset: the rho the asked epsilon becomes, the cap and spending in rho."""
        if not accounting.is_zcdp(rec.policy):
            return {"accounting": "pure"}
        return {"accounting": "zcdp", "conversion_delta": rec.policy.delta,
                "rho_asked": accounting.rho_of_epsilon(rec.policy, app.epsilon.epsilon_float
                                                       ).rho_float,
                "dataset_rho_cap": accounting.dataset_cap(rec.policy).rho_float,
                "rho_spent": rec.spent.rho_float}

    # -- deciding ------------------------------------------------------------------------

    def _pending_for_decision(self, tx: Tx, actor: Principal, request_id: str,
                              action: str) -> tuple[Application, str]:
        actor.require("admin", full_scope=True)
        app = self._visible(tx, actor, request_id)
        check_not_own(actor=actor.username, owner=app.applicant, what="application")
        return app, next_state(APPLICATION_TRANSITIONS, app.status, action, WHAT)

    @staticmethod
    def _decide(tx: Tx, app: Application, status: str, *, by: str, note: str | None,
                grant_id: str | None = None) -> None:
        if not tx.applications.decide(app.id, was=app.status, status=status, by=by,
                                      at=iso(now()), note=note, grant_id=grant_id):
            # cannot happen inside the serialised write; fail closed anyway
            raise Conflict(_l("application %(id)s was decided meanwhile", id=app.id))

    def approve(
        self, actor: Principal, request_id: str, *, epsilon: Any = None,
        days: int | None = None, note: str = "", extend_grant: str | None = None,
    ) -> dict[str, Any]:
        """An admin (never the applicant) approves, perhaps for less; the grant is created,
        or, with ``extend_grant``, the applicant's active grant on the dataset grows by the
        approved epsilon instead of a second grant being added."""
        note = (note or "").strip()
        with self.refusals(actor, "request.approve", request_id=request_id[:32],
                           detail={"epsilon": epsilon, "days": days}):
            with self.store.writing() as tx:
                app, state = self._pending_for_decision(tx, actor, request_id, "approve")
                applicant = tx.users.get(app.applicant)
                if applicant is None or applicant.disabled:
                    raise Conflict(_l(
                        "%(applicant)s's account is disabled; enable it first or reject the "
                        "application",
                        applicant=app.applicant))
                rec = self.catalog.record(app.dataset, tx)
                budget, days = self._approved_size(app, rec, epsilon=epsilon, days=days,
                                                   note=note)
                if extend_grant:
                    grant = self._extend_instead(tx, actor, app, extend_grant, budget=budget,
                                                 days=days, note=note)
                else:
                    budget = accounting.grant_budget(rec.policy, epsilon=budget,
                                                     delta=default_delta_total(rec.policy))
                    grant = self.ledger.insert_grant(
                        tx, actor=actor, dataset=rec, budget=budget, days=days,
                        username=None if app.org else app.applicant, org=app.org,
                        request_id=app.id)
                self._decide(tx, app, state, by=actor.username, note=note or None,
                             grant_id=grant.id)
                self.audit.append(
                    tx, action="request.approve", outcome="ok", actor=actor,
                    dataset=app.dataset, request_id=app.id, grant_id=grant.id, cost=budget,
                    detail={"applicant": app.applicant, "org": app.org, "note": note,
                            "days": days, "requested_epsilon": app.epsilon.epsilon_text,
                            "requested_days": app.days, "extended_grant": bool(extend_grant)})
                return self._view(tx, request_id)

    def _extend_instead(self, tx: Tx, actor: Principal, app: Application, grant_id: str, *,
                        budget: Budget, days: int, note: str) -> Grant:
        grant = self.ledger.active_grant(tx, grant_id)
        holder_ok = grant.org == app.org if app.org else grant.username == app.applicant
        if grant.dataset != app.dataset or not holder_ok:
            raise InvalidRequest(_l("grant %(grant)s is not the applicant's grant on %(dataset)s",
                                    grant=grant_id, dataset=app.dataset))
        self.ledger.extend_in(tx, actor, grant, epsilon=budget.epsilon_float, days=days, note=note,
                              request_id=app.id)
        return grant

    def _approved_size(self, app: Application, rec: DatasetRecord, *, epsilon: Any,
                       days: int | None, note: str) -> tuple[Budget, int]:
        """The approved epsilon and days: at most what was asked; a change needs a note."""
        days = app.days if days is None else days
        granted = app.epsilon if epsilon is None else Budget.query_loss(epsilon)
        self.ledger.check_grant_size(rec.policy, granted.epsilon_float, days)
        if granted.epsilon_units > app.epsilon.epsilon_units:
            raise InvalidRequest(_l(
                "an approval may lower epsilon, never raise it (asked for %(epsilon_text)s)",
                epsilon_text=app.epsilon.epsilon_text))
        if days > app.days:
            raise InvalidRequest(_l(
                "an approval may shorten days, never lengthen them (asked for %(days)s)",
                days=app.days))
        if (granted != app.epsilon or days != app.days) and not note:
            raise InvalidRequest(_l("say in a note why you grant less than was asked for"))
        return granted, days

    def reject(self, actor: Principal, request_id: str, *, note: str) -> dict[str, Any]:
        """An admin (never the applicant) rejects, saying why."""
        note = (note or "").strip()
        with self.refusals(actor, "request.reject", request_id=request_id[:32]):
            with self.store.writing() as tx:
                app, state = self._pending_for_decision(tx, actor, request_id, "reject")
                if not note:
                    raise InvalidRequest(_l("rejecting an application needs a note for the applicant"))
                self._decide(tx, app, state, by=actor.username, note=note)
                self.audit.append(tx, action="request.reject", outcome="ok", actor=actor,
                                  dataset=app.dataset, request_id=app.id,
                                  detail={"applicant": app.applicant, "note": note})
                return self._view(tx, request_id)

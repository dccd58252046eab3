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

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, and_, func, insert, or_, select, update

from gateway.adapters.db import Store
from gateway.adapters.db import tables as t
from gateway.domain.budget import Budget
from gateway.domain.errors import Conflict, DomainError, InvalidRequest, NotFound
from gateway.domain.text import N_
from gateway.domain.text import lazy_gettext as _l
from gateway.domain.workflow import APPLICATION_TRANSITIONS, check_not_own, next_state
from gateway.services.audit import AuditLog
from gateway.services.catalog import Catalog, DatasetRecord
from gateway.services.common import SYSTEM, Principal, eps_text, iso, new_id, now
from gateway.services.grants import DEFAULT_GRANT_DAYS, Ledger, default_delta_total, grant_view

__all__ = ["AccessService", "application_view", "auto_grant", "has_revoked_grant", "trace"]

WHAT = "data-use application"  # in messages: "cannot approve a data-use application ..."
MIN_PURPOSE = 20
MAX_PURPOSE = 4000
CONTEXT_ROWS = 20
READERS = ("admin", "auditor")


def auto_grant(
    conn: Connection, *, audit: AuditLog, ledger: Ledger, actor: Principal, rec: DatasetRecord,
    purpose: str = N_("automatic grant on first query of an open dataset"),
    epsilon: float | None = None, days: int | None = None,
) -> Any:
    """An open dataset: record an auto-approved application and its grant (default budget)."""
    policy = rec.policy
    budget = Budget.of(epsilon if epsilon is not None else policy.budget.default_epsilon)
    budget += default_delta_total(policy)
    days = days or DEFAULT_GRANT_DAYS
    request_id, stamp = new_id(), iso(now())
    grant_id = ledger.insert_grant(conn, actor=SYSTEM, dataset=rec, budget=budget, days=days,
                                   username=actor.username, request_id=request_id)
    conn.execute(insert(t.applications).values(
        id=request_id, applicant=actor.username, org=None, dataset=rec.name,
        purpose=purpose, epsilon_units=budget.epsilon_units, days=days, status="approved",
        auto_approved=True, created_at=stamp, decided_by=SYSTEM.username, decided_at=stamp,
        note=N_("open dataset: approved automatically"), grant_id=grant_id))
    audit.append(conn, action="request.auto_approve", outcome="ok", actor=actor, dataset=rec.name,
                 request_id=request_id, grant_id=grant_id, epsilon_units=budget.epsilon_units,
                 delta_units=budget.delta_units, detail={"purpose": purpose, "days": days})
    return conn.execute(select(t.grants).where(t.grants.c.id == grant_id)).one()


def grant_owner(actor: Principal) -> Any:
    """The grants an analyst may draw on: their own, and their org's when enterprise."""
    owner = t.grants.c.username == actor.username
    if actor.org and actor.role == "enterprise":
        owner = or_(owner, t.grants.c.org == actor.org)
    return owner


def has_revoked_grant(conn: Connection, actor: Principal, dataset: str) -> bool:
    """Whether an admin revoked a grant this analyst drew on (no automatic grant then)."""
    return conn.execute(select(t.grants.c.id).where(and_(
        grant_owner(actor), t.grants.c.dataset == dataset, t.grants.c.status == "revoked"))
    ).first() is not None


def application_view(row: Any, grant: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id, "applicant": row.applicant, "dataset": row.dataset,
        "org_grant": row.org is not None, "org": row.org, "purpose": row.purpose,
        "epsilon": float(eps_text(row.epsilon_units) or 0), "days": row.days,
        "status": row.status, "auto_approved": bool(row.auto_approved),
        "created_at": row.created_at, "decided_by": row.decided_by,
        "decided_at": row.decided_at, "note": row.note, "grant_id": row.grant_id,
    }
    if grant is not None:
        out["grant"] = grant_view(grant)
    return out


class AccessService:
    """Data-use applications and the decisions on them (API, web console and CLI)."""

    def __init__(self, store: Store, audit: AuditLog, catalog: Catalog, ledger: Ledger) -> None:
        self.store, self.audit, self.catalog, self.ledger = store, audit, catalog, ledger

    @contextmanager
    def _refusals(self, actor: Principal, action: str, **fields: Any) -> Iterator[None]:
        """Audit any refusal raised inside as ``denied`` (once), then let it propagate."""
        try:
            yield
        except DomainError as exc:
            if not exc.audited:
                self.audit.denied(actor, action, exc, **fields)
            raise

    # -- applying ------------------------------------------------------------------------

    def apply(
        self, actor: Principal, *, dataset: str, purpose: str, epsilon: float | None = None,
        days: int | None = None, org_grant: bool = False,
    ) -> dict[str, Any]:
        """An analyst applies for a grant; open datasets approve it at once."""
        with self._refusals(actor, "request.create", dataset=dataset[:63],
                            detail={"epsilon": epsilon, "days": days, "org_grant": org_grant}):
            actor.require("researcher", "enterprise")
            purpose = (purpose or "").strip()
            if not MIN_PURPOSE <= len(purpose) <= MAX_PURPOSE:
                raise InvalidRequest(f"purpose must say what the data is for in {MIN_PURPOSE} to "
                                     f"{MAX_PURPOSE} characters (got {len(purpose)})")
            if org_grant and not (actor.role == "enterprise" and actor.org):
                raise InvalidRequest("only an enterprise account with an org can apply for "
                                     "an org grant")
            rec = self.catalog.record(dataset)
            policy = rec.policy
            epsilon = policy.budget.default_epsilon if epsilon is None else epsilon
            days = DEFAULT_GRANT_DAYS if days is None else days
            budget = self.ledger.check_grant_size(policy, epsilon, days)
            with self.store.write() as conn:
                self._check_no_pending(conn, actor, rec.name)
                if (policy.access == "open" and not org_grant
                        and not has_revoked_grant(conn, actor, rec.name)):
                    grant = auto_grant(conn, audit=self.audit, ledger=self.ledger, actor=actor,
                                       rec=rec, purpose=purpose, epsilon=epsilon, days=days)
                    request_id = grant.request_id
                else:
                    request_id = self._insert_pending(conn, actor, rec, purpose=purpose,
                                                      budget=budget, days=days,
                                                      org_grant=org_grant)
        return self._view(request_id)

    def _check_no_pending(self, conn: Connection, actor: Principal, dataset: str) -> None:
        pending = conn.execute(select(t.applications.c.id).where(and_(
            t.applications.c.applicant == actor.username, t.applications.c.dataset == dataset,
            t.applications.c.status == "pending"))).first()
        if pending is not None:
            raise Conflict(f"you already have a pending application on {dataset} "
                           f"({pending.id}); withdraw it or wait for the decision")

    def _insert_pending(self, conn: Connection, actor: Principal, rec: DatasetRecord, *,
                        purpose: str, budget: Budget, days: int, org_grant: bool) -> str:
        request_id = new_id()
        conn.execute(insert(t.applications).values(
            id=request_id, applicant=actor.username, org=actor.org if org_grant else None,
            dataset=rec.name, purpose=purpose, epsilon_units=budget.epsilon_units, days=days,
            status="pending", auto_approved=False, created_at=iso(now())))
        self.audit.append(conn, action="request.create", outcome="ok", actor=actor,
                          dataset=rec.name, request_id=request_id,
                          epsilon_units=budget.epsilon_units,
                          detail={"purpose": purpose, "days": days, "access": rec.policy.access,
                                  "org": actor.org if org_grant else None})
        return request_id

    def withdraw(self, actor: Principal, request_id: str) -> dict[str, Any]:
        """The applicant takes back a pending application."""
        with self._refusals(actor, "request.withdraw", request_id=request_id[:32]):
            actor.require("researcher", "enterprise")
            with self.store.write() as conn:
                row = self._visible_row(conn, actor, request_id)
                state = next_state(APPLICATION_TRANSITIONS, row.status, "withdraw", WHAT)
                self._set_status(conn, row, state, decided_by=actor.username, note=None)
                self.audit.append(conn, action="request.withdraw", outcome="ok", actor=actor,
                                  dataset=row.dataset, request_id=row.id)
        return self._view(request_id)

    # -- reading -------------------------------------------------------------------------

    def _visible_row(self, conn: Connection, actor: Principal, request_id: str) -> Any:
        """An application the caller may see: admins and auditors all, analysts their own."""
        row = conn.execute(select(t.applications)
                           .where(t.applications.c.id == request_id)).first()
        if row is None or (actor.role not in READERS and row.applicant != actor.username):
            raise NotFound(f"no application {request_id}")
        return row

    def _view(self, request_id: str, conn: Connection | None = None) -> dict[str, Any]:
        if conn is None:
            with self.store.read() as own:
                return self._view(request_id, own)
        row = conn.execute(select(t.applications)
                           .where(t.applications.c.id == request_id)).one()
        grant = None
        if row.grant_id:
            grant = conn.execute(select(t.grants).where(t.grants.c.id == row.grant_id)).first()
        return application_view(row, grant)

    def list(self, actor: Principal, status: str | None = None) -> list[dict[str, Any]]:
        """Applications, newest first: admins and auditors see all, analysts their own."""
        with self._refusals(actor, "request.list", detail={"status": (status or "")[:20]}):
            if status is not None and status not in APPLICATION_TRANSITIONS:
                raise InvalidRequest(f"status must be one of {', '.join(APPLICATION_TRANSITIONS)}")
        conds = [] if actor.role in READERS else [t.applications.c.applicant == actor.username]
        if status is not None:
            conds.append(t.applications.c.status == status)
        with self.store.read() as conn:
            rows = conn.execute(select(t.applications).where(*conds)
                                .order_by(t.applications.c.created_at.desc())).all()
            ids = [r.grant_id for r in rows if r.grant_id]
            grants = {g.id: g for g in conn.execute(
                select(t.grants).where(t.grants.c.id.in_(ids))).all()} if ids else {}
        return [application_view(r, grants.get(r.grant_id)) for r in rows]

    def get(self, actor: Principal, request_id: str) -> dict[str, Any]:
        """One application; admins and auditors also get the context a decision needs."""
        with self._refusals(actor, "request.show", request_id=request_id[:32]):
            with self.store.read() as conn:
                row = self._visible_row(conn, actor, request_id)
                out = self._view(row.id, conn)
                if actor.role in READERS:
                    out["context"] = self._context(conn, row)
        return out

    def _context(self, conn: Connection, row: Any) -> dict[str, Any]:
        """What an admin weighs: who applies, their history, budgets, recent queries."""
        apps, grants, queries, users = t.applications, t.grants, t.queries, t.users
        user = conn.execute(select(users).where(users.c.username == row.applicant)).first()
        applicant = Principal(row.applicant, user.role if user else "?",
                              user.org if user else None)
        past = conn.execute(select(apps).where(and_(
            apps.c.applicant == row.applicant, apps.c.id != row.id))
            .order_by(apps.c.created_at.desc()).limit(CONTEXT_ROWS)).all()
        held = conn.execute(select(grants).where(grant_owner(applicant))
                            .order_by(grants.c.created_at.desc())).all()
        recent = conn.execute(select(queries).where(queries.c.dataset == row.dataset)
                              .order_by(queries.c.created_at.desc()).limit(CONTEXT_ROWS)).all()
        spent: dict[str, float] = {}
        for grant in held:
            spent[grant.dataset] = spent.get(grant.dataset, 0.0) + grant.epsilon_spent_units / 1e9
        rec = self.catalog.record(row.dataset, conn)
        return {
            "applicant": {"username": row.applicant, "role": applicant.role,
                          "org": applicant.org, "disabled": bool(user.disabled) if user else None},
            "past_applications": [application_view(a) for a in past],
            "grants": [grant_view(g) for g in held],
            "epsilon_spent_by_dataset": spent,
            "recent_queries": [self._query_summary(q) for q in recent],
            "dataset": {
                "name": rec.name, "access": rec.policy.access,
                "default_epsilon": rec.policy.budget.default_epsilon,
                "max_epsilon_per_grant": rec.policy.budget.max_epsilon_per_grant,
                "dataset_epsilon_cap": rec.policy.budget.dataset_epsilon_cap,
                "epsilon_spent": rec.epsilon_spent_units / 1e9,
                "active_grants": conn.execute(select(func.count()).select_from(grants).where(
                    and_(grants.c.dataset == rec.name, grants.c.status == "active"))).scalar(),
            },
        }

    @staticmethod
    def _query_summary(row: Any) -> dict[str, Any]:
        return {"id": row.id, "user": row.username, "status": row.status,
                "epsilon": row.epsilon_units / 1e9, "grant_id": row.grant_id,
                "created_at": row.created_at}

    # -- deciding ------------------------------------------------------------------------

    def _pending_for_decision(self, conn: Connection, actor: Principal, request_id: str,
                              action: str) -> tuple[Any, str]:
        actor.require("admin", full_scope=True)
        row = self._visible_row(conn, actor, request_id)
        check_not_own(actor=actor.username, owner=row.applicant, what="application")
        return row, next_state(APPLICATION_TRANSITIONS, row.status, action, WHAT)

    def _set_status(self, conn: Connection, row: Any, status: str, *, decided_by: str,
                    note: str | None, grant_id: str | None = None) -> None:
        changed = conn.execute(update(t.applications).where(and_(
            t.applications.c.id == row.id, t.applications.c.status == row.status)).values(
            status=status, decided_by=decided_by, decided_at=iso(now()), note=note,
            grant_id=grant_id)).rowcount
        if not changed:  # cannot happen inside the serialised write; fail closed anyway
            raise Conflict(f"application {row.id} was decided meanwhile")

    def approve(
        self, actor: Principal, request_id: str, *, epsilon: float | None = None,
        days: int | None = None, note: str = "", extend_grant: str | None = None,
    ) -> dict[str, Any]:
        """An admin (never the applicant) approves, perhaps for less; the grant is created,
        or, with ``extend_grant``, the applicant's active grant on the dataset grows by the
        approved epsilon instead of a second grant being added."""
        note = (note or "").strip()
        with self._refusals(actor, "request.approve", request_id=request_id[:32],
                            detail={"epsilon": epsilon, "days": days}):
            with self.store.write() as conn:
                row, state = self._pending_for_decision(conn, actor, request_id, "approve")
                applicant = conn.execute(select(t.users.c.disabled)
                                         .where(t.users.c.username == row.applicant)).first()
                if applicant is None or applicant.disabled:
                    raise Conflict(f"{row.applicant}'s account is disabled; enable it first "
                                   "or reject the application")
                rec = self.catalog.record(row.dataset, conn)
                budget, days = self._approved_size(row, rec, epsilon=epsilon, days=days,
                                                   note=note)
                if extend_grant:
                    grant_id = self._extend_instead(conn, actor, row, extend_grant,
                                                    budget=budget, days=days, note=note)
                else:
                    budget += default_delta_total(rec.policy)
                    grant_id = self.ledger.insert_grant(
                        conn, actor=actor, dataset=rec, budget=budget, days=days,
                        username=None if row.org else row.applicant, org=row.org,
                        request_id=row.id)
                self._set_status(conn, row, state, decided_by=actor.username, note=note or None,
                                 grant_id=grant_id)
                self.audit.append(
                    conn, action="request.approve", outcome="ok", actor=actor,
                    dataset=row.dataset, request_id=row.id, grant_id=grant_id,
                    epsilon_units=budget.epsilon_units, delta_units=budget.delta_units,
                    detail={"applicant": row.applicant, "org": row.org, "note": note,
                            "days": days, "requested_epsilon": eps_text(row.epsilon_units),
                            "requested_days": row.days, "extended_grant": bool(extend_grant)})
        return self._view(request_id)

    def _extend_instead(self, conn: Connection, actor: Principal, row: Any, grant_id: str, *,
                        budget: Budget, days: int, note: str) -> str:
        grant = self.ledger.active_grant_row(conn, grant_id)
        holder_ok = grant.org == row.org if row.org else grant.username == row.applicant
        if grant.dataset != row.dataset or not holder_ok:
            raise InvalidRequest(_l("grant %(grant)s is not the applicant's grant on %(dataset)s",
                                    grant=grant_id, dataset=row.dataset))
        self.ledger.extend_in(conn, actor, grant, epsilon=budget.epsilon_float, days=days,
                              note=note, request_id=row.id)
        return str(grant.id)

    def _approved_size(self, row: Any, rec: DatasetRecord, *, epsilon: float | None,
                       days: int | None, note: str) -> tuple[Budget, int]:
        """The approved epsilon and days: at most what was asked; a change needs a note."""
        days = row.days if days is None else days
        granted = Budget(row.epsilon_units) if epsilon is None else Budget.query_loss(epsilon)
        self.ledger.check_grant_size(rec.policy, granted.epsilon_float, days)
        if granted.epsilon_units > row.epsilon_units:
            raise InvalidRequest(f"an approval may lower epsilon, never raise it (asked for "
                                 f"{eps_text(row.epsilon_units)})")
        if days > row.days:
            raise InvalidRequest(f"an approval may shorten days, never lengthen them (asked "
                                 f"for {row.days})")
        if (granted.epsilon_units != row.epsilon_units or days != row.days) and not note:
            raise InvalidRequest("say in a note why you grant less than was asked for")
        return granted, days

    def reject(self, actor: Principal, request_id: str, *, note: str) -> dict[str, Any]:
        """An admin (never the applicant) rejects, saying why."""
        note = (note or "").strip()
        with self._refusals(actor, "request.reject", request_id=request_id[:32]):
            with self.store.write() as conn:
                row, state = self._pending_for_decision(conn, actor, request_id, "reject")
                if not note:
                    raise InvalidRequest("rejecting an application needs a note for the applicant")
                self._set_status(conn, row, state, decided_by=actor.username, note=note)
                self.audit.append(conn, action="request.reject", outcome="ok", actor=actor,
                                  dataset=row.dataset, request_id=row.id,
                                  detail={"applicant": row.applicant, "note": note})
        return self._view(request_id)



def trace(conn: Connection, grant: Any) -> dict[str, Any]:
    """From a grant back to the application and the decision behind it (for auditors)."""
    if grant is None:
        return {"grant": None, "application": None}
    out: dict[str, Any] = {
        "grant": {"id": grant.id, "user": grant.username, "org": grant.org,
                  "created_by": grant.created_by, "created_at": grant.created_at,
                  "status": grant.status, "revoked_by": grant.revoked_by,
                  "revoked_at": grant.revoked_at},
        "application": None,
    }
    if grant.request_id:
        row = conn.execute(select(t.applications)
                           .where(t.applications.c.id == grant.request_id)).first()
        out["application"] = application_view(row) if row else None
    return out

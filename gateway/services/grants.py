"""The ledger: grants of privacy budget and the race-free charge against them.

A charge runs inside a serialised write transaction (SQLite ``BEGIN IMMEDIATE``,
PostgreSQL advisory lock): the grant's remaining budget and the dataset-wide cap are
checked and the cost is added in the same transaction that writes the audit entry.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select, update

from gateway.adapters.db import Store
from gateway.adapters.db import tables as t
from gateway.domain.budget import DELTA_SCALE, Budget
from gateway.domain.errors import (
    BudgetExhausted,
    Conflict,
    DomainError,
    GrantExpired,
    GrantRequired,
    InvalidRequest,
    NotFound,
)
from gateway.domain.text import lazy_gettext as _l
from gateway.domain.workflow import REVOKE_NEEDS_REASON, require_reason
from gateway.policy import Policy
from gateway.services.audit import AuditLog
from gateway.services.catalog import Catalog, DatasetRecord
from gateway.services.common import Principal, eps_text, in_days, iso, new_id, now, parse_iso

DEFAULT_GRANT_DAYS = 30
MAX_GRANT_DAYS = 366
DELTA_QUERIES_PER_GRANT = 100  # default delta budget: this many thresholded queries


def grant_view(row: Any) -> dict[str, Any]:
    expired = parse_iso(row.expires_at) <= now()
    status = row.status if row.status != "active" or not expired else "expired"
    return {
        "id": row.id, "user": row.username, "org": row.org, "dataset": row.dataset,
        "epsilon_total": row.epsilon_total_units / 1e9,
        "epsilon_spent": row.epsilon_spent_units / 1e9,
        "epsilon_remaining": (row.epsilon_total_units - row.epsilon_spent_units) / 1e9,
        "delta_total": row.delta_total_units / DELTA_SCALE,
        "delta_spent": row.delta_spent_units / DELTA_SCALE,
        "delta_remaining": (row.delta_total_units - row.delta_spent_units) / DELTA_SCALE,
        "created_at": row.created_at, "expires_at": row.expires_at, "status": status,
        "created_by": row.created_by, "request_id": row.request_id,
    }


def default_delta_total(policy: Policy) -> Budget:
    return Budget.of(0, min(policy.budget.delta * DELTA_QUERIES_PER_GRANT, 0.5))


class Ledger:
    def __init__(self, store: Store, audit: AuditLog, catalog: Catalog) -> None:
        self.store, self.audit, self.catalog = store, audit, catalog

    # -- grants --------------------------------------------------------------------------

    def insert_grant(
        self, conn: Connection, *, actor: Principal, dataset: DatasetRecord,
        budget: Budget, days: int, username: str | None = None, org: str | None = None,
        request_id: str | None = None,
    ) -> str:
        grant_id = new_id()
        conn.execute(insert(t.grants).values(
            id=grant_id, username=username, org=org, dataset=dataset.name,
            epsilon_total_units=budget.epsilon_units, epsilon_spent_units=0,
            delta_total_units=budget.delta_units, delta_spent_units=0, status="active",
            created_at=iso(now()), expires_at=in_days(days), created_by=actor.username,
            request_id=request_id,
        ))
        return grant_id

    def check_grant_size(self, policy: Policy, epsilon: float, days: int) -> Budget:
        budget = Budget.query_loss(epsilon, 0)
        if budget.epsilon_float > policy.budget.max_epsilon_per_grant:
            raise InvalidRequest(f"epsilon {epsilon} is above the policy's max_epsilon_per_grant "
                                 f"({policy.budget.max_epsilon_per_grant:g}) for {policy.name}")
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_GRANT_DAYS:
            raise InvalidRequest(f"days must be a whole number from 1 to {MAX_GRANT_DAYS}")
        return budget

    def give(
        self, actor: Principal, *, user: str | None, org: str | None, dataset: str,
        epsilon: float, delta: float | None, days: int | None,
    ) -> dict[str, Any]:
        """An admin gives a grant directly (to a user, or to an enterprise org)."""
        try:
            actor.require("admin", full_scope=True)
            if bool(user) == bool(org):
                raise InvalidRequest("name exactly one of user or org")
            rec = self.catalog.record(dataset)
            budget = self.check_grant_size(rec.policy, epsilon, days or DEFAULT_GRANT_DAYS)
            budget += Budget.of(0, delta) if delta is not None else default_delta_total(rec.policy)
            if budget.delta_units >= DELTA_SCALE or budget.delta_units < 0:
                raise InvalidRequest("delta must be in [0, 1)")
            with self.store.write() as conn:
                if user:
                    self._check_analyst(conn, user)
                grant_id = self.insert_grant(conn, actor=actor, dataset=rec, budget=budget,
                                             days=days or DEFAULT_GRANT_DAYS, username=user, org=org)
                self.audit.append(conn, action="grant.create", outcome="ok", actor=actor,
                                  dataset=dataset, grant_id=grant_id,
                                  epsilon_units=budget.epsilon_units, delta_units=budget.delta_units,
                                  detail={"user": user, "org": org, "days": days or DEFAULT_GRANT_DAYS})
        except DomainError as exc:
            self.audit.denied(actor, "grant.create", exc, dataset=dataset[:63],
                              detail={"user": user, "org": org})
            raise
        return self.get(actor, grant_id)

    def _check_analyst(self, conn: Connection, username: str) -> None:
        row = conn.execute(select(t.users.c.role).where(t.users.c.username == username)).first()
        if row is None:
            raise NotFound(f"no user {username}")
        if row.role not in ("researcher", "enterprise"):
            raise InvalidRequest(f"{username} is {row.role}; grants are for analysts")

    def _visible(self, actor: Principal) -> Any:
        if actor.role in ("admin", "auditor"):
            return True
        mine = t.grants.c.username == actor.username
        return or_(mine, t.grants.c.org == actor.org) if actor.org else mine

    def list(self, actor: Principal) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            rows = conn.execute(select(t.grants).where(self._visible(actor))
                                .order_by(t.grants.c.created_at.desc())).all()
        return [grant_view(r) for r in rows]

    def get(self, actor: Principal, grant_id: str) -> dict[str, Any]:
        with self.store.read() as conn:
            row = conn.execute(select(t.grants).where(
                and_(t.grants.c.id == grant_id, self._visible(actor)))).first()
        if row is None:
            raise NotFound(f"no grant {grant_id}")
        return grant_view(row)

    def revoke(self, actor: Principal, grant_id: str, note: str = "") -> dict[str, Any]:
        """An admin ends a grant, saying why (audited under the admin; the holder sees it)."""
        try:
            actor.require("admin", full_scope=True)
            note = require_reason(note, REVOKE_NEEDS_REASON)
            with self.store.write() as conn:
                row = conn.execute(select(t.grants).where(t.grants.c.id == grant_id)).first()
                if row is None:
                    raise NotFound(f"no grant {grant_id}")
                if row.status != "active":
                    raise Conflict(f"grant {grant_id} is already {row.status}")
                conn.execute(update(t.grants).where(t.grants.c.id == grant_id).values(
                    status="revoked", revoked_by=actor.username, revoked_at=iso(now())))
                self.audit.append(conn, action="grant.revoke", outcome="ok", actor=actor,
                                  dataset=row.dataset, grant_id=grant_id,
                                  request_id=row.request_id, detail={"note": note})
        except DomainError as exc:
            self.audit.denied(actor, "grant.revoke", exc, grant_id=grant_id[:32])
            raise
        return self.get(actor, grant_id)

    def extend(self, actor: Principal, grant_id: str, *, epsilon: float, days: int | None = None,
               note: str = "") -> dict[str, Any]:
        """An admin adds epsilon (and perhaps days) to an active grant instead of giving a
        second one; audited as ``grant.extend`` under the admin."""
        try:
            actor.require("admin", full_scope=True)
            with self.store.write() as conn:
                row = self.active_grant_row(conn, grant_id)
                self.extend_in(conn, actor, row, epsilon=epsilon, days=days, note=note)
        except DomainError as exc:
            self.audit.denied(actor, "grant.extend", exc, grant_id=grant_id[:32])
            raise
        return self.get(actor, grant_id)

    def active_grant_row(self, conn: Connection, grant_id: str) -> Any:
        row = conn.execute(select(t.grants).where(t.grants.c.id == grant_id)).first()
        if row is None:
            raise NotFound(_l("no grant %(grant)s", grant=grant_id))
        if row.status != "active" or parse_iso(row.expires_at) <= now():
            raise Conflict(_l("grant %(grant)s is no longer active: give a new one instead",
                              grant=grant_id))
        return row

    def extend_in(self, conn: Connection, actor: Principal, row: Any, *, epsilon: float,
                  days: int | None, note: str, request_id: str | None = None) -> Budget:
        """Add ``epsilon`` to the grant ``row`` (the policy's per-grant maximum bounds the new
        total) and make it last at least ``days`` from now; audited in ``conn``."""
        policy = self.catalog.record(row.dataset, conn).policy
        added = self.check_grant_size(policy, epsilon, days or 1)
        total = Budget(row.epsilon_total_units) + added
        if total.epsilon_float > policy.budget.max_epsilon_per_grant:
            room = max(0.0, policy.budget.max_epsilon_per_grant - row.epsilon_total_units / 1e9)
            raise InvalidRequest(_l(
                "the grant would hold epsilon %(total)s, above the policy's maximum of %(max)s "
                "per grant: extend it by at most %(room)s", total=eps_text(total.epsilon_units),
                max=format(policy.budget.max_epsilon_per_grant, "g"), room=format(room, "g")))
        expires = row.expires_at
        if days is not None and parse_iso(in_days(days)) > parse_iso(row.expires_at):
            expires = in_days(days)
        conn.execute(update(t.grants).where(t.grants.c.id == row.id).values(
            epsilon_total_units=total.epsilon_units, expires_at=expires))
        self.audit.append(conn, action="grant.extend", outcome="ok", actor=actor,
                          dataset=row.dataset, grant_id=row.id,
                          request_id=request_id or row.request_id,
                          epsilon_units=added.epsilon_units,
                          detail={"note": note.strip(), "days": days, "expires_at": expires,
                                  "epsilon_total_before": eps_text(row.epsilon_total_units),
                                  "epsilon_total_after": eps_text(total.epsilon_units),
                                  "application": request_id})
        return added

    # -- charging ------------------------------------------------------------------------

    def usable_grant(self, conn: Connection, actor: Principal, dataset: str) -> Any:
        """The caller's active grant on a dataset (own first, then the org's), or why not."""
        owner = t.grants.c.username == actor.username
        if actor.org and actor.role == "enterprise":
            owner = or_(owner, t.grants.c.org == actor.org)
        rows = conn.execute(select(t.grants).where(and_(owner, t.grants.c.dataset == dataset))).all()
        moment = now()
        live = [r for r in rows if r.status == "active" and parse_iso(r.expires_at) > moment]
        if live:
            live.sort(key=lambda r: (r.username is None, r.epsilon_spent_units - r.epsilon_total_units))
            return live[0]
        if any(r.status == "active" for r in rows):
            raise GrantExpired(f"your grant on {dataset} has expired; apply again")
        if any(r.status == "revoked" for r in rows):
            raise GrantRequired(f"your grant on {dataset} was revoked; apply again to continue")
        raise GrantRequired(f"you have no grant on {dataset}; apply for access first "
                            "(POST /v1/requests or gw.request_access)")

    def charge(self, conn: Connection, *, grant: Any, dataset: DatasetRecord, cost: Budget) -> None:
        """Check the grant and the dataset cap, then add the cost; both or neither."""
        eps_left = grant.epsilon_total_units - grant.epsilon_spent_units
        delta_left = grant.delta_total_units - grant.delta_spent_units
        if cost.epsilon_units > eps_left or cost.delta_units > delta_left:
            raise BudgetExhausted(
                f"this query costs epsilon {eps_text(cost.epsilon_units)}"
                + (f" and delta {cost.delta_float:g}" if cost.delta_units else "")
                + f"; the grant has epsilon {eps_text(eps_left)} and delta "
                f"{delta_left / DELTA_SCALE:g} left")
        spent = conn.execute(select(t.datasets.c.epsilon_spent_units)
                             .where(t.datasets.c.name == dataset.name)).scalar_one()
        cap = Budget.of(dataset.policy.budget.dataset_epsilon_cap).epsilon_units
        if spent + cost.epsilon_units > cap:
            raise BudgetExhausted(f"dataset {dataset.name} has reached its dataset-wide epsilon cap "
                                  f"({dataset.policy.budget.dataset_epsilon_cap:g}); no more "
                                  "queries can be answered on it")
        conn.execute(update(t.grants).where(t.grants.c.id == grant.id).values(
            epsilon_spent_units=t.grants.c.epsilon_spent_units + cost.epsilon_units,
            delta_spent_units=t.grants.c.delta_spent_units + cost.delta_units))
        conn.execute(update(t.datasets).where(t.datasets.c.name == dataset.name).values(
            epsilon_spent_units=t.datasets.c.epsilon_spent_units + cost.epsilon_units))

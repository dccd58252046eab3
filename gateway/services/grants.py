"""The ledger: grants of privacy budget and the race-free charge against them.

A charge runs inside a serialised write transaction (SQLite ``BEGIN IMMEDIATE``,
PostgreSQL advisory lock): the grant's remaining budget and the dataset-wide caps are
checked and the cost is added in the same transaction that writes the audit entry.

A zCDP dataset's grants hold rho instead of epsilon (:mod:`gateway.services.accounting`):
grant sizes are still asked in epsilon and converted, charges add rho, the cap is in rho.
"""

from __future__ import annotations

from typing import Any

from gateway.adapters.db import Store, Tx
from gateway.domain.budget import Budget
from gateway.domain.errors import (
    BudgetExhausted,
    Conflict,
    GrantExpired,
    GrantRequired,
    InvalidRequest,
    NotFound,
)
from gateway.domain.paging import Found, Window
from gateway.domain.records import Application, Grant
from gateway.domain.text import N_
from gateway.domain.text import lazy_gettext as _l
from gateway.domain.workflow import REVOKE_NEEDS_REASON, require_reason, word
from gateway.policy import Policy
from gateway.services import accounting
from gateway.services.audit import AuditLog
from gateway.services.catalog import Catalog, DatasetRecord
from gateway.services.common import (
    READERS,
    SYSTEM,
    Principal,
    in_days,
    iso,
    new_id,
    now,
    parse_iso,
)
from gateway.services.views import grant_view

DEFAULT_GRANT_DAYS = 30
MAX_GRANT_DAYS = 366
DELTA_QUERIES_PER_GRANT = 100  # default delta budget: this many thresholded queries
AUTO_PURPOSE = N_("automatic grant on first query of an open dataset")


def default_delta_total(policy: Policy) -> Budget:
    return Budget.of(0, min(policy.budget.delta * DELTA_QUERIES_PER_GRANT, 0.5))


def holder_org(actor: Principal) -> str | None:
    """The org whose grants an analyst may draw on (enterprise accounts only)."""
    return actor.org if actor.org and actor.role == "enterprise" else None


class Ledger:
    def __init__(self, store: Store, audit: AuditLog, catalog: Catalog) -> None:
        self.store, self.audit, self.catalog = store, audit, catalog
        self.refusals = audit.refusals

    # -- grants --------------------------------------------------------------------------

    def insert_grant(
        self, tx: Tx, *, actor: Principal, dataset: DatasetRecord, budget: Budget, days: int,
        username: str | None = None, org: str | None = None, request_id: str | None = None,
    ) -> Grant:
        conversion = Budget.of(0, dataset.policy.delta) if budget.rho_units else Budget()
        return tx.grants.add(grant_id=new_id(), dataset=dataset.name, budget=budget,
                             username=username, org=org, created_at=iso(now()),
                             expires_at=in_days(days), created_by=actor.username,
                             request_id=request_id, conversion_delta=conversion)

    def check_grant_size(self, policy: Policy, epsilon: Any, days: Any) -> Budget:
        budget = Budget.query_loss(epsilon, 0)
        if budget > Budget.of(policy.budget.max_epsilon_per_grant):
            raise InvalidRequest(_l(
                "epsilon %(epsilon)s is above the policy's max_epsilon_per_grant "
                "(%(max_epsilon_per_grant)s) for %(name)s",
                epsilon=epsilon, max_epsilon_per_grant=format(policy.budget.max_epsilon_per_grant,
                "g"), name=policy.name))
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_GRANT_DAYS:
            raise InvalidRequest(_l(
                "days must be a whole number from 1 to %(max_grant_days)s",
                max_grant_days=MAX_GRANT_DAYS))
        return budget

    def auto_grant(self, tx: Tx, *, actor: Principal, rec: DatasetRecord,
                   purpose: str = AUTO_PURPOSE, epsilon: Any = None,
                   days: int | None = None) -> Grant:
        """An open dataset: record an auto-approved application and its grant (default budget)."""
        policy = rec.policy
        asked = Budget.of(epsilon if epsilon is not None else policy.budget.default_epsilon)
        budget = accounting.grant_budget(policy, epsilon=asked, delta=default_delta_total(policy))
        days = days or DEFAULT_GRANT_DAYS
        request_id, stamp = new_id(), iso(now())
        grant = self.insert_grant(tx, actor=SYSTEM, dataset=rec, budget=budget, days=days,
                                  username=actor.username, request_id=request_id)
        tx.applications.add(Application(
            id=request_id, applicant=actor.username, org=None, dataset=rec.name,
            purpose=purpose, epsilon=asked, days=days, status="approved",
            auto_approved=True, created_at=stamp, decided_by=SYSTEM.username, decided_at=stamp,
            note=N_("open dataset: approved automatically"), grant_id=grant.id))
        self.audit.append(tx, action="request.auto_approve", outcome="ok", actor=actor,
                          dataset=rec.name, request_id=request_id, grant_id=grant.id,
                          cost=budget, detail={"purpose": purpose, "days": days})
        return grant

    def give(
        self, actor: Principal, *, user: str | None, org: str | None, dataset: str,
        epsilon: Any, delta: Any, days: int | None,
    ) -> dict[str, Any]:
        """An admin gives a grant directly (to a user, or to an enterprise org)."""
        with self.refusals(actor, "grant.create", dataset=dataset[:63],
                           detail={"user": user, "org": org}):
            actor.require("admin", full_scope=True)
            if bool(user) == bool(org):
                raise InvalidRequest(_l("name exactly one of user or org"))
            rec = self.catalog.record(dataset)
            days = days or DEFAULT_GRANT_DAYS
            budget = accounting.grant_budget(
                rec.policy, epsilon=self.check_grant_size(rec.policy, epsilon, days),
                delta=Budget.of(0, delta) if delta is not None else default_delta_total(rec.policy))
            if not budget.within_bounds():
                raise InvalidRequest(_l("delta must be in [0, 1)"))
            with self.store.writing() as tx:
                if user:
                    _check_analyst(tx, user)
                grant = self.insert_grant(tx, actor=actor, dataset=rec, budget=budget, days=days,
                                          username=user, org=org)
                self.audit.append(tx, action="grant.create", outcome="ok", actor=actor,
                                  dataset=dataset, grant_id=grant.id, cost=budget,
                                  detail={"user": user, "org": org, "days": days})
        return grant_view(grant)

    def list(self, actor: Principal) -> list[dict[str, Any]]:
        with self.store.reading() as tx:
            grants = (tx.grants.all() if actor.role in READERS
                      else tx.grants.held_by(actor.username, actor.org))
        return [grant_view(g) for g in grants]

    def page(self, actor: Principal, window: Window) -> Found[dict[str, Any]]:
        """One page of the grants ``actor`` may see (as :meth:`list`), searched in the store."""
        holder = None if actor.role in READERS else actor.username
        with self.store.reading() as tx:
            found = tx.grants.search(window, now=iso(now()), username=holder, org=actor.org)
        return found.map(grant_view)

    def get(self, actor: Principal, grant_id: str) -> dict[str, Any]:
        with self.refusals(actor, "grant.show", grant_id=grant_id[:32]):
            with self.store.reading() as tx:
                grant = tx.grants.get(grant_id)
            if grant is None or not _visible(actor, grant):
                raise NotFound(_l("no grant %(grant_id)s", grant_id=grant_id))
        return grant_view(grant)

    def revoke(self, actor: Principal, grant_id: str, note: str = "") -> dict[str, Any]:
        """An admin ends a grant, saying why (audited under the admin; the holder sees it)."""
        with self.refusals(actor, "grant.revoke", grant_id=grant_id[:32]):
            actor.require("admin", full_scope=True)
            note = require_reason(note, REVOKE_NEEDS_REASON)
            with self.store.writing() as tx:
                grant = tx.grants.get(grant_id)
                if grant is None:
                    raise NotFound(_l("no grant %(grant_id)s", grant_id=grant_id))
                if grant.status != "active":
                    raise Conflict(_l(
                        "grant %(grant_id)s is already %(status)s",
                        grant_id=grant_id, status=word(grant.status)))
                tx.grants.revoke(grant_id, by=actor.username, at=iso(now()), reason=note)
                self.audit.append(tx, action="grant.revoke", outcome="ok", actor=actor,
                                  dataset=grant.dataset, grant_id=grant_id,
                                  request_id=grant.request_id, detail={"note": note})
                grant = tx.grants.get(grant_id)
        assert grant is not None
        return grant_view(grant)

    def extend(self, actor: Principal, grant_id: str, *, epsilon: Any, days: int | None = None,
               note: str = "") -> dict[str, Any]:
        """An admin adds epsilon (and perhaps days) to an active grant instead of giving a
        second one; audited as ``grant.extend`` under the admin."""
        with self.refusals(actor, "grant.extend", grant_id=grant_id[:32]):
            actor.require("admin", full_scope=True)
            with self.store.writing() as tx:
                self.extend_in(tx, actor, self.active_grant(tx, grant_id), epsilon=epsilon,
                               days=days, note=note)
                extended = tx.grants.get(grant_id)
        assert extended is not None
        return grant_view(extended)

    def active_grant(self, tx: Tx, grant_id: str) -> Grant:
        grant = tx.grants.get(grant_id)
        if grant is None:
            raise NotFound(_l("no grant %(grant)s", grant=grant_id))
        if not grant.usable():
            raise Conflict(_l("grant %(grant)s is no longer active: give a new one instead",
                              grant=grant_id))
        return grant

    def extend_in(self, tx: Tx, actor: Principal, grant: Grant, *, epsilon: Any,
                  days: int | None, note: str, request_id: str | None = None) -> Budget:
        """Add ``epsilon`` to ``grant`` (the policy's per-grant maximum bounds the new total)
        and make it last at least ``days`` from now; audited in ``tx``."""
        policy = self.catalog.record(grant.dataset, tx).policy
        added = self.check_grant_size(policy, epsilon, days or 1)
        before = Budget(grant.total.epsilon_units)
        if grant.zcdp:  # in epsilon as shown, then back to rho
            before = Budget.of(accounting.epsilon_at(Budget(rho_units=grant.total.rho_units),
                                                     grant.conversion_delta.delta_float))
        total = before + added
        most = Budget.of(policy.budget.max_epsilon_per_grant)
        if total.epsilon_units > most.epsilon_units:
            room = Budget(max(0, most.epsilon_units - before.epsilon_units))
            raise InvalidRequest(_l(
                "the grant would hold epsilon %(total)s, above the policy's maximum of %(max)s "
                "per grant: extend it by at most %(room)s", total=total.epsilon_text,
                max=format(policy.budget.max_epsilon_per_grant, "g"), room=room.epsilon_text))
        expires = grant.expires_at
        if days is not None and parse_iso(in_days(days)) > parse_iso(grant.expires_at):
            expires = in_days(days)
        new_total = Budget(total.epsilon_units, grant.total.delta_units)
        if grant.zcdp:
            rho = accounting.rho_of_epsilon(policy, total.epsilon_float).rho_units
            new_total = Budget(0, grant.total.delta_units, max(rho, grant.total.rho_units))
        tx.grants.extend(grant.id, total=new_total, expires_at=expires)
        self.audit.append(tx, action="grant.extend", outcome="ok", actor=actor,
                          dataset=grant.dataset, grant_id=grant.id,
                          request_id=request_id or grant.request_id, cost=added,
                          epsilon_only=True,
                          detail={"note": note.strip(), "days": days, "expires_at": expires,
                                  "epsilon_total_before": before.epsilon_text,
                                  "epsilon_total_after": total.epsilon_text,
                                  "application": request_id})
        return added

    # -- drawing on a grant --------------------------------------------------------------

    def usable_grant(self, tx: Tx, actor: Principal, dataset: str) -> Grant:
        """The caller's active grant on a dataset (own first, then the org's), or why not."""
        held = tx.grants.held_by(actor.username, holder_org(actor), dataset=dataset)
        moment = now()
        live = [g for g in held if g.usable(moment)]
        if live:
            live.sort(key=lambda g: (g.username is None, -g.remaining.epsilon_units,
                                     -g.remaining.rho_units))
            return live[0]
        if any(g.status == "active" for g in held):
            raise GrantExpired(_l("your grant on %(dataset)s has expired; apply again", dataset=dataset))
        revoked = next((g for g in held if g.status == "revoked"), None)  # the newest
        if revoked is not None and revoked.revoke_reason:
            raise GrantRequired(_l(
                "your grant on %(dataset)s was revoked (reason: %(reason)s); apply again to "
                "continue", dataset=dataset, reason=revoked.revoke_reason))
        if revoked is not None:
            raise GrantRequired(_l(
                "your grant on %(dataset)s was revoked; apply again to continue",
                dataset=dataset))
        raise GrantRequired(_l(
            "you have no grant on %(dataset)s; apply for access first (POST /v1/requests "
            "or gw.request_access)",
            dataset=dataset))

    def has_revoked_grant(self, tx: Tx, actor: Principal, dataset: str) -> bool:
        """Whether an admin revoked a grant this analyst drew on (no automatic grant then)."""
        held = tx.grants.held_by(actor.username, holder_org(actor), dataset=dataset)
        return any(g.status == "revoked" for g in held)

    def grant_for(self, tx: Tx, actor: Principal, rec: DatasetRecord) -> Grant:
        """The grant a query draws on; an open dataset grants itself on first use."""
        try:
            return self.usable_grant(tx, actor, rec.name)
        except GrantRequired:
            if rec.policy.access != "open" or self.has_revoked_grant(tx, actor, rec.name):
                raise
        return self.auto_grant(tx, actor=actor, rec=rec)

    def charge(self, tx: Tx, *, grant_id: str, dataset: DatasetRecord, cost: Budget) -> Grant:
        """Check the grant (still active, unexpired, enough left) and the dataset-wide caps,
        then add the cost to both; all or nothing. Returns the grant as charged."""
        grant = tx.grants.get(grant_id)
        if grant is None or grant.status != "active":
            status = grant.status if grant else "removed"
            raise GrantRequired(_l(
                "grant %(grant_id)s was %(status)s; nothing was charged",
                grant_id=grant_id, status=word(status)))
        if grant.expired():
            raise GrantExpired(_l("grant %(grant_id)s has expired; nothing was charged",
                                  grant_id=grant_id))
        if grant.zcdp != (cost.rho_units > 0):
            raise GrantRequired(_l(
                "grant %(grant)s holds %(held)s and cannot pay a cost in %(asked)s on dataset "
                "%(dataset)s; nothing was charged (apply for a new grant if the dataset's "
                "accounting changed)", grant=grant_id,
                held="rho (zCDP)" if grant.zcdp else "epsilon", dataset=dataset.name,
                asked="rho (zCDP)" if cost.rho_units else "epsilon"))
        left = grant.remaining
        if cost.rho_units and not left.covers(cost):
            raise BudgetExhausted(_l(
                "this query costs rho %(rho)s and delta %(delta)s; the grant has rho %(rho_left)s "
                "and delta %(delta_left)s left", rho=cost.rho_text, delta=cost.delta_text,
                rho_left=left.rho_text, delta_left=left.delta_text))
        if not left.covers(cost):
            if cost.delta_units:
                raise BudgetExhausted(_l(
                    "this query costs epsilon %(cost)s and delta %(delta)s; the grant has "
                    "epsilon %(left)s and delta %(delta_left)s left", cost=cost.epsilon_text,
                    delta=format(cost.delta_float, "g"), left=left.epsilon_text,
                    delta_left=format(left.delta_float, "g")))
            raise BudgetExhausted(_l(
                "this query costs epsilon %(cost)s; the grant has epsilon %(left)s and delta "
                "%(delta_left)s left", cost=cost.epsilon_text, left=left.epsilon_text,
                delta_left=format(left.delta_float, "g")))
        spent, budget = tx.datasets.spent(dataset.name), dataset.policy.budget
        if cost.rho_units and (spent + cost).rho_units > accounting.dataset_cap(
                dataset.policy).rho_units:
            raise BudgetExhausted(_l(
                "dataset %(dataset)s has reached its dataset-wide rho cap (%(cap)s); no more "
                "queries can be answered on it", dataset=dataset.name,
                cap=accounting.dataset_cap(dataset.policy).rho_text))
        if (spent + cost).epsilon_units > Budget.of(budget.dataset_epsilon_cap).epsilon_units:
            raise BudgetExhausted(_l(
                "dataset %(name)s has reached its dataset-wide epsilon cap "
                "(%(dataset_epsilon_cap)s); no more queries can be answered on it",
                name=dataset.name, dataset_epsilon_cap=format(budget.dataset_epsilon_cap, "g")))
        delta_cap = Budget.of(0, budget.delta_cap).delta_units
        if cost.delta_units and (spent + cost).delta_units > delta_cap:
            raise BudgetExhausted(_l("dataset %(dataset)s has reached its dataset-wide delta cap "
                                     "(%(cap)s); no more queries that spend delta can be "
                                     "answered on it", dataset=dataset.name,
                                     cap=format(budget.delta_cap, "g")))
        tx.grants.spend(grant.id, cost)
        tx.datasets.spend(dataset.name, cost)
        charged = tx.grants.get(grant.id)
        assert charged is not None
        return charged


def _visible(actor: Principal, grant: Grant) -> bool:
    if actor.role in READERS:
        return True
    return grant.username == actor.username or (actor.org is not None and grant.org == actor.org)


def _check_analyst(tx: Tx, username: str) -> None:
    user = tx.users.get(username)
    if user is None:
        raise NotFound(_l("no user %(username)s", username=username))
    if user.role not in ("researcher", "enterprise"):
        raise InvalidRequest(_l(
            "%(username)s is %(role)s; grants are for analysts",
            username=username, role=word(user.role)))

"""Grants of privacy budget; spending is added in SQL so concurrent charges never lose one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, func, insert, or_, select, update

from gateway.adapters.db import tables as t
from gateway.adapters.db.rows import RecordRepo, budget_of, record_of
from gateway.domain.budget import Budget
from gateway.domain.paging import Found, Window
from gateway.domain.records import Grant

G = t.grants.c


def _grant(row: Any) -> Grant:
    return record_of(Grant, row, total=budget_of(row, "total_units"), spent=budget_of(row, "spent_units"),
                     conversion_delta=Budget(0, row.conversion_delta_units))


def _holder(username: str, org: str | None) -> Any:
    mine = G.username == username
    return or_(mine, G.org == org) if org else mine


class GrantRepo(RecordRepo[Grant]):
    table = t.grants
    to_record = staticmethod(_grant)

    def get(self, grant_id: str | None) -> Grant | None:
        return None if grant_id is None else self.first(G.id == grant_id)

    def by_ids(self, ids: list[str]) -> dict[str, Grant]:
        if not ids:
            return {}
        return {r.id: _grant(r) for r in self.conn.execute(select(t.grants).where(G.id.in_(ids)))}

    def held_by(self, username: str, org: str | None = None, *, dataset: str | None = None
                ) -> list[Grant]:
        """Grants a user holds (and, with ``org``, their org's), newest first."""
        cond = _holder(username, org)
        if dataset is not None:
            cond = and_(cond, G.dataset == dataset)
        return [_grant(r) for r in self.conn.execute(
            select(t.grants).where(cond).order_by(G.created_at.desc()))]

    def search(self, window: Window, *, now: str, username: str | None = None,
               org: str | None = None) -> Found[Grant]:
        """A page of grants, newest first (``username``: only those it holds, with ``org``'s),
        searched in holder, org, dataset, id and the status shown (``expired`` once past
        ``now``)."""
        shown = case((and_(G.status == "active", G.expires_at <= now), "expired"),
                     else_=G.status)
        query = select(t.grants)
        if username is not None:
            query = query.where(_holder(username, org))
        return self.window(query, window, searched=(G.username, G.org, G.dataset, shown, G.id),
                           order=(G.created_at.desc(), G.id)).map(_grant)

    def all(self) -> list[Grant]:
        return [_grant(r) for r in self.conn.execute(select(t.grants).order_by(G.created_at.desc()))]

    def count_active(self, dataset: str) -> int:
        return int(self.conn.execute(select(func.count()).select_from(t.grants).where(
            and_(G.dataset == dataset, G.status == "active"))).scalar() or 0)

    def add(self, *, grant_id: str, dataset: str, budget: Budget, username: str | None,
            org: str | None, created_at: str, expires_at: str, created_by: str,
            request_id: str | None, conversion_delta: Budget = Budget()) -> Grant:
        self.conn.execute(insert(t.grants).values(
            id=grant_id, username=username, org=org, dataset=dataset,
            epsilon_total_units=budget.epsilon_units, epsilon_spent_units=0,
            delta_total_units=budget.delta_units, delta_spent_units=0,
            rho_total_units=budget.rho_units, rho_spent_units=0,
            conversion_delta_units=conversion_delta.delta_units, status="active",
            created_at=created_at, expires_at=expires_at, created_by=created_by,
            request_id=request_id))
        grant = self.get(grant_id)
        assert grant is not None
        return grant

    def revoke(self, grant_id: str, *, by: str, at: str, reason: str) -> None:
        self.conn.execute(update(t.grants).where(G.id == grant_id).values(
            status="revoked", revoked_by=by, revoked_at=at, revoke_reason=reason))

    def extend(self, grant_id: str, *, total: Budget, expires_at: str) -> None:
        self.conn.execute(update(t.grants).where(G.id == grant_id).values(
            epsilon_total_units=total.epsilon_units, delta_total_units=total.delta_units,
            rho_total_units=total.rho_units, expires_at=expires_at))

    def spend(self, grant_id: str, cost: Budget) -> None:
        self.conn.execute(update(t.grants).where(G.id == grant_id).values(
            epsilon_spent_units=G.epsilon_spent_units + cost.epsilon_units,
            delta_spent_units=G.delta_spent_units + cost.delta_units,
            rho_spent_units=G.rho_spent_units + cost.rho_units))

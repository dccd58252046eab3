"""Data-use applications: analysts apply, admins decide; open datasets grant themselves."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from gateway.adapters import tables as t
from gateway.domain.budget import Budget
from gateway.services.audit import AuditLog
from gateway.services.catalog import DatasetRecord
from gateway.services.common import SYSTEM, Principal, iso, new_id, now
from gateway.services.grants import DEFAULT_GRANT_DAYS, Ledger, default_delta_total


def auto_grant(
    conn: Connection, *, audit: AuditLog, ledger: Ledger, actor: Principal, rec: DatasetRecord,
    purpose: str = "automatic grant on first query of an open dataset",
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
        id=request_id, applicant=actor.username, org=actor.org, dataset=rec.name,
        purpose=purpose, epsilon_units=budget.epsilon_units, days=days, status="approved",
        auto_approved=True, created_at=stamp, decided_by=SYSTEM.username, decided_at=stamp,
        note="open dataset: approved automatically", grant_id=grant_id))
    audit.append(conn, action="request.auto_approve", outcome="ok", actor=actor, dataset=rec.name,
                 request_id=request_id, grant_id=grant_id, epsilon_units=budget.epsilon_units,
                 delta_units=budget.delta_units, detail={"purpose": purpose, "days": days})
    return conn.execute(select(t.grants).where(t.grants.c.id == grant_id)).one()

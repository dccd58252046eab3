"""Data-use applications."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, insert, select, update

from gateway.adapters.db import tables as t
from gateway.adapters.db.rows import RecordRepo, record_of
from gateway.domain.budget import Budget
from gateway.domain.paging import Found, Window
from gateway.domain.records import Application

A = t.applications.c


def _application(row: Any) -> Application:
    return record_of(Application, row, epsilon=Budget(row.epsilon_units),
                     auto_approved=bool(row.auto_approved))


class ApplicationRepo(RecordRepo[Application]):
    table = t.applications
    to_record = staticmethod(_application)

    def get(self, request_id: str | None) -> Application | None:
        return None if request_id is None else self.first(A.id == request_id)

    def list(self, *, applicant: str | None = None, status: str | None = None,
             exclude: str | None = None, limit: int | None = None) -> list[Application]:
        conds = []
        if applicant is not None:
            conds.append(A.applicant == applicant)
        if status is not None:
            conds.append(A.status == status)
        if exclude is not None:
            conds.append(A.id != exclude)
        query = select(t.applications).where(*conds).order_by(A.created_at.desc())
        return [_application(r) for r in self.conn.execute(
            query.limit(limit) if limit else query)]

    def search(self, window: Window, *, applicant: str | None = None,
               status: str | None = None) -> Found[Application]:
        """A page of applications, newest first, searched in applicant, org, dataset,
        purpose and id."""
        return self.window(select(t.applications), window,
                           equal=((A.applicant, applicant), (A.status, status)),
                           searched=(A.applicant, A.org, A.dataset, A.purpose, A.id),
                           order=(A.created_at.desc(), A.id)).map(_application)

    def pending(self, applicant: str, dataset: str) -> Application | None:
        return self.first(A.applicant == applicant, A.dataset == dataset, A.status == "pending")

    def add(self, application: Application) -> None:
        self.conn.execute(insert(t.applications).values(
            id=application.id, applicant=application.applicant, org=application.org,
            dataset=application.dataset, purpose=application.purpose,
            epsilon_units=application.epsilon.epsilon_units, days=application.days,
            status=application.status, auto_approved=application.auto_approved,
            created_at=application.created_at, decided_by=application.decided_by,
            decided_at=application.decided_at, note=application.note,
            grant_id=application.grant_id))

    def decide(self, request_id: str, *, was: str, status: str, by: str, at: str,
               note: str | None, grant_id: str | None = None) -> bool:
        """Move an application from ``was`` to ``status``; False if it was not ``was``."""
        return bool(self.conn.execute(update(t.applications).where(and_(
            A.id == request_id, A.status == was)).values(
            status=status, decided_by=by, decided_at=at, note=note, grant_id=grant_id)).rowcount)

"""The audit table: append one hashed entry after the last, page through, read in order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, insert, select

from gateway.adapters.db import tables as t
from gateway.adapters.db.rows import Repo

C = t.audit.c
COLUMNS = [c.name for c in t.audit.columns]
FILTERED = ("actor", "dataset", "action", "outcome", "query_id", "grant_id", "request_id")


def _where(equal: dict[str, str], since: str | None, until: str | None) -> list[Any]:
    conds: list[Any] = [getattr(C, name) == value for name, value in equal.items()
                        if name in FILTERED and value]
    if since:
        conds.append(C.at >= since)
    if until:
        conds.append(C.at <= until)
    return conds


class AuditRepo(Repo):
    def head(self) -> tuple[int, str] | None:
        """(seq, hash) of the last entry, or None for an empty log."""
        row = self.conn.execute(select(C.seq, C.hash).order_by(C.seq.desc()).limit(1)).first()
        return (int(row.seq), str(row.hash)) if row else None

    def add(self, entry: dict[str, Any]) -> None:
        self.conn.execute(insert(t.audit).values(**entry))

    def page(self, equal: dict[str, str], *, since: str | None, until: str | None,
             size: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        conds = _where(equal, since, until)
        total = self.conn.execute(select(func.count()).select_from(t.audit).where(*conds)).scalar()
        rows = self.conn.execute(select(t.audit).where(*conds).order_by(C.seq.desc())
                                 .limit(size).offset(offset)).mappings().all()
        return [dict(r) for r in rows], int(total or 0)

    def get(self, seq: int) -> dict[str, Any] | None:
        row = self.conn.execute(select(t.audit).where(C.seq == seq)).mappings().first()
        return dict(row) if row else None

    def in_order(self) -> Iterator[dict[str, Any]]:
        for row in self.conn.execute(select(t.audit).order_by(C.seq)).mappings():
            yield dict(row)

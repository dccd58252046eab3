"""The audit table: append one hashed entry after the last, page through, read in order;
and the checkpoint of its verification (one row)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, insert, select, update

from gateway.adapters.db import tables as t
from gateway.adapters.db.rows import Repo
from gateway.domain.audit import Checkpoint

C = t.audit.c
K = t.audit_checkpoint.c
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

    def in_order(self, after: int = 0) -> Iterator[dict[str, Any]]:
        """The entries in seq order (those after seq ``after``)."""
        for row in self.conn.execute(select(t.audit).where(C.seq > after)
                                     .order_by(C.seq)).mappings():
            yield dict(row)

    def hash_at(self, seq: int) -> str | None:
        return self.conn.execute(select(C.hash).where(C.seq == seq)).scalar()

    def checkpoint(self) -> tuple[Checkpoint, str] | None:
        """The verification checkpoint and its MAC, or None if none was kept yet."""
        row = self.conn.execute(select(t.audit_checkpoint).where(K.id == 1)).first()
        if row is None:
            return None
        return Checkpoint(int(row.seq), str(row.hash), row.full_at, int(row.full_seq),
                          None if row.full_bad_seq is None else int(row.full_bad_seq)), row.mac

    def keep_checkpoint(self, checkpoint: Checkpoint, mac: str, *,
                        was: str | None = None) -> bool:
        """Store ``checkpoint``; with ``was``, only over the one with that MAC (compare and
        set: a checkpoint another process moved meanwhile stays as it is)."""
        values = {"seq": checkpoint.seq, "hash": checkpoint.hash, "full_at": checkpoint.full_at,
                  "full_seq": checkpoint.full_seq, "full_bad_seq": checkpoint.full_bad_seq,
                  "mac": mac}
        where = [K.id == 1] if was is None else [K.id == 1, K.mac == was]
        if self.conn.execute(update(t.audit_checkpoint).where(*where).values(**values)).rowcount:
            return True
        if was is not None or self.checkpoint() is not None:
            return False
        self.conn.execute(insert(t.audit_checkpoint).values(id=1, **values))
        return True

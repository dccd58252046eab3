"""The audit log service: append entries in the caller's transaction, read, verify, export."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, func, insert, select

from gateway.adapters.db import Store
from gateway.adapters.db import tables as t
from gateway.domain.audit import GENESIS, ChainReport, canonical_json, entry_hash, verify_chain
from gateway.domain.errors import DomainError, InvalidRequest
from gateway.services.common import Principal, delta_text, eps_text, iso, now, parse_iso

AUDIT_COLUMNS = [c.name for c in t.audit.columns]
MAX_PAGE = 500


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    dataset: str | None = None
    action: str | None = None
    outcome: str | None = None
    since: str | None = None
    until: str | None = None
    query_id: str | None = None
    grant_id: str | None = None
    request_id: str | None = None


class AuditLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    def append(
        self, conn: Connection, *, action: str, outcome: str,
        actor: Principal | None = None, dataset: str | None = None,
        request_id: str | None = None, grant_id: str | None = None, query_id: str | None = None,
        epsilon_units: int | None = None, delta_units: int | None = None,
        detail: dict[str, Any] | None = None, actor_name: str | None = None,
    ) -> int:
        """Append one entry inside ``conn``'s (serialised) write transaction."""
        last = conn.execute(
            select(t.audit.c.seq, t.audit.c.hash).order_by(t.audit.c.seq.desc()).limit(1)
        ).first()
        entry: dict[str, Any] = {
            "seq": (last.seq + 1) if last else 1,
            "at": iso(now()),
            "actor": actor.username if actor else actor_name,
            "role": actor.role if actor else None,
            "action": action, "dataset": dataset, "request_id": request_id,
            "grant_id": grant_id, "query_id": query_id,
            "epsilon": eps_text(epsilon_units), "delta": delta_text(delta_units),
            "outcome": outcome, "detail": canonical_json(detail or {}),
            "prev_hash": last.hash if last else GENESIS,
        }
        entry["hash"] = entry_hash(entry)
        conn.execute(insert(t.audit).values(**entry))
        return int(entry["seq"])

    def record(self, **fields: Any) -> int:
        """Append one entry in its own transaction."""
        with self.store.write() as conn:
            return self.append(conn, **fields)

    def denied(
        self, actor: Principal | None, action: str, exc: DomainError, **fields: Any
    ) -> None:
        detail = {"code": exc.code, "reason": exc.message, **fields.pop("detail", {})}
        self.record(action=action, outcome="denied", actor=actor, detail=detail, **fields)
        exc.audited = True

    # -- reading -------------------------------------------------------------------------

    def _where(self, flt: AuditFilter) -> list[Any]:
        c, conds = t.audit.c, []
        for name in ("actor", "dataset", "action", "outcome", "query_id", "grant_id", "request_id"):
            value = getattr(flt, name)
            if value:
                conds.append(getattr(c, name) == value)
        for name, op in (("since", "__ge__"), ("until", "__le__")):
            value = getattr(flt, name)
            if value:
                try:
                    moment = iso(parse_iso(value))
                except ValueError as exc:
                    raise InvalidRequest(f"{name} must be an ISO 8601 time, got {value!r}") from exc
                conds.append(getattr(c.at, op)(moment))
        return conds

    def page(self, flt: AuditFilter, *, page: int, size: int) -> tuple[list[dict[str, Any]], int]:
        if page < 1 or not 1 <= size <= MAX_PAGE:
            raise InvalidRequest(f"page must be >= 1 and page_size in 1..{MAX_PAGE}")
        conds = self._where(flt)
        with self.store.read() as conn:
            total = conn.execute(select(func.count()).select_from(t.audit).where(*conds)).scalar()
            rows = conn.execute(
                select(t.audit).where(*conds).order_by(t.audit.c.seq.desc())
                .limit(size).offset((page - 1) * size)
            ).mappings().all()
        return [self.public(r) for r in rows], int(total or 0)

    def entry(self, seq: int) -> dict[str, Any] | None:
        with self.store.read() as conn:
            row = conn.execute(select(t.audit).where(t.audit.c.seq == seq)).mappings().first()
        return self.public(row) if row else None

    @staticmethod
    def public(row: Any) -> dict[str, Any]:
        out = dict(row)
        out["detail"] = json.loads(out["detail"])
        return out

    def _iter_rows(self) -> Iterator[dict[str, Any]]:
        with self.store.read() as conn:
            result = conn.execute(select(t.audit).order_by(t.audit.c.seq)).mappings()
            for row in result:
                yield dict(row)

    def verify(self) -> ChainReport:
        return verify_chain(self._iter_rows())

    def export(self, fmt: str) -> str:
        if fmt == "jsonl":
            return "".join(canonical_json(row) + "\n" for row in self._iter_rows())
        if fmt == "csv":
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=AUDIT_COLUMNS, lineterminator="\n")
            writer.writeheader()
            for row in self._iter_rows():
                writer.writerow(row)
            return buf.getvalue()
        raise InvalidRequest(f"format must be csv or jsonl, got {fmt!r}")


def verify_export(text: str, fmt: str) -> ChainReport:
    """Verify an exported log file offline (the same check as the live one)."""
    if fmt == "jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        rows = [_typed(r) for r in csv.DictReader(io.StringIO(text))]
    return verify_chain(rows)


def _typed(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {k: (v if v != "" else None) for k, v in row.items()}
    out["seq"] = int(row["seq"])
    return out


def report_json(report: ChainReport) -> dict[str, Any]:
    data = asdict(report)
    if report.ok:
        data.pop("first_bad_seq")
        data.pop("problem")
    return data

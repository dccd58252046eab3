"""The audit log service: append entries in the caller's transaction, read, verify, export."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from gateway.adapters.db import Store, Tx
from gateway.adapters.db.audit import COLUMNS as AUDIT_COLUMNS
from gateway.domain.audit import GENESIS, ChainReport, canonical_json, entry_hash, verify_chain
from gateway.domain.budget import Budget
from gateway.domain.errors import InvalidRequest, NotFound
from gateway.i18n import _l
from gateway.services.common import READERS, Principal, iso, now, parse_iso
from gateway.services.refusals import Refusals

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
        self.refusals = Refusals(self.record)

    def append(
        self, tx: Tx, *, action: str, outcome: str,
        actor: Principal | None = None, dataset: str | None = None,
        request_id: str | None = None, grant_id: str | None = None, query_id: str | None = None,
        cost: Budget | None = None, epsilon_only: bool = False,
        detail: dict[str, Any] | None = None, actor_name: str | None = None,
    ) -> int:
        """Append one entry inside ``tx``'s (serialised) write transaction. ``cost`` states
        epsilon and delta (``epsilon_only``: delta is left empty); a zCDP cost's rho goes into
        the detail (``rho``, ``accounting: zcdp``), its epsilon column stays 0."""
        if cost is not None and cost.rho_units:
            detail = {**(detail or {}), "rho": cost.rho_text, "accounting": "zcdp"}
        head = tx.audit.head()
        entry: dict[str, Any] = {
            "seq": head[0] + 1 if head else 1,
            "at": iso(now()),
            "actor": actor.username if actor else actor_name,
            "role": actor.role if actor else None,
            "action": action, "dataset": dataset, "request_id": request_id,
            "grant_id": grant_id, "query_id": query_id,
            "epsilon": cost.epsilon_text if cost is not None else None,
            "delta": cost.delta_text if cost is not None and not epsilon_only else None,
            "outcome": outcome, "detail": canonical_json(detail or {}),
            "prev_hash": head[1] if head else GENESIS,
        }
        entry["hash"] = entry_hash(entry)
        tx.audit.add(entry)
        return int(entry["seq"])

    def record(self, **fields: Any) -> int:
        """Append one entry in its own transaction."""
        with self.store.writing() as tx:
            return self.append(tx, **fields)

    # -- reading -------------------------------------------------------------------------

    def page(self, flt: AuditFilter, *, page: int, size: int,
             actor: Principal | None = None) -> tuple[list[dict[str, Any]], int]:
        """A page of entries, newest first (``actor``: checked to be an auditor or admin)."""
        with self.refusals(actor, "audit.list"):
            if actor is not None:
                actor.require(*READERS, full_scope=True)
            if page < 1 or not 1 <= size <= MAX_PAGE:
                raise InvalidRequest(_l(
                    "page must be >= 1 and page_size in 1..%(max_page)s",
                    max_page=MAX_PAGE))
            since, until = _moment("since", flt.since), _moment("until", flt.until)
            equal = {k: v for k, v in asdict(flt).items() if k not in ("since", "until") and v}
            with self.store.reading() as tx:
                rows, total = tx.audit.page(equal, since=since, until=until, size=size,
                                            offset=(page - 1) * size)
        return [self.public(r) for r in rows], total

    def entry(self, seq: int, actor: Principal | None = None) -> dict[str, Any]:
        with self.refusals(actor, "audit.entry", detail={"seq": seq}):
            if actor is not None:
                actor.require(*READERS, full_scope=True)
            with self.store.reading() as tx:
                row = tx.audit.get(seq)
            if row is None:
                raise NotFound(_l("no audit entry %(seq)s", seq=seq))
        return self.public(row)

    @staticmethod
    def public(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "detail": json.loads(row["detail"])}

    def _in_order(self) -> Iterator[dict[str, Any]]:
        with self.store.reading() as tx:
            yield from tx.audit.in_order()

    def verify(self, actor: Principal | None = None) -> ChainReport:
        with self.refusals(actor, "audit.verify"):
            if actor is not None:
                actor.require(*READERS, full_scope=True)
        return verify_chain(self._in_order())

    def export(self, fmt: str, actor: Principal | None = None,
               roles: tuple[str, ...] = ("auditor",), **detail: Any) -> str:
        """The whole log as csv or jsonl; with ``actor`` (one of ``roles``; the CLI, which can
        read the store's files anyway, passes its own), the export is audited."""
        with self.refusals(actor, "audit.export", detail={"format": fmt[:8]}):
            if actor is not None:
                actor.require(*roles, full_scope=True)
            if fmt not in ("csv", "jsonl"):
                raise InvalidRequest(_l("format must be csv or jsonl, got %(fmt)s", fmt=repr(fmt)))
        if fmt == "jsonl":
            body = "".join(canonical_json(row) + "\n" for row in self._in_order())
        else:
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=AUDIT_COLUMNS, lineterminator="\n")
            writer.writeheader()
            for row in self._in_order():
                writer.writerow(row)
            body = buf.getvalue()
        if actor is not None:
            self.record(action="audit.export", outcome="ok", actor=actor,
                        detail={"format": fmt, **detail})
        return body


def _moment(name: str, value: str | None) -> str | None:
    if not value:
        return None
    try:
        return iso(parse_iso(value))
    except ValueError as exc:
        raise InvalidRequest(_l(
            "%(name)s must be an ISO 8601 time, got %(value)s",
            name=name, value=repr(value))) from exc


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

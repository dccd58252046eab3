"""The audit log service: append entries in the caller's transaction, read, verify, export.

Verifying: :meth:`AuditLog.verify` recomputes the whole chain from its first entry (the
API, the CLI, the console's "verify the entire chain"); :meth:`AuditLog.check`, what the
audit page shows on every load, recomputes only the entries after the store's checkpoint
(gateway/domain/audit.py). Each moves the checkpoint forward: a full verification to the
last entry that verified (before the first damaged one, so every later check finds the
damage again), a check that finds no damage to the head. A checkpoint whose MAC verifies
is a keyed anchor, never moved back: a chain cut short below it, or whose entry at its seq
has another hash, is damaged (the whole chain is verified and the damage reported, on every
load until the log is repaired). A checkpoint whose MAC does not verify is ignored (the
whole chain is verified) and the audit page says it was altered; only a verification of the
entire chain (the button, the CLI, the API) replaces it.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

from gateway.adapters.db import Store, Tx
from gateway.adapters.db.audit import COLUMNS as AUDIT_COLUMNS
from gateway.domain.audit import (
    GENESIS,
    ChainReport,
    Checkpoint,
    canonical_json,
    entry_hash,
    verify_chain,
)
from gateway.domain.budget import Budget
from gateway.domain.errors import InvalidRequest, NotFound, Unavailable
from gateway.i18n import _l
from gateway.services.common import READERS, Principal, iso, now, parse_iso
from gateway.services.refusals import Refusals

log = logging.getLogger(__name__)
MAX_PAGE = 500


def checkpoint_key(secret: str) -> bytes:
    """The key of the checkpoint's MAC, derived from a secret every replica shares."""
    return hmac.new(secret.encode(), b"dpsandbox audit checkpoint", hashlib.sha256).digest()


@dataclass(frozen=True)
class ChainCheck:
    """The chain as the audit page shows it: ``report`` over the whole chain, in which the
    entries after seq ``checked_after`` were recomputed now (0: all of them), and the last
    verification of the entire chain (``full_at`` None: none yet)."""

    report: ChainReport
    checked_after: int
    full_at: str | None
    full_seq: int
    full_bad_seq: int | None
    checkpoint_altered: bool = False  # the stored checkpoint's MAC did not verify


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
    def __init__(self, store: Store, *, checkpoint_key: bytes | None = None) -> None:
        """``checkpoint_key``: the MAC key of the verification checkpoint; without one no
        checkpoint is trusted, and every check verifies the whole chain."""
        self.store = store
        self.refusals = Refusals(self.record)
        self.checkpoint_key = checkpoint_key

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

    # -- verifying -----------------------------------------------------------------------

    def verify(self, actor: Principal | None = None) -> ChainReport:
        """Recompute the entire chain from its first entry (and move the checkpoint)."""
        with self.refusals(actor, "audit.verify"):
            if actor is not None:
                actor.require(*READERS, full_scope=True)
        kept, _altered = self._checkpoint()
        anchor = kept[0] if kept is not None and kept[0].seq else None
        report = verify_chain(self._in_order(),
                              anchor=(anchor.seq, anchor.hash) if anchor is not None else None)
        # Damage below the anchor leaves it where it is (_keep), so every later load reports it.
        self._keep(Checkpoint(report.entries, report.head, full_at=iso(now()),
                              full_seq=report.entries, full_bad_seq=report.first_bad_seq))
        return report

    def check(self, actor: Principal | None = None) -> ChainCheck:
        """Recompute the entries after the checkpoint, linked to its hash (the entire chain
        if there is none, if its MAC fails, or if the log is damaged at or before it)."""
        with self.refusals(actor, "audit.verify"):
            if actor is not None:
                actor.require(*READERS, full_scope=True)
        kept, altered = self._checkpoint()
        if altered:  # the page says so; a verification of the entire chain replaces it
            return ChainCheck(verify_chain(self._in_order()), 0, None, 0, None,
                              checkpoint_altered=True)
        report = None
        if kept is not None and not kept[0].damaged_before:
            report = self._verify_after(kept[0])
        if kept is None or report is None:
            report = self.verify()
            kept, _altered = self._checkpoint()
            return self._checked(report, 0, kept[0] if kept else None)
        checkpoint, mac = kept
        if report.ok and report.entries > checkpoint.seq:
            self._keep(replace(checkpoint, seq=report.entries, hash=report.head), was=mac)
        return self._checked(report, checkpoint.seq, checkpoint)

    def _verify_after(self, checkpoint: Checkpoint) -> ChainReport | None:
        """The entries after ``checkpoint``, linked to its hash; None if its own entry no
        longer carries that hash (edited or gone: the log was damaged at or before it, which
        only a verification of the entire chain can name)."""
        with self.store.reading() as tx:
            if checkpoint.seq and tx.audit.hash_at(checkpoint.seq) != checkpoint.hash:
                log.warning("the audit entry at the checkpoint's seq %s is gone or has "
                            "another hash: verifying the entire chain", checkpoint.seq)
                return None
            return verify_chain(tx.audit.in_order(after=checkpoint.seq),
                                after=checkpoint.seq, prev=checkpoint.hash)

    @staticmethod
    def _checked(report: ChainReport, after: int, checkpoint: Checkpoint | None) -> ChainCheck:
        if checkpoint is None:  # the store would not keep it: the full run is all we know
            return ChainCheck(report, 0, None, 0, None)
        return ChainCheck(report, after, checkpoint.full_at, checkpoint.full_seq,
                          checkpoint.full_bad_seq)

    def _checkpoint(self) -> tuple[tuple[Checkpoint, str] | None, bool]:
        """The stored checkpoint and its MAC, if it verifies under our key; and whether a
        stored one was altered (its MAC does not verify)."""
        if self.checkpoint_key is None:
            return None, False
        with self.store.reading() as tx:
            kept = tx.audit.checkpoint()
        if kept is None or kept[0].signed_by(self.checkpoint_key, kept[1]):
            return kept, False
        log.warning("the audit checkpoint's MAC does not verify: it is ignored")
        return None, True

    def _keep(self, checkpoint: Checkpoint, *, was: str | None = None) -> None:
        """Store ``checkpoint`` (with ``was``: only over the one with that MAC; without, a
        trusted stored one further on keeps its seq and hash: an anchor never moves back).
        Verifying reads: a store that cannot be written now keeps the old checkpoint."""
        key = self.checkpoint_key
        if key is None:
            return
        try:
            with self.store.writing() as tx:
                stored = tx.audit.checkpoint() if was is None else None
                if (stored is not None and stored[0].signed_by(key, stored[1])
                        and stored[0].seq > checkpoint.seq):
                    checkpoint = replace(checkpoint, seq=stored[0].seq, hash=stored[0].hash)
                tx.audit.keep_checkpoint(checkpoint, checkpoint.mac(key), was=was)
        except Unavailable:
            log.warning("the audit checkpoint could not be stored (store unavailable)")

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
    data = {**asdict(report), "problem": None if report.problem is None else str(report.problem)}
    if report.ok:
        data.pop("first_bad_seq")
        data.pop("problem")
    return data

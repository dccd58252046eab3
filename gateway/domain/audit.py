"""The audit chain: each entry's hash covers the previous hash and the entry itself.

``hash = sha256(prev_hash || canonical_json(entry))``. Editing a row changes its hash;
deleting or reordering rows breaks the link to the previous hash or the seq order.
:func:`verify_chain` names the first damaged entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64

# Fields covered by the hash, in this order; ``hash`` itself is not.
HASHED_FIELDS = (
    "seq", "at", "actor", "role", "action", "dataset", "request_id", "grant_id",
    "query_id", "epsilon", "delta", "outcome", "detail", "prev_hash",
)
OUTCOMES = ("ok", "denied", "error")


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_hash(entry: Mapping[str, Any]) -> str:
    body = {name: entry.get(name) for name in HASHED_FIELDS}
    return hashlib.sha256((str(entry["prev_hash"]) + canonical_json(body)).encode()).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    head: str
    first_bad_seq: int | None = None
    problem: str | None = None


def verify_chain(entries: Iterable[Mapping[str, Any]]) -> ChainReport:
    """Recompute the chain in seq order (entries must come sorted by seq)."""
    prev, expected_seq, count = GENESIS, 1, 0
    for entry in entries:
        seq = int(entry["seq"])
        if seq != expected_seq:
            problem = "missing entry" if seq > expected_seq else "out of order"
            return ChainReport(False, count, prev, expected_seq, f"{problem} at seq {expected_seq}")
        if entry["prev_hash"] != prev:
            return ChainReport(False, count, prev, seq, f"seq {seq} does not link to seq {seq - 1}")
        if entry_hash(entry) != entry["hash"]:
            return ChainReport(False, count, prev, seq, f"seq {seq} was altered")
        prev, expected_seq, count = entry["hash"], seq + 1, count + 1
    return ChainReport(True, count, prev)

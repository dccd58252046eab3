"""The audit chain: each entry's hash covers the previous hash and the entry itself.

``hash = sha256(prev_hash || canonical_json(entry))``. Editing a row changes its hash;
deleting or reordering rows breaks the link to the previous hash or the seq order.
:func:`verify_chain` names the first damaged entry.

A :class:`Checkpoint` remembers how far the chain was verified (the seq and hash of the
last entry that verified), so the next check recomputes only the entries after it, and
when the whole chain was last verified from the first entry. It carries a MAC under a
gateway secret: a checkpoint edited in the store does not verify, and is then ignored
(the whole chain is verified instead). A checkpoint whose MAC verifies is a keyed anchor:
a chain that no longer reaches its seq (the newest entries deleted) or whose entry there
no longer carries its hash (an entry rewritten together with every later hash) is damaged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.domain.text import Text, _l

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
    problem: Text | None = None  # shown in the reader's language (str(): the current one)


def verify_chain(entries: Iterable[Mapping[str, Any]], *, after: int = 0,
                 prev: str = GENESIS, anchor: tuple[int, str] | None = None) -> ChainReport:
    """Recompute the chain in seq order (entries must come sorted by seq): from the first
    entry, or the entries after seq ``after`` whose hash is ``prev`` (a checkpoint; the
    report then counts the entries up to it as verified). ``anchor``: the (seq, hash) of an
    entry verified before (a trusted checkpoint); a chain that ends before it, or whose entry
    there has another hash, is damaged."""
    expected_seq, count = after + 1, after
    for entry in entries:
        seq = int(entry["seq"])
        if seq != expected_seq:
            problem = (_l("missing entry at seq %(seq)s", seq=expected_seq) if seq > expected_seq
                       else _l("out of order at seq %(seq)s", seq=expected_seq))
            return ChainReport(False, count, prev, expected_seq, problem)
        if entry["prev_hash"] != prev:
            return ChainReport(False, count, prev, seq, _l(
                "seq %(seq)s does not link to seq %(before)s", seq=seq, before=seq - 1))
        if entry_hash(entry) != entry["hash"]:
            return ChainReport(False, count, prev, seq, _l("seq %(seq)s was altered", seq=seq))
        if anchor is not None and seq == anchor[0] and entry["hash"] != anchor[1]:
            return ChainReport(False, count, prev, seq, _l(
                "seq %(seq)s no longer has the hash it was verified with: it or an earlier "
                "entry was rewritten, with every later hash", seq=seq))
        prev, expected_seq, count = entry["hash"], seq + 1, count + 1
    if anchor is not None and count < anchor[0]:
        return ChainReport(False, count, prev, count + 1, _l(
            "the entries after seq %(last)s are missing, but the chain was verified up to "
            "seq %(seq)s: the newest entries were deleted", last=count, seq=anchor[0]))
    return ChainReport(True, count, prev)


@dataclass(frozen=True)
class Checkpoint:
    """The chain verified up to ``seq`` (whose hash is ``hash``; 0 and GENESIS: nothing
    yet); ``full_at``: when it was last verified from the first entry, up to ``full_seq``,
    and the first damaged entry that found (None: intact)."""

    seq: int
    hash: str
    full_at: str | None = None
    full_seq: int = 0
    full_bad_seq: int | None = None

    @property
    def damaged_before(self) -> bool:
        """The last verification of the entire chain found damage at or before ``seq``
        (which a check of the entries after it cannot see)."""
        return self.full_bad_seq is not None and self.full_bad_seq <= self.seq

    def mac(self, key: bytes) -> str:
        body = canonical_json([self.seq, self.hash, self.full_at, self.full_seq,
                               self.full_bad_seq])
        return hmac.new(key, f"audit-checkpoint:{body}".encode(), hashlib.sha256).hexdigest()

    def signed_by(self, key: bytes, mac: str) -> bool:
        return hmac.compare_digest(self.mac(key), mac)

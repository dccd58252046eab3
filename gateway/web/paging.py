"""Search and pages for the console's lists (users, applications, grants, queries).

The services return a list in order; a page filters it by a case-insensitive substring of
the named fields and cuts one page. The lists are small (a platform's accounts, decisions
and grants); the audit log, which is not, pages in the store (gateway/services/audit.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

PAGE_SIZE = 25


@dataclass(frozen=True)
class Paged:
    items: list[dict[str, Any]]
    total: int
    page: int
    pages: int
    q: str
    base: str
    keep: Mapping[str, str] = field(default_factory=dict)  # other filters to carry along

    def link(self, page: int, q: str | None = None) -> str:
        params = {**self.keep, "q": self.q if q is None else q, "page": str(page)}
        return self.base + "?" + urlencode({k: v for k, v in params.items() if v and v != "1"})


def paginate(rows: Iterable[dict[str, Any]], *, q: str | None, fields: tuple[str, ...],
             page: int, base: str, keep: Mapping[str, str] | None = None,
             size: int = PAGE_SIZE) -> Paged:
    needle = (q or "").strip().lower()
    found = [r for r in rows
             if not needle or any(needle in str(r.get(f) or "").lower() for f in fields)]
    pages = max(1, -(-len(found) // size))
    page = min(max(1, page), pages)
    return Paged(found[(page - 1) * size: page * size], len(found), page, pages,
                 (q or "").strip(), base, dict(keep or {}))

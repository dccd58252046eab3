"""Search and pages for the console's lists (users, applications, grants, queries).

The store filters by a case-insensitive substring of a list's named columns, counts and
cuts one page (``LIMIT``/``OFFSET``, :class:`gateway.domain.paging.Window`); this module
only turns that page into the links of the pager, carrying the list's other filters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from gateway.domain.paging import Found, Window


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


def paged(found: Found[dict[str, Any]], window: Window, *, base: str,
          keep: Mapping[str, str] | None = None) -> Paged:
    return Paged(found.items, found.total, found.page, window.pages(found.total), window.needle,
                 base, dict(keep or {}))


def by_status(pages: Callable[..., Found[dict[str, Any]]], actor: Any, window: Window,
              status: str, *, base: str) -> Paged:
    """One page of a list filtered by ``status`` (``all``: unfiltered); its links keep it."""
    found = pages(actor, window, status=None if status == "all" else status)
    return paged(found, window, base=base, keep={"status": status})

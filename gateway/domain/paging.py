"""One page of a long list, as the store cuts it: a search text, a page number and size.

    window = Window(search="acme", page=2)        # what the reader asked for
    found = tx.grants.window(window, ...)         # the store filters, counts, cuts (SQL)
    found.items, found.total, found.page          # the page shown (the last one at most)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from gateway.domain.errors import InvalidRequest
from gateway.domain.text import _l

T = TypeVar("T")
U = TypeVar("U")
PAGE_SIZE = 25
MAX_PAGE_SIZE = 500
MAX_SEARCH = 64


@dataclass(frozen=True)
class Window:
    """A case-insensitive substring searched in a list's named columns, and one page."""

    search: str = ""
    page: int = 1
    size: int = PAGE_SIZE

    def __post_init__(self) -> None:
        if self.page < 1 or not 1 <= self.size <= MAX_PAGE_SIZE:
            raise InvalidRequest(_l("page must be >= 1 and page_size in 1..%(max_page)s",
                                    max_page=MAX_PAGE_SIZE))
        if len(self.search) > MAX_SEARCH:
            raise InvalidRequest(_l("a search is at most %(max)s characters", max=MAX_SEARCH))

    @property
    def needle(self) -> str:
        return self.search.strip()

    def pages(self, total: int) -> int:
        return max(1, -(-total // self.size))

    def shown_page(self, total: int) -> int:
        """The page asked for, or the last one when the list is shorter."""
        return min(self.page, self.pages(total))

    def offset(self, total: int) -> int:
        return (self.shown_page(total) - 1) * self.size


@dataclass(frozen=True)
class Found(Generic[T]):
    """The items of one page, how many match in all, and which page they are."""

    items: list[T]
    total: int
    page: int

    def map(self, shown: Callable[[T], U]) -> Found[U]:
        return Found([shown(item) for item in self.items], self.total, self.page)

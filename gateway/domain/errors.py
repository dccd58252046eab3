"""Errors the domain raises; each carries the contract's stable ``code``.

    DomainError
     ├── Unauthenticated      401 unauthenticated
     ├── Forbidden            403 forbidden
     │    ├── GrantRequired    403 grant_required
     │    └── GrantExpired     403 grant_expired
     ├── NotFound             404 not_found
     ├── InvalidRequest       422 invalid_request
     │    └── UnsupportedQuery 422 unsupported_query
     ├── Conflict             409 conflict
     │    └── BudgetExhausted  409 budget_exhausted
     ├── Unavailable          503 unavailable (the store is down, full or read-only: retry)
     │    └── ReleasePending   503 release_pending (the store failed AFTER the charge: the
     │                         query waits for recovery; fetch it by id, do not send it again)
     └── InternalError        500 internal (a bug: say so)

The HTTP layer maps ``code`` to a status in one place (gateway/api/errors.py).
A message is English (``message``: what the audit log and the server's log keep) and is
shown in the reader's language by ``localized()`` when it was written translatable
(a :class:`~gateway.domain.text.Text` from ``_l(...)``, see gateway/domain/text.py).
"""

from __future__ import annotations

from gateway.domain.text import N_, Joined, Text, _l, gettext, localize


class DomainError(Exception):
    code = "internal"

    def __init__(self, message: str | Text | Joined) -> None:
        self.text = message
        self.message = message.english if isinstance(message, Text | Joined) else message
        super().__init__(self.message)

    @property
    def fields(self) -> dict[str, str]:
        """What the error body carries besides ``code`` and ``message`` (ids to act on)."""
        return {}

    def localized(self) -> str:
        """The message in the current request's or command's language."""
        return localize(self.text)


class Unauthenticated(DomainError):
    code = "unauthenticated"


class Forbidden(DomainError):
    code = "forbidden"


class GrantRequired(Forbidden):
    code = "grant_required"


class GrantExpired(Forbidden):
    code = "grant_expired"


class NotFound(DomainError):
    code = "not_found"


class InvalidRequest(DomainError):
    code = "invalid_request"


class UnsupportedQuery(InvalidRequest):
    code = "unsupported_query"


class Conflict(DomainError):
    code = "conflict"


class BudgetExhausted(Conflict):
    code = "budget_exhausted"


class Unavailable(DomainError):
    """An operational fault outside the code (disk full, database down or read-only, lock
    timeout) before anything was charged: nothing was released or charged, and the same
    request may succeed later. A fault after a charge is :class:`ReleasePending`."""

    code = "unavailable"
    retry_after_seconds = 5

    def __init__(self, message: str | Text | None = None) -> None:
        super().__init__(message or _l("the store is unavailable; try again shortly"))


class ReleasePending(Unavailable):
    """The store failed after ``query_id`` was charged, before its answer was recorded. The
    charge stands and nothing was released; the query stays ``running`` and recovery
    releases it once the store is back (``GET /v1/queries/{id}`` then returns it). Sending
    the request again without its Idempotency-Key would be a new query, charged again."""

    code = "release_pending"

    def __init__(self, query_id: str) -> None:
        self.query_id = query_id
        super().__init__(_l(
            "query %(query_id)s was charged, but the store failed before its answer was "
            "recorded: the charge stands and nothing was released. Do not send the query "
            "again (it would be charged again); the gateway releases it once the store is "
            "back, and GET /v1/queries/%(query_id)s returns it then", query_id=query_id))

    @property
    def fields(self) -> dict[str, str]:
        return {"query_id": self.query_id}


class InternalError(DomainError):
    code = "internal"

    def __init__(self, message: str | Text) -> None:
        super().__init__(message)
        self.message = f"{self.message} {BUG_NOTE}"

    def localized(self) -> str:
        return f"{localize(self.text)} {gettext(BUG_NOTE)}"


BUG_NOTE = N_("(this is a bug in dp-sandbox; it has been logged)")


STATUS_BY_CODE: dict[str, int] = {
    "unauthenticated": 401,
    "forbidden": 403,
    "grant_required": 403,
    "grant_expired": 403,
    "not_found": 404,
    "invalid_request": 422,
    "unsupported_query": 422,
    "conflict": 409,
    "budget_exhausted": 409,
    "unavailable": 503,
    "release_pending": 503,
    "internal": 500,
}

"""Errors of the client library, mirroring the gateway's error codes.

    DPSandboxError                 anything this library raises on purpose
     ├── Unauthenticated           401 unauthenticated  (token missing, expired or revoked)
     ├── AccessDenied              403 forbidden        (your role may not do this)
     │    ├── GrantRequired        403 grant_required   (apply for access first)
     │    └── GrantExpired         403 grant_expired    (the grant ran out of time)
     ├── NotFound                  404 not_found
     ├── InvalidRequest            422 invalid_request
     │    └── UnsupportedQuery     422 unsupported_query
     ├── Conflict                  409 conflict
     │    └── BudgetExhausted      409 budget_exhausted
     ├── QueryRejected             a reviewer rejected a query on restricted data
     ├── ReviewTimeout             still pending review when the wait ended
     ├── ReleasePending            503 release_pending  (charged, but the gateway's store
     │                             failed before the answer was recorded: fetch it later
     │                             by ``query_id``, do not run the query again)
     ├── GatewayUnreachable        no answer from the gateway (network, timeout)
     ├── ServerError               500 or an answer that is not the contract's JSON
     └── InvalidQuery              (also a ValueError) a query written wrongly on this side,
                                   e.g. a ``where`` string that cannot be parsed; nothing sent

Every error carries the gateway's ``code`` and ``message`` and the HTTP ``status``.
httpx's own errors are translated here, once (:func:`translate_transport_error`).
A query written wrongly on this side (a ``where`` string that cannot be parsed) raises
:class:`InvalidQuery`, a :class:`ValueError` too, before anything is sent. In IPython these errors show as one
line, without this library's frames (:mod:`sandbox.client._display`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from sandbox.client._i18n import _

if TYPE_CHECKING:
    from sandbox.client._pending import PendingQuery


class DPSandboxError(Exception):
    """Base class: ``code`` (the gateway's stable code), ``message``, ``status``."""

    code = "error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return f"{self.message} [{self.code}]"


class Unauthenticated(DPSandboxError):
    code = "unauthenticated"


class AccessDenied(DPSandboxError):
    code = "forbidden"


class GrantRequired(AccessDenied):
    code = "grant_required"


class GrantExpired(AccessDenied):
    code = "grant_expired"


class NotFound(DPSandboxError):
    code = "not_found"


class InvalidRequest(DPSandboxError):
    code = "invalid_request"


class UnsupportedQuery(InvalidRequest):
    code = "unsupported_query"


class Conflict(DPSandboxError):
    code = "conflict"


class BudgetExhausted(Conflict):
    code = "budget_exhausted"


class QueryRejected(DPSandboxError):
    """The query was held for review and an admin rejected it; ``message`` is their note."""

    code = "rejected"

    def __init__(self, message: str, *, query_id: str) -> None:
        super().__init__(message)
        self.query_id = query_id


class ReviewTimeout(DPSandboxError, TimeoutError):
    """Still ``pending_review`` when the wait ended; ``pending.result()`` waits again."""

    code = "pending_review"

    def __init__(self, message: str, *, pending: PendingQuery) -> None:
        super().__init__(message)
        self.pending = pending


class ReleasePending(DPSandboxError):
    """The query was charged, but the gateway's store failed before its answer was
    recorded. The charge stands; the gateway releases the query once its store is back.
    ``gw.query_result(exc.query_id)`` fetches it then; running it again is a new charge."""

    code = "release_pending"

    def __init__(self, message: str, *, query_id: str, status: int | None = None) -> None:
        hint = _("gw.query_result({id!r}) fetches it once the gateway has released it").format(
            id=query_id)
        super().__init__(f"{message} ({hint})", status=status)
        self.query_id = query_id


class GatewayUnreachable(DPSandboxError):
    code = "unreachable"


class ServerError(DPSandboxError):
    code = "internal"


class InvalidQuery(DPSandboxError, ValueError):
    """A query this library could not build (nothing was sent to the gateway)."""

    code = "invalid_query"


_BY_CODE: dict[str, type[DPSandboxError]] = {
    cls.code: cls
    for cls in (Unauthenticated, AccessDenied, GrantRequired, GrantExpired, NotFound,
                InvalidRequest, UnsupportedQuery, Conflict, BudgetExhausted, ServerError)
}
_BY_STATUS: dict[int, type[DPSandboxError]] = {
    401: Unauthenticated, 403: AccessDenied, 404: NotFound, 409: Conflict,
    413: InvalidRequest, 422: InvalidRequest,
}


def error_from_response(response: httpx.Response) -> DPSandboxError:
    """The typed error for a gateway answer that is not a success."""
    status = response.status_code
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        code = str(error.get("code", ""))
        if code == ReleasePending.code and isinstance(error.get("query_id"), str):
            return ReleasePending(error["message"], query_id=error["query_id"], status=status)
        cls = _BY_CODE.get(code) or _BY_STATUS.get(status, ServerError)
        return cls(error["message"], status=status)
    text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    cls = _BY_STATUS.get(status, ServerError)
    message = _("the gateway answered HTTP {status} {reason}").format(
        status=status, reason=response.reason_phrase)
    return cls(message + (f": {text}" if text else ""), status=status)


def error_code(response: httpx.Response) -> str | None:
    """The contract's error ``code`` of an answer, if it has one."""
    try:
        body: Any = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code")) if isinstance(error, dict) else None


def translate_transport_error(exc: httpx.HTTPError, url: str) -> DPSandboxError:
    """An httpx failure without an HTTP answer (connection refused, timeout, ...)."""
    if isinstance(exc, httpx.TimeoutException):
        return GatewayUnreachable(
            _("the gateway at {url} did not answer in time; try again, or ask a smaller "
              "query").format(url=url))
    return GatewayUnreachable(
        _("could not reach the gateway at {url}: {error}").format(url=url, error=exc))

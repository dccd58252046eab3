"""One place where errors become the contract's JSON: {"error": {"code", "message"}}.

The handlers only translate: every refusal was audited where it was raised (by a service,
through :mod:`gateway.services.refusals`). The one exception is a body FastAPI refuses
before any service runs, which is handed to that same helper here. ``unavailable`` and
``release_pending`` (503) carry ``Retry-After``; ``release_pending`` also the charged
query's id (``query_id``), to fetch it by. An unexpected exception is a 500 that says it is a bug, never a
traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.api.deps import route_action
from gateway.domain.errors import STATUS_BY_CODE, DomainError, InvalidRequest, Unavailable
from gateway.domain.input_errors import describe
from gateway.i18n import N_, _, use_locale

log = logging.getLogger(__name__)
INTERNAL_ERROR = N_("internal error: this is a bug in dp-sandbox and has been logged; nothing "
                    "was released")
HTTP_CODES = {401: "unauthenticated", 403: "forbidden", 404: "not_found", 405: "not_found",
              409: "conflict", 413: "invalid_request", 422: "invalid_request"}


def error_response(code: str, message: str, status: int | None = None, *,
                   fields: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **(fields or {})}},
                        status_code=status or STATUS_BY_CODE.get(code, 500))


def _audit_invalid_body(request: Request, exc: InvalidRequest) -> None:
    services = getattr(request.app.state, "services", None)
    if services is not None and request.url.path.startswith("/v1"):
        services.audit.refusals.audit(getattr(request.state, "principal", None),
                                      route_action(request), exc)


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        response = error_response(exc.code, exc.localized(), fields=exc.fields)
        if isinstance(exc, Unavailable):
            response.headers["Retry-After"] = str(exc.retry_after_seconds)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        refused = InvalidRequest(describe(exc.errors()))  # English in the audit log
        await run_in_threadpool(_audit_invalid_body, request, refused)
        return error_response(refused.code, refused.localized())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        code = HTTP_CODES.get(exc.status_code, "invalid_request")
        message = str(exc.detail) if exc.status_code != 404 else _("no such endpoint")
        return error_response(code, message, STATUS_BY_CODE.get(code, exc.status_code))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        # This handler runs outside LocaleMiddleware (Starlette's outermost layer).
        with use_locale(getattr(request.state, "locale", None)):
            return error_response("internal", _(INTERNAL_ERROR), 500)

"""create_app(settings): the FastAPI gateway."""

from __future__ import annotations

import os
import threading

os.environ["RUST_BACKTRACE"] = "0"  # before opendp is imported anywhere (design.md)

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from gateway.api import docs, errors
from gateway.api.errors import error_response
from gateway.api.responses import ERRORS
from gateway.api.routes import (
    audit,
    auth,
    datasets,
    fits,
    grants,
    health,
    queries,
    requests,
    users,
)
from gateway.bootstrap import Services, bootstrap
from gateway.domain.errors import InvalidRequest, Unavailable
from gateway.i18n import LocaleMiddleware, _l
from gateway.services.recovery import RecoveryLoop
from gateway.settings import Settings
from gateway.web import router as console_router


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> FastAPI:
    services = services or bootstrap(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        loop = None
        if services.recovery is not None:  # heartbeat + orphaned queries (services/recovery.py)
            loop = RecoveryLoop(services.recovery, heartbeat=services.settings.heartbeat_seconds,
                                interval=services.settings.recovery_interval_seconds)
            loop.start()
        yield
        if loop is not None:
            await run_in_threadpool(loop.stop)
        if services.catalog.spark is not None:  # the SparkSession, if one was started
            await run_in_threadpool(services.catalog.spark.stop)
        services.store.dispose()

    app = FastAPI(title="dp-sandbox gateway", version="0.1.0", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url="/v1/openapi.json")
    app.state.services = services
    app.state.draining = threading.Event()  # set on SIGTERM by gateway/server.py
    errors.install(app)
    limit = services.settings.max_body_bytes

    @app.middleware("http")
    async def refuse_while_draining(request: Request,
                                    call_next: Callable[[Request], Awaitable[Response]]
                                    ) -> Response:
        if not app.state.draining.is_set() or request.url.path in health.ALWAYS_ANSWERED:
            return await call_next(request)
        exc = Unavailable(_l("this gateway is shutting down; retry and another one answers"))
        response = error_response(exc.code, exc.localized())
        response.headers["Retry-After"] = "1"
        response.headers["Connection"] = "close"
        return response

    @app.middleware("http")
    async def body_limit(request: Request,
                         call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        too_big = length is not None and (not length.isdigit() or int(length) > limit)
        if not too_big and length is None and request.method in ("POST", "PUT", "PATCH"):
            too_big = len(await request.body()) > limit
        if too_big:
            exc = InvalidRequest(_l("request body over %(limit)s bytes", limit=limit))
            await run_in_threadpool(services.audit.refusals.audit, None, "http body too large",
                                    exc, detail={"path": request.url.path[:200]})
            return error_response(exc.code, exc.localized())
        return await call_next(request)

    for module in (auth, users, datasets, grants, queries, fits, requests, audit):
        app.include_router(module.router, prefix="/v1", responses=ERRORS)
    app.include_router(console_router)  # the web console under /console (gateway/web)
    app.include_router(health.router)  # /healthz and /readyz for probes
    docs.install(app, openapi_url="/v1/openapi.json")  # offline /docs; / -> console
    app.add_middleware(LocaleMiddleware)  # outermost: the reader's language for all of it

    return app

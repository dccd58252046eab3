"""Probes for load balancers and Kubernetes: ``/healthz`` (the process answers) and
``/readyz`` (not draining after SIGTERM, and the store is reachable, writable and at this
gateway's migration head)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.adapters.db.health import store_state
from gateway.api.deps import ServicesDep
from gateway.i18n import _l

router = APIRouter(tags=["health"])
RETRY_AFTER_SECONDS = 5
ALWAYS_ANSWERED = ("/healthz", "/readyz")  # also while draining (gateway/server.py)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up and serving (it says nothing about the store)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "the store is not ready"}})
def readyz(svc: ServicesDep, request: Request) -> Any:
    """Ready for traffic: not draining, the store answers, accepts writes, and its
    migrations are current."""
    if request.app.state.draining.is_set():
        return JSONResponse({"status": "draining", "error": {
            "code": "unavailable", "message": str(_l("this gateway is shutting down"))}},
            status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    state = store_state(svc.store)
    body: dict[str, Any] = {"status": "ready" if state.ready else "unavailable",
                            "store": state.to_json()}
    if state.ready:
        return body
    body["error"] = {"code": "unavailable", "message": str(state.problem)}
    return JSONResponse(body, status_code=503,
                        headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

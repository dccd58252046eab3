"""Probes for load balancers and Kubernetes: ``/healthz`` (the process answers) and
``/readyz`` (the store is reachable, writable and at this gateway's migration head)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from gateway.adapters.db.health import store_state
from gateway.api.deps import ServicesDep

router = APIRouter(tags=["health"])
RETRY_AFTER_SECONDS = 5


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up and serving (it says nothing about the store)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "the store is not ready"}})
def readyz(svc: ServicesDep) -> Any:
    """Ready for traffic: the store answers, accepts writes, and its migrations are current."""
    state = store_state(svc.store)
    body: dict[str, Any] = {"status": "ready" if state.ready else "unavailable",
                            "store": state.to_json()}
    if state.ready:
        return body
    body["error"] = {"code": "unavailable", "message": str(state.problem)}
    return JSONResponse(body, status_code=503,
                        headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

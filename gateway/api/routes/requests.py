from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

from gateway.api.deps import CurrentUser, ServicesDep
from gateway.api.params import RecordId
from gateway.api.responses import ApplicationAnswer, answer_router
from gateway.api.schemas import ApplicationBody, ApprovalBody, RejectionBody

router = answer_router("requests")


@router.post("/requests", status_code=201, response_model=ApplicationAnswer)
def apply(body: ApplicationBody, actor: CurrentUser, svc: ServicesDep) -> dict[str, Any]:
    return svc.access.apply(actor, dataset=body.dataset, purpose=body.purpose,
                            epsilon=body.epsilon, days=body.days, org_grant=body.org_grant)


@router.get("/requests", response_model=list[ApplicationAnswer])
def list_requests(
    actor: CurrentUser, svc: ServicesDep,
    status: Annotated[str | None, Query(max_length=20)] = None,
) -> list[dict[str, Any]]:
    return svc.access.list(actor, status=status)


@router.get("/requests/{request_id}", response_model=ApplicationAnswer)
def get_request(request_id: RecordId, actor: CurrentUser, svc: ServicesDep) -> dict[str, Any]:
    return svc.access.get(actor, request_id)


@router.post("/requests/{request_id}/approve", response_model=ApplicationAnswer)
def approve(request_id: RecordId, body: ApprovalBody, actor: CurrentUser,
            svc: ServicesDep) -> dict[str, Any]:
    return svc.access.approve(actor, request_id, epsilon=body.epsilon, days=body.days,
                              note=body.note, extend_grant=body.extend_grant)


@router.post("/requests/{request_id}/reject", response_model=ApplicationAnswer)
def reject(request_id: RecordId, body: RejectionBody, actor: CurrentUser,
           svc: ServicesDep) -> dict[str, Any]:
    return svc.access.reject(actor, request_id, note=body.note)


@router.post("/requests/{request_id}/withdraw", response_model=ApplicationAnswer)
def withdraw(request_id: RecordId, actor: CurrentUser, svc: ServicesDep) -> dict[str, Any]:
    return svc.access.withdraw(actor, request_id)

from __future__ import annotations

from typing import Any

from gateway.api.deps import CurrentUser, ServicesDep
from gateway.api.params import RecordId
from gateway.api.responses import GrantAnswer, answer_router
from gateway.api.schemas import ExtendBody, GrantBody, NoteBody

router = answer_router("grants")


@router.get("/grants", response_model=list[GrantAnswer])
def list_grants(actor: CurrentUser, svc: ServicesDep) -> list[dict[str, Any]]:
    return svc.ledger.list(actor)


@router.post("/grants", status_code=201, response_model=GrantAnswer)
def give_grant(body: GrantBody, actor: CurrentUser, svc: ServicesDep) -> dict[str, Any]:
    return svc.ledger.give(actor, user=body.user, org=body.org, dataset=body.dataset,
                           epsilon=body.epsilon, delta=body.delta, days=body.days)


@router.get("/grants/{grant_id}", response_model=GrantAnswer)
def get_grant(grant_id: RecordId, actor: CurrentUser, svc: ServicesDep) -> dict[str, Any]:
    return svc.ledger.get(actor, grant_id)


@router.post("/grants/{grant_id}/revoke", response_model=GrantAnswer)
def revoke_grant(grant_id: RecordId, actor: CurrentUser, svc: ServicesDep,
                 body: NoteBody | None = None) -> dict[str, Any]:
    """Revoke a grant; ``note`` (the reason) is required, audited and shown to the holder."""
    return svc.ledger.revoke(actor, grant_id, body.note if body else "")


@router.post("/grants/{grant_id}/extend", response_model=GrantAnswer)
def extend_grant(grant_id: RecordId, body: ExtendBody, actor: CurrentUser,
                 svc: ServicesDep) -> dict[str, Any]:
    """Add epsilon (and perhaps days) to an active grant instead of giving a second one."""
    return svc.ledger.extend(actor, grant_id, epsilon=body.epsilon, days=body.days,
                             note=body.note)

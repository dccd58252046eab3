from __future__ import annotations

from typing import Any

from gateway.api.deps import CurrentUser, ServicesDep
from gateway.api.params import Username
from gateway.api.responses import UserAnswer, answer_router
from gateway.api.schemas import NoteBody, RoleBody, UserBody

router = answer_router("users")


@router.post("/users", status_code=201, response_model=UserAnswer)
def create_user(body: UserBody, actor: CurrentUser, svc: ServicesDep) -> dict[str, Any]:
    return svc.users.create(actor, username=body.username, role=body.role,
                            password=body.password, org=body.org)


@router.get("/users", response_model=list[UserAnswer])
def list_users(actor: CurrentUser, svc: ServicesDep) -> list[dict[str, Any]]:
    return svc.users.list(actor)


@router.post("/users/{username}/disable", response_model=UserAnswer)
def disable_user(username: Username, actor: CurrentUser, svc: ServicesDep,
                 body: NoteBody | None = None) -> dict[str, Any]:
    """Disable an account; ``note`` (the reason) is required and audited."""
    return svc.users.set_disabled(actor, username, disabled=True, reason=body.note if body else "")


@router.post("/users/{username}/enable", response_model=UserAnswer)
def enable_user(username: Username, actor: CurrentUser, svc: ServicesDep) -> dict[str, Any]:
    return svc.users.set_disabled(actor, username, disabled=False)


@router.post("/users/{username}/role", response_model=UserAnswer)
def set_role(username: Username, body: RoleBody, actor: CurrentUser, svc: ServicesDep) -> dict[str, Any]:
    return svc.users.set_role(actor, username, role=body.role, org=body.org)

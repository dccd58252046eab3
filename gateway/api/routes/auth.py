from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Request

from gateway.adapters.auth import secrets_equal
from gateway.api.deps import Claims, CurrentUser, ServicesDep
from gateway.api.responses import Me, TokenAnswer, answer_router
from gateway.api.schemas import SandboxRevokeBody, SandboxTokenBody, TokenBody
from gateway.bootstrap import Services

router = answer_router("auth")


@router.post("/auth/token", response_model=TokenAnswer)
def token(body: TokenBody, svc: ServicesDep, request: Request) -> dict[str, Any]:
    request.state.claimed_user = body.username[:64]
    return svc.users.login(body.username, body.password)


@router.post("/auth/sandbox-token", response_model=TokenAnswer)
def sandbox_token(
    body: SandboxTokenBody, svc: ServicesDep,
    x_hub_secret: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """For JupyterHub only: a sandbox-scoped token for an analyst's server."""
    return svc.users.sandbox_token(body.username,
                                   hub_secret_ok=_hub_secret_ok(svc, x_hub_secret))


@router.post("/auth/sandbox-token/revoke", status_code=204)
def revoke_sandbox_token(
    body: SandboxRevokeBody, svc: ServicesDep,
    x_hub_secret: Annotated[str | None, Header()] = None,
) -> None:
    """For JupyterHub only: the server stopped; its token and every refresh of it end."""
    svc.users.revoke_sandbox_session(jti=body.jti, username=body.username,
                                     hub_secret_ok=_hub_secret_ok(svc, x_hub_secret))


def _hub_secret_ok(svc: Services, secret: str | None) -> bool:
    return bool(secret) and secrets_equal(secret or "", svc.hub_secret)


@router.post("/auth/refresh", response_model=TokenAnswer)
def refresh(claims: Claims, actor: CurrentUser, svc: ServicesDep) -> dict[str, Any]:
    return svc.users.refresh(claims, actor)


@router.post("/auth/logout", status_code=204)
def logout(claims: Claims, actor: CurrentUser, svc: ServicesDep) -> None:
    """End this token on the server (it is refused from now on)."""
    svc.users.logout(actor, claims, via="api")


@router.get("/me", response_model=Me)
def me(actor: CurrentUser) -> dict[str, Any]:
    return {"username": actor.username, "role": actor.role, "org": actor.org,
            "scope": actor.scope}

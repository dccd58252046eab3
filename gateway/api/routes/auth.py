from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request

from gateway.adapters.auth import secrets_equal
from gateway.api.deps import Claims, CurrentUser, ServicesDep
from gateway.api.schemas import SandboxRevokeBody, SandboxTokenBody, TokenBody
from gateway.bootstrap import Services
from gateway.domain.errors import Unauthenticated

router = APIRouter(tags=["auth"])


@router.post("/auth/token")
def token(body: TokenBody, svc: ServicesDep, request: Request) -> dict[str, Any]:
    request.state.claimed_user = body.username[:64]
    return svc.users.login(body.username, body.password)


@router.post("/auth/sandbox-token")
def sandbox_token(
    body: SandboxTokenBody, svc: ServicesDep,
    x_hub_secret: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """For JupyterHub only: a sandbox-scoped token for an analyst's server."""
    _require_hub(svc, x_hub_secret)
    return svc.users.sandbox_token(body.username)


@router.post("/auth/sandbox-token/revoke", status_code=204)
def revoke_sandbox_token(
    body: SandboxRevokeBody, svc: ServicesDep,
    x_hub_secret: Annotated[str | None, Header()] = None,
) -> None:
    """For JupyterHub only: the server stopped; its token and every refresh of it end."""
    _require_hub(svc, x_hub_secret)
    svc.users.revoke_sandbox_session(jti=body.jti, username=body.username)


def _require_hub(svc: Services, secret: str | None) -> None:
    if not secret or not secrets_equal(secret, svc.hub_secret):
        raise Unauthenticated("this endpoint is for the hub; a valid X-Hub-Secret is required")


@router.post("/auth/refresh")
def refresh(claims: Claims, svc: ServicesDep) -> dict[str, Any]:
    return svc.users.refresh(claims)


@router.post("/auth/logout", status_code=204)
def logout(claims: Claims, actor: CurrentUser, svc: ServicesDep) -> None:
    """End this token on the server (it is refused from now on)."""
    svc.users.logout(actor, claims, via="api")


@router.get("/me")
def me(actor: CurrentUser) -> dict[str, Any]:
    return {"username": actor.username, "role": actor.role, "org": actor.org,
            "scope": actor.scope}

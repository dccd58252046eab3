"""Dependencies that routes read like sentences: ``actor: CurrentUser``, ``svc: ServicesDep``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.adapters.auth import TokenClaims
from gateway.bootstrap import Services
from gateway.services.common import Principal

_bearer = HTTPBearer(auto_error=False)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def route_action(request: Request) -> str:
    """How a refusal of this request is named in the audit log: ``http GET /v1/users``."""
    route = request.scope.get("route")
    return f"http {request.method} {getattr(route, 'path', request.url.path)}"


def get_session(
    request: Request, services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> tuple[TokenClaims, Principal]:
    """The bearer token's claims and the caller (a refusal is audited by the service)."""
    token = credentials.credentials if credentials and credentials.scheme.lower() == "bearer" \
        else None
    claims, principal = services.users.authenticate(token, action=route_action(request))
    request.state.principal = principal
    return claims, principal


Session = Annotated[tuple[TokenClaims, Principal], Depends(get_session)]


def get_claims(session: Session) -> TokenClaims:
    return session[0]


def get_principal(session: Session) -> Principal:
    return session[1]


Claims = Annotated[TokenClaims, Depends(get_claims)]
CurrentUser = Annotated[Principal, Depends(get_principal)]

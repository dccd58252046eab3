"""Dependencies that routes read like sentences: ``actor: CurrentUser``, ``svc: ServicesDep``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.adapters.auth import TokenClaims
from gateway.bootstrap import Services
from gateway.domain.errors import Unauthenticated
from gateway.services.common import Principal

_bearer = HTTPBearer(auto_error=False)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_claims(
    request: Request, services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenClaims:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("sign in first: send Authorization: Bearer <token>")
    return services.tokens.verify(credentials.credentials)


Claims = Annotated[TokenClaims, Depends(get_claims)]


def get_principal(request: Request, services: ServicesDep, claims: Claims) -> Principal:
    request.state.claimed_user = claims.username
    principal = services.users.principal(claims)
    request.state.principal = principal
    return principal


CurrentUser = Annotated[Principal, Depends(get_principal)]

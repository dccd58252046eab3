"""The console's session: a JWT in an HttpOnly cookie, and CSRF tokens for its forms.

The cookie holds the same token ``POST /v1/auth/token`` returns; every request verifies
it and re-reads the account (a disabled account or a changed role ends the session). A
form's CSRF token is an HMAC of the session's token id (``jti``) under the console secret
(``gateway/adapters/secrets.py``, shared by replicas), so it is bound to one sign-in and cannot be forged
by another site. The sign-in form itself, before any session, uses a random
double-submit cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Form, Request, Response

from gateway.adapters.auth import TokenClaims
from gateway.api.deps import ServicesDep
from gateway.bootstrap import Services
from gateway.domain.errors import Forbidden, Unauthenticated
from gateway.i18n import _l
from gateway.services.common import Principal
from gateway.web.render import SESSION_COOKIE

LOGIN_CSRF_COOKIE = "dps_console_login"
COOKIE_PATH = "/console"


class CsrfRefused(Forbidden):
    """A form without this session's CSRF token: another site may be posting it."""

    def __init__(self) -> None:
        super().__init__(
            "this form was refused because it did not carry this session's security token "
            "(CSRF check). Nothing was changed. Go back, reload the page and send it again.")


@dataclass(frozen=True)
class ConsoleSession:
    principal: Principal
    claims: TokenClaims
    csrf: str


def csrf_for(services: Services, jti: str) -> str:
    key = services.console_secret.encode()
    return hmac.new(key, f"csrf:{jti}".encode(), hashlib.sha256).hexdigest()


def is_secure(request: Request, services: Services) -> bool:
    return services.settings.cookie_secure or request.url.scheme == "https"


def start_session(request: Request, response: Response, services: Services, token: str,
                  ttl: int) -> None:
    # Lax, not Strict: the hub's link to /console is a top-level navigation that should
    # keep the session; every state change is a POST that also needs the CSRF token.
    response.set_cookie(SESSION_COOKIE, token, max_age=ttl, path=COOKIE_PATH, httponly=True,
                        samesite="lax", secure=is_secure(request, services))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=COOKIE_PATH)


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)


def login_csrf(request: Request) -> str:
    """The sign-in form's token: the browser's double-submit cookie, or a fresh one."""
    return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)


def remember_login_csrf(request: Request, response: Response, services: Services,
                        token: str) -> None:
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, path=COOKIE_PATH, httponly=True,
                        samesite="strict", secure=is_secure(request, services))


@contextmanager
def console_refusals(request: Request, actor: Principal | None) -> Iterator[None]:
    """Audit a refusal the console makes itself (before any service runs), through the
    services' one refusal helper, as ``console <METHOD> <route>``."""
    route = request.scope.get("route")
    action = f"console {request.method} {getattr(route, 'path', request.url.path)}"
    with request.app.state.services.audit.refusals(actor, action,
                                                   detail={"path": request.url.path[:200]}):
        yield


def check_login_csrf(request: Request, sent: str) -> None:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    with console_refusals(request, None):
        if not expected or not sent or not hmac.compare_digest(expected, sent):
            raise CsrfRefused()


def read_session(request: Request, services: ServicesDep) -> ConsoleSession:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise Unauthenticated(_l("please sign in"))
    try:
        claims = services.tokens.verify(token)
    except Unauthenticated as exc:
        raise Unauthenticated(_l("your session has ended; please sign in again")) from exc
    if claims.scope != "full":
        raise Unauthenticated(_l("a sandbox token cannot open the console; please sign in"))
    principal = services.users.principal(claims)
    session = ConsoleSession(principal, claims, csrf_for(services, claims.jti))
    request.state.console = session
    return session


Session = Annotated[ConsoleSession, Depends(read_session)]


def console_user(session: Session) -> Principal:
    return session.principal


def form_user(request: Request, session: Session,
              csrf_token: Annotated[str, Form(max_length=128)] = "") -> Principal:
    """The signed-in user of a POSTed form, once its CSRF token matches the session's."""
    with console_refusals(request, session.principal):
        if not csrf_token or not hmac.compare_digest(csrf_token, session.csrf):
            raise CsrfRefused()
    return session.principal


def admin_user(request: Request, actor: Annotated[Principal, Depends(console_user)]) -> Principal:
    with console_refusals(request, actor):
        actor.require("admin", full_scope=True)
    return actor


def audit_reader(request: Request,
                 actor: Annotated[Principal, Depends(console_user)]) -> Principal:
    with console_refusals(request, actor):
        actor.require("auditor", "admin", full_scope=True)
    return actor


def auditor_user(request: Request,
                 actor: Annotated[Principal, Depends(console_user)]) -> Principal:
    with console_refusals(request, actor):
        actor.require("auditor", full_scope=True)
    return actor


ConsoleUser = Annotated[Principal, Depends(console_user)]
FormUser = Annotated[Principal, Depends(form_user)]
AdminUser = Annotated[Principal, Depends(admin_user)]
AuditReader = Annotated[Principal, Depends(audit_reader)]
AuditorUser = Annotated[Principal, Depends(auditor_user)]

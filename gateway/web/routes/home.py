"""Signing in and out, the landing page for each role, the stylesheet."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from gateway.api.deps import ServicesDep
from gateway.domain.errors import NotFound, Unauthenticated
from gateway.i18n import LANG_COOKIE, N_, _, _l, normalize
from gateway.web.render import HERE, ConsoleRoute, page
from gateway.web.routes.decisions import my_work_page
from gateway.web.session import (
    ConsoleUser,
    FormUser,
    Session,
    check_login_csrf,
    console_refusals,
    end_session,
    is_secure,
    login_csrf,
    remember_login_csrf,
    start_session,
)
from gateway.web.views import admin_overview, catalog_view

router = APIRouter(prefix="/console", route_class=ConsoleRoute)
STATIC = HERE / "static"
STATIC_FILES = {"console.css": "text/css", "favicon.svg": "image/svg+xml"}
REASONS = {
    "required": N_("Please sign in to continue."),
    "ended": N_("Your session has ended (it expired, or your account changed); please sign in again."),
    "signed-out": N_("You are signed out."),
}


def safe_next(target: str | None) -> str:
    """Only ever redirect inside the console (no open redirect to another site)."""
    if target and target.startswith("/console") and not target.startswith("//") \
            and "\\" not in target and "\n" not in target:
        return target
    return "/console"


@router.get("/login")
def login_form(request: Request, svc: ServicesDep,
               next: Annotated[str | None, Query(max_length=500)] = None,
               reason: Annotated[str | None, Query(max_length=20)] = None) -> Response:
    token = login_csrf(request)
    response = page(request, "login.html", title=_("Sign in"), next=safe_next(next),
                    reason=_(REASONS[reason]) if reason in REASONS else None,
                    failed=None, username="", login_csrf=token)
    remember_login_csrf(request, response, svc, token)
    return response


@router.post("/login")
def login(
    request: Request, svc: ServicesDep,
    username: Annotated[str, Form(max_length=64)], password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=500)] = "/console",
) -> Response:
    check_login_csrf(request, csrf_token)
    try:
        token = svc.users.login(username, password)
    except Unauthenticated as exc:
        return page(request, "login.html", status=401, title=_("Sign in"), next=safe_next(next),
                    reason=None, failed=exc.localized(), username=username[:64],
                    login_csrf=csrf_token)
    response = RedirectResponse(safe_next(next), status_code=303)
    start_session(request, response, svc, token["access_token"], int(token["expires_in"]))
    return response


@router.post("/logout")
def logout(actor: FormUser, session: Session, svc: ServicesDep) -> Response:
    svc.users.logout(actor, session.claims, via="console")
    response = RedirectResponse("/console/login?reason=signed-out", status_code=303)
    end_session(response)
    return response


@router.get("")
@router.get("/")
def home(request: Request, session: Session, svc: ServicesDep) -> Response:
    actor = session.principal
    if actor.role == "auditor":
        return RedirectResponse("/console/audit", status_code=303)
    if actor.role == "admin":
        return page(request, "admin_home.html", title=_("Overview"), **admin_overview(svc, actor))
    return my_work_page(request, actor, svc)


@router.get("/catalog")
def catalog(request: Request, actor: ConsoleUser, svc: ServicesDep) -> Response:
    """Analysts' catalog: datasets, access levels, their budget on each, how to apply."""
    return page(request, "catalog.html", title=_("Catalog"), **catalog_view(svc, actor))


@router.get("/lang")
def switch_language(request: Request, svc: ServicesDep,
                    to: Annotated[str, Query(max_length=20)] = "",
                    next: Annotated[str | None, Query(max_length=500)] = None) -> Response:
    """The console's language switch: remembered in a cookie for a year (a preference, not a
    secret: readable by the console's pages only, sent with every request to it)."""
    response = RedirectResponse(safe_next(next), status_code=303)
    chosen = normalize(to)
    if chosen:
        response.set_cookie(LANG_COOKIE, chosen, max_age=365 * 24 * 3600, path="/",
                            httponly=True, samesite="lax", secure=is_secure(request, svc))
    return response


@router.get("/static/{name}", include_in_schema=False)
def static(name: Annotated[str, Path(max_length=64)], request: Request) -> Response:
    with console_refusals(request, None):
        if name not in STATIC_FILES:
            raise NotFound(_l("no file %(name)s", name=name))
    return FileResponse(STATIC / name, media_type=STATIC_FILES[name],
                        headers={"Cache-Control": "max-age=300"})


def not_found(rest: str, request: Request) -> Response:
    with console_refusals(request, None):
        raise NotFound(_l("there is no console page at /console/%(rest)s", rest=rest[:100]))

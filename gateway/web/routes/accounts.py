"""Accounts: the list, creating one, one account's page, disabling and changing its role.

Disabling needs a reason and a confirmation; a role change asks for confirmation and
records its reason. Both are audited under the administrator who acted.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from gateway.api.deps import ServicesDep
from gateway.api.params import Username
from gateway.domain.paging import Window
from gateway.domain.workflow import ROLES
from gateway.i18n import _
from gateway.services.users import MIN_PASSWORD, USERNAME
from gateway.web.forms import Form, Text
from gateway.web.paging import paged
from gateway.web.render import ConsoleRoute, page
from gateway.web.routes.common import ListWindow, attempt, back, notice, status_for
from gateway.web.session import AdminUser, FormUser

router = APIRouter(prefix="/console/admin", route_class=ConsoleRoute)


def role_with_org(form: Form, org: str) -> str:
    """The role chosen on ``form``; an enterprise account needs its org filled in."""
    chosen = form.choice("role", list(ROLES), message=_("Choose a role from the list."))
    if chosen == "enterprise" and not org.strip():
        form.error("org", _("An enterprise account needs an org."))
    return chosen


def users_page(request: Request, actor: Any, svc: Any, *, window: Window | None = None,
               form: Form | None = None) -> Response:
    window = window or Window()
    pg = paged(svc.users.page(actor, window), window, base="/console/admin/users")
    return page(request, "users.html", status=status_for(form), title=_("Users"), pg=pg,
                orgs=svc.users.orgs(actor), form=form, notice=notice(request))


@router.get("/users")
def users(request: Request, actor: AdminUser, svc: ServicesDep, window: ListWindow) -> Response:
    return users_page(request, actor, svc, window=window)


@router.post("/users")
def create_user(request: Request, actor: FormUser, svc: ServicesDep, username: Text = "",
                role: Text = "", password: Text = "", org: Text = "") -> Response:
    form = Form("create", {"username": username, "role": role, "org": org})
    name = username.strip()
    if not USERNAME.match(name):
        form.error("username", _("2–32 characters: lowercase letters, digits, _ or -, "
                                 "starting with a letter."))
    chosen = role_with_org(form, org)
    if len(password) < MIN_PASSWORD:
        form.error("password", _("At least %(min)s characters, please (now %(now)s).")
                   % {"min": MIN_PASSWORD, "now": len(password)})
    attempt(request, form, lambda: svc.users.create(actor, username=name, role=chosen,
                                                    password=password,
                                                    org=org.strip() or None))
    if not form.ok:
        return users_page(request, actor, svc, form=form)
    return back("/console/admin/users", "created")


def account_page(request: Request, actor: Any, svc: Any, username: str, *,
                 form: Form | None = None) -> Response:
    found = svc.users.get(actor, username)
    return page(request, "user.html", status=status_for(form),
                title=_("Account %(name)s") % {"name": username}, account=found,
                orgs=svc.users.orgs(actor), form=form, notice=notice(request))


@router.get("/users/{username}")
def account(username: Username, request: Request, actor: AdminUser,
            svc: ServicesDep) -> Response:
    return account_page(request, actor, svc, username)


@router.post("/users/{username}/role")
def set_role(username: Username, request: Request, actor: FormUser, svc: ServicesDep,
             role: Text = "", org: Text = "", note: Text = "", confirm: Text = "") -> Response:
    form = Form("role", {"role": role, "org": org, "note": note, "confirm": confirm})
    chosen = role_with_org(form, org)
    text = form.text("note")
    form.confirmed()
    attempt(request, form, lambda: svc.users.set_role(actor, username, role=chosen,
                                                      org=org.strip() or None, note=text))
    if not form.ok:
        return account_page(request, actor, svc, username, form=form)
    return back(f"/console/admin/users/{username}", "role-changed")


@router.post("/users/{username}/disable")
def disable(username: Username, request: Request, actor: FormUser, svc: ServicesDep,
            note: Text = "", confirm: Text = "") -> Response:
    form = Form("disable", {"note": note, "confirm": confirm})
    reason = form.text("note", required=_("Say why you disable this account."))
    form.confirmed()
    attempt(request, form, lambda: svc.users.set_disabled(actor, username, disabled=True,
                                                          reason=reason))
    if not form.ok:
        return account_page(request, actor, svc, username, form=form)
    return back(f"/console/admin/users/{username}", "disabled")


@router.post("/users/{username}/enable")
def enable(username: Username, request: Request, actor: FormUser, svc: ServicesDep,
           note: Text = "") -> Response:
    form = Form("enable", {"note": note})
    attempt(request, form, lambda: svc.users.set_disabled(actor, username, disabled=False,
                                                          reason=note))
    if not form.ok:
        return account_page(request, actor, svc, username, form=form)
    return back(f"/console/admin/users/{username}", "enabled")

"""Grants: the list, giving one directly, one grant's page, extending and revoking it.

Revoking and extending ask for confirmation; revoking needs a reason (refused without one,
here and by the ledger), which the holder then sees on their pages.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from gateway.api.deps import ServicesDep
from gateway.api.params import RecordId
from gateway.domain.paging import Window
from gateway.domain.workflow import ANALYST_ROLES
from gateway.i18n import _
from gateway.services.grants import DEFAULT_GRANT_DAYS, MAX_GRANT_DAYS
from gateway.web.forms import Form, Text
from gateway.web.paging import paged
from gateway.web.render import ConsoleRoute, page
from gateway.web.routes.common import ListWindow, attempt, back, notice, status_for
from gateway.web.session import AdminUser, ConsoleUser, FormUser

router = APIRouter(prefix="/console", route_class=ConsoleRoute)


def grants_page(request: Request, actor: Any, svc: Any, *, window: Window | None = None,
                form: Form | None = None) -> Response:
    window = window or Window()
    pg = paged(svc.ledger.page(actor, window), window, base="/console/admin/grants")
    users = svc.users.list(actor)
    analysts = [u for u in users if u["role"] in ANALYST_ROLES and not u["disabled"]]
    orgs = sorted({u["org"] for u in users if u.get("org") and u["role"] == "enterprise"})
    return page(request, "grants.html", status=status_for(form), title=_("Grants"), pg=pg,
                analysts=analysts, orgs=orgs, datasets=svc.catalog.list(actor),
                default_days=DEFAULT_GRANT_DAYS, max_days=MAX_GRANT_DAYS, form=form,
                notice=notice(request))


@router.get("/admin/grants")
def grants(request: Request, actor: AdminUser, svc: ServicesDep, window: ListWindow) -> Response:
    return grants_page(request, actor, svc, window=window)


@router.post("/admin/grants")
def give_grant(request: Request, actor: FormUser, svc: ServicesDep, holder: Text = "",
               dataset: Text = "", epsilon: Text = "", days: Text = "") -> Response:
    actor.require("admin", full_scope=True)
    form = Form("give", {"holder": holder, "dataset": dataset, "epsilon": epsilon, "days": days})
    kind, _sep, name = holder.partition(":")
    if kind not in ("user", "org") or not name:
        form.error("holder", _("Choose an analyst or an org from the list."))
    datasets = {d["name"]: d for d in svc.catalog.list(actor)}
    chosen = form.choice("dataset", datasets, message=_("Choose a dataset from the list."))
    most = datasets[chosen]["max_epsilon_per_grant"] if chosen in datasets else None
    eps = form.number("epsilon", required=True, high=most)
    length = form.whole("days", low=1, high=MAX_GRANT_DAYS)
    attempt(request, form, lambda: svc.ledger.give(
        actor, user=name if kind == "user" else None, org=name if kind == "org" else None,
        dataset=chosen, epsilon=eps or 0.0, delta=None, days=length))
    if not form.ok:
        return grants_page(request, actor, svc, form=form)
    return back("/console/admin/grants", "given")


def grant_page(request: Request, actor: Any, svc: Any, grant_id: str, *,
               form: Form | None = None) -> Response:
    found = svc.ledger.get(actor, grant_id)
    most = next((d["max_epsilon_per_grant"] for d in svc.catalog.list(actor)
                 if d["name"] == found["dataset"]), found["epsilon_total"])
    return page(request, "grant.html", status=status_for(form), title=_("Grant"), grant=found,
                max_per_grant=most, max_days=MAX_GRANT_DAYS, form=form, notice=notice(request))


@router.get("/grants/{grant_id}")
def grant(grant_id: RecordId, request: Request, actor: ConsoleUser, svc: ServicesDep) -> Response:
    return grant_page(request, actor, svc, grant_id)


@router.post("/grants/{grant_id}/revoke")
def revoke(grant_id: RecordId, request: Request, actor: FormUser, svc: ServicesDep,
           note: Text = "", confirm: Text = "") -> Response:
    form = Form("revoke", {"note": note, "confirm": confirm})
    reason = form.text("note", required=_("Say why you revoke this grant: the holder sees it."))
    form.confirmed()
    attempt(request, form, lambda: svc.ledger.revoke(actor, grant_id, reason))
    if not form.ok:
        return grant_page(request, actor, svc, grant_id, form=form)
    return back(f"/console/grants/{grant_id}", "revoked")


@router.post("/grants/{grant_id}/extend")
def extend(grant_id: RecordId, request: Request, actor: FormUser, svc: ServicesDep,
           epsilon: Text = "", days: Text = "", note: Text = "", confirm: Text = "") -> Response:
    form = Form("extend", {"epsilon": epsilon, "days": days, "note": note, "confirm": confirm})
    eps = form.number("epsilon", required=True)
    length = form.whole("days", low=1, high=MAX_GRANT_DAYS)
    text = form.text("note")
    form.confirmed()
    attempt(request, form, lambda: svc.ledger.extend(actor, grant_id, epsilon=eps or 0.0,
                                                     days=length, note=text))
    if not form.ok:
        return grant_page(request, actor, svc, grant_id, form=form)
    return back(f"/console/grants/{grant_id}", "grant-extended")

"""Applications and restricted-query reviews: applying, deciding, releasing.

Pages read the session's principal, make one service call and render; forms POST with
the session's CSRF token and redirect back (303) with a short notice, or render the page
again with what was typed and a message beside each field (gateway/web/forms.py).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request, Response

from gateway.api.deps import ServicesDep
from gateway.api.params import RecordId
from gateway.i18n import _
from gateway.services.access import MAX_PURPOSE, MIN_PURPOSE
from gateway.services.grants import DEFAULT_GRANT_DAYS, MAX_GRANT_DAYS
from gateway.web.forms import Form, Text
from gateway.web.paging import by_status
from gateway.web.render import ConsoleRoute, page
from gateway.web.routes.common import ListWindow, attempt, back, notice, status_for
from gateway.web.session import AdminUser, ConsoleUser, FormUser
from gateway.web.views import active_grants_for, analyst_overview, with_accuracy

router = APIRouter(prefix="/console", route_class=ConsoleRoute)
APPLY_LIMITS = {"purpose_min": MIN_PURPOSE, "purpose_max": MAX_PURPOSE,
                "default_days": DEFAULT_GRANT_DAYS, "max_days": MAX_GRANT_DAYS}


# -- analysts: my work, applying ---------------------------------------------------------

def my_work_page(request: Request, actor: Any, svc: Any, *, form: Form | None = None) -> Response:
    return page(request, "mine.html", status=status_for(form), title=_("My work"),
                limits=APPLY_LIMITS, preselect=request.query_params.get("dataset", ""),
                form=form, notice=notice(request), **analyst_overview(svc, actor))


@router.post("/applications")
def apply(request: Request, actor: FormUser, svc: ServicesDep, dataset: Text = "",
          purpose: Text = "", epsilon: Text = "", days: Text = "", org_grant: Text = "") -> Response:
    form = Form("apply", {"dataset": dataset, "purpose": purpose, "epsilon": epsilon,
                          "days": days, "org_grant": org_grant})
    datasets = {d["name"]: d for d in svc.catalog.list(actor)}
    name = form.choice("dataset", datasets, message=_("Choose a dataset from the list."))
    text = form.text("purpose", required=_("Say what the data is for."), min_length=MIN_PURPOSE,
                     max_length=MAX_PURPOSE)
    most = datasets[name]["max_epsilon_per_grant"] if name in datasets else None
    eps = form.number("epsilon", high=most)
    length = form.whole("days", low=1, high=MAX_GRANT_DAYS)
    applied = attempt(request, form, lambda: svc.access.apply(
        actor, dataset=name, purpose=text, epsilon=eps, days=length, org_grant=org_grant == "true"))
    if applied is None:
        return my_work_page(request, actor, svc, form=form)
    return back(f"/console/applications/{applied['id']}", "applied")


@router.post("/applications/{request_id}/withdraw")
def withdraw(request_id: RecordId, actor: FormUser, svc: ServicesDep) -> Response:
    svc.access.withdraw(actor, request_id)
    return back(f"/console/applications/{request_id}", "withdrawn")


# -- one application and its decision -----------------------------------------------------

def application_page(request: Request, actor: Any, svc: Any, request_id: str, *,
                     form: Form | None = None) -> Response:
    found = svc.access.get(actor, request_id)
    existing = active_grants_for(found) if actor.role == "admin" else []
    return page(request, "application.html", status=status_for(form), title=_("Application"),
                application=found, existing_grants=existing, form=form, notice=notice(request))


@router.get("/applications/{request_id}")
def application(request_id: RecordId, request: Request, actor: ConsoleUser,
                svc: ServicesDep) -> Response:
    return application_page(request, actor, svc, request_id)


@router.post("/applications/{request_id}/approve")
def approve(request_id: RecordId, request: Request, actor: FormUser, svc: ServicesDep,
            epsilon: Text = "", days: Text = "", note: Text = "", extend_grant: Text = "",
            confirm: Text = "") -> Response:
    form = Form("approve", {"epsilon": epsilon, "days": days, "note": note,
                            "extend_grant": extend_grant, "confirm": confirm})
    asked = svc.access.get(actor, request_id)
    eps = form.number("epsilon", required=True, high=asked["epsilon"])
    length = form.whole("days", low=1, high=int(asked["days"]))
    text = form.text("note")
    form.confirmed()
    attempt(request, form, lambda: svc.access.approve(
        actor, request_id, epsilon=eps, days=length, note=text,
        extend_grant=extend_grant.strip() or None))
    if not form.ok:
        return application_page(request, actor, svc, request_id, form=form)
    return back(f"/console/applications/{request_id}",
                "extended" if extend_grant.strip() else "approved")


@router.post("/applications/{request_id}/reject")
def reject(request_id: RecordId, request: Request, actor: FormUser, svc: ServicesDep,
           note: Text = "") -> Response:
    form = Form("reject", {"note": note})
    text = form.text("note", required=_("Say why: the applicant sees your note."))
    attempt(request, form, lambda: svc.access.reject(actor, request_id, note=text))
    if not form.ok:
        return application_page(request, actor, svc, request_id, form=form)
    return back(f"/console/applications/{request_id}", "rejected")


@router.get("/admin/applications")
def applications(request: Request, actor: AdminUser, svc: ServicesDep, window: ListWindow,
                 status: Literal["pending", "approved", "rejected", "withdrawn", "all"] = "pending",
                 ) -> Response:
    pg = by_status(svc.access.page, actor, window, status, base="/console/admin/applications")
    return page(request, "applications.html", title=_("Applications"), pg=pg, shown=status,
                notice=notice(request))


# -- restricted-query reviews ------------------------------------------------------------

def reviews_page(request: Request, actor: Any, svc: Any, *, form: Form | None = None) -> Response:
    held = with_accuracy(svc, actor, svc.queries.list(actor, status="pending_review"))
    return page(request, "reviews.html", status=status_for(form), title=_("Query reviews"),
                reviews=held, form=form, notice=notice(request))


@router.get("/admin/reviews")
def reviews(request: Request, actor: AdminUser, svc: ServicesDep) -> Response:
    return reviews_page(request, actor, svc)


@router.post("/queries/{query_id}/release")
def release(query_id: RecordId, request: Request, actor: FormUser, svc: ServicesDep,
            note: Text = "", confirm: Text = "") -> Response:
    form = Form(f"release-{query_id}", {"note": note, "confirm": confirm})
    text = form.text("note")
    form.confirmed()
    attempt(request, form, lambda: svc.queries.release_review(actor, query_id, text))
    if not form.ok:
        return reviews_page(request, actor, svc, form=form)
    return back("/console/admin/reviews", "released")


@router.post("/queries/{query_id}/reject")
def reject_query(query_id: RecordId, request: Request, actor: FormUser, svc: ServicesDep,
                 note: Text = "") -> Response:
    form = Form(f"reject-{query_id}", {"note": note})
    text = form.text("note", required=_("Say why: the analyst sees your reason."))
    attempt(request, form, lambda: svc.queries.reject_review(actor, query_id, text))
    if not form.ok:
        return reviews_page(request, actor, svc, form=form)
    return back("/console/admin/reviews", "query-rejected")

"""Administrators: applications, restricted-query reviews, grants, users, datasets.

Pages read the session's principal, make one service call and render; forms POST with
the session's CSRF token and redirect back (303) with a short notice.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from gateway.api.deps import ServicesDep
from gateway.api.params import DatasetName, RecordId, Username
from gateway.i18n import N_, _
from gateway.web.render import ConsoleRoute, page
from gateway.web.session import AdminUser, FormUser
from gateway.web.views import with_accuracy

router = APIRouter(prefix="/console", route_class=ConsoleRoute)
Note = Annotated[str, Form(max_length=4000)]
NOTICES = {
    "approved": N_("The application was approved and its grant created."),
    "rejected": N_("The application was rejected; the applicant sees your note."),
    "released": N_("The query was computed, charged and released to the analyst."),
    "query-rejected": N_("The query was rejected; nothing was computed or charged."),
    "revoked": N_("The grant was revoked; no more queries can draw on it."),
    "given": N_("The grant was created."),
    "created": N_("The account was created."),
    "disabled": N_("The account was disabled; its sessions end at their next request."),
    "enabled": N_("The account was enabled."),
    "role-changed": N_("The role was changed; the account's open sessions end at their next request."),
    "withdrawn": N_("The application was withdrawn."),
    "applied": N_("Your application was sent. Open datasets are granted at once; others wait "
               "for an administrator."),
}


def back(location: str, done: str) -> RedirectResponse:
    sep = "&" if "?" in location else "?"
    return RedirectResponse(f"{location}{sep}done={done}", status_code=303)


def notice(request: Request) -> str | None:
    found = NOTICES.get(request.query_params.get("done", ""))
    return _(found) if found else None


# -- applications ------------------------------------------------------------------------

@router.get("/admin/applications")
def applications(request: Request, actor: AdminUser, svc: ServicesDep,
                 status: Literal["pending", "approved", "rejected", "withdrawn", "all"] = "pending",
                 ) -> Response:
    found = svc.access.list(actor, status=None if status == "all" else status)
    return page(request, "applications.html", title=_("Applications"), applications=found,
                shown=status, notice=notice(request))


@router.post("/applications/{request_id}/approve")
def approve(request_id: RecordId, actor: FormUser, svc: ServicesDep, note: Note = "",
            epsilon: Annotated[float | None, Form(gt=0, le=1e6)] = None,
            days: Annotated[int | None, Form(ge=1, le=366)] = None) -> Response:
    svc.access.approve(actor, request_id, epsilon=epsilon, days=days, note=note)
    return back(f"/console/applications/{request_id}", "approved")


@router.post("/applications/{request_id}/reject")
def reject(request_id: RecordId, actor: FormUser, svc: ServicesDep, note: Note) -> Response:
    svc.access.reject(actor, request_id, note=note)
    return back(f"/console/applications/{request_id}", "rejected")


# -- restricted-query reviews ------------------------------------------------------------

@router.get("/admin/reviews")
def reviews(request: Request, actor: AdminUser, svc: ServicesDep) -> Response:
    held = with_accuracy(svc, actor, svc.queries.list(actor, status="pending_review"))
    return page(request, "reviews.html", title=_("Query reviews"), reviews=held,
                notice=notice(request))


@router.post("/queries/{query_id}/release")
def release(query_id: RecordId, actor: FormUser, svc: ServicesDep, note: Note = "") -> Response:
    svc.queries.release_review(actor, query_id, note)
    return back("/console/admin/reviews", "released")


@router.post("/queries/{query_id}/reject")
def reject_query(query_id: RecordId, actor: FormUser, svc: ServicesDep, note: Note) -> Response:
    svc.queries.reject_review(actor, query_id, note)
    return back("/console/admin/reviews", "query-rejected")


# -- grants --------------------------------------------------------------------------------

@router.get("/admin/grants")
def grants(request: Request, actor: AdminUser, svc: ServicesDep) -> Response:
    return page(request, "grants.html", title=_("Grants"), grants=svc.ledger.list(actor),
                notice=notice(request))


@router.post("/admin/grants")
def give_grant(
    actor: FormUser, svc: ServicesDep, dataset: Annotated[str, Form(max_length=63)],
    epsilon: Annotated[float, Form(gt=0, le=1e6)],
    holder: Annotated[str, Form(max_length=128)],
    holder_kind: Annotated[Literal["user", "org"], Form()] = "user",
    days: Annotated[int | None, Form(ge=1, le=366)] = None,
) -> Response:
    holder = holder.strip()
    svc.ledger.give(actor, user=holder if holder_kind == "user" else None,
                    org=holder if holder_kind == "org" else None, dataset=dataset,
                    epsilon=epsilon, delta=None, days=days)
    return back("/console/admin/grants", "given")


@router.post("/grants/{grant_id}/revoke")
def revoke(grant_id: RecordId, actor: FormUser, svc: ServicesDep, note: Note = "") -> Response:
    svc.ledger.revoke(actor, grant_id, note)
    return back("/console/admin/grants", "revoked")


# -- users ---------------------------------------------------------------------------------

@router.get("/admin/users")
def users(request: Request, actor: AdminUser, svc: ServicesDep) -> Response:
    return page(request, "users.html", title=_("Users"), users=svc.users.list(actor),
                notice=notice(request))


@router.post("/admin/users")
def create_user(
    actor: FormUser, svc: ServicesDep,
    username: Annotated[str, Form(max_length=64)],
    role: Annotated[Literal["researcher", "enterprise", "admin", "auditor"], Form()],
    password: Annotated[str, Form(max_length=1024)],
    org: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    svc.users.create(actor, username=username.strip(), role=role, password=password,
                     org=org.strip() or None)
    return back("/console/admin/users", "created")


@router.post("/admin/users/{username}/role")
def set_role(
    username: Username, actor: FormUser, svc: ServicesDep,
    role: Annotated[Literal["researcher", "enterprise", "admin", "auditor"], Form()],
    org: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    svc.users.set_role(actor, username, role=role, org=org.strip() or None)
    return back("/console/admin/users", "role-changed")


@router.post("/admin/users/{username}/{change}")
def set_disabled(username: Username, change: Literal["disable", "enable"], actor: FormUser,
                 svc: ServicesDep) -> Response:
    svc.users.set_disabled(actor, username, disabled=change == "disable")
    return back("/console/admin/users", f"{change}d")


# -- datasets ------------------------------------------------------------------------------

@router.get("/admin/datasets")
def datasets(request: Request, actor: AdminUser, svc: ServicesDep) -> Response:
    return page(request, "datasets.html", title=_("Datasets"), datasets=svc.catalog.list(actor))


@router.get("/admin/datasets/{name}")
def dataset(name: DatasetName, request: Request, actor: AdminUser, svc: ServicesDep) -> Response:
    found = svc.catalog.describe(actor, name)
    return page(request, "dataset.html", title=_("Dataset %(name)s") % {"name": found["name"]}, dataset=found)

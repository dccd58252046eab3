"""One application, grant or query, for whoever may see it (the services decide who).

These pages link to each other along query -> grant -> application -> decision, and to
the audit entries about each; analysts reach only their own (others are "not found").
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from gateway.api.deps import ServicesDep
from gateway.api.params import RecordId
from gateway.i18n import _
from gateway.web.render import ConsoleRoute, page
from gateway.web.routes.admin import back, notice
from gateway.web.session import ConsoleUser, FormUser

router = APIRouter(prefix="/console", route_class=ConsoleRoute)


@router.post("/applications")
def apply(
    actor: FormUser, svc: ServicesDep,
    dataset: Annotated[str, Form(max_length=63)], purpose: Annotated[str, Form(max_length=4000)],
    epsilon: Annotated[float | None, Form(gt=0, le=1e6)] = None,
    days: Annotated[int | None, Form(ge=1, le=366)] = None,
    org_grant: Annotated[bool, Form()] = False,
) -> Response:
    applied = svc.access.apply(actor, dataset=dataset, purpose=purpose, epsilon=epsilon,
                               days=days, org_grant=org_grant)
    return back(f"/console/applications/{applied['id']}", "applied")


@router.get("/applications/{request_id}")
def application(request_id: RecordId, request: Request, actor: ConsoleUser,
                svc: ServicesDep) -> Response:
    found = svc.access.get(actor, request_id)
    return page(request, "application.html", title=_("Application"), application=found,
                notice=notice(request))


@router.post("/applications/{request_id}/withdraw")
def withdraw(request_id: RecordId, actor: FormUser, svc: ServicesDep) -> Response:
    svc.access.withdraw(actor, request_id)
    return back(f"/console/applications/{request_id}", "withdrawn")


@router.get("/grants/{grant_id}")
def grant(grant_id: RecordId, request: Request, actor: ConsoleUser, svc: ServicesDep) -> Response:
    return page(request, "grant.html", title=_("Grant"), grant=svc.ledger.get(actor, grant_id))


@router.get("/queries/{query_id}")
def query(query_id: RecordId, request: Request, actor: ConsoleUser, svc: ServicesDep) -> Response:
    return page(request, "query.html", title=_("Query"), query=svc.queries.get(actor, query_id))

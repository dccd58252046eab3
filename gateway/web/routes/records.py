"""Queries, for whoever may see them (the services decide who): one query's page, and the
list with search and pages (analysts: their own; administrators and auditors: all).

Pages link along query -> grant -> application -> decision, and to the audit entries
about each; analysts reach only their own (others are "not found").
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response

from gateway.api.deps import ServicesDep
from gateway.api.params import RecordId
from gateway.i18n import _
from gateway.web.paging import by_status
from gateway.web.render import ConsoleRoute, page
from gateway.web.routes.common import ListWindow
from gateway.web.session import ConsoleUser

router = APIRouter(prefix="/console", route_class=ConsoleRoute)


@router.get("/queries")
def queries(request: Request, actor: ConsoleUser, svc: ServicesDep, window: ListWindow,
            status: Literal["all", "released", "pending_review", "rejected", "error"] = "all",
            ) -> Response:
    pg = by_status(svc.queries.page, actor, window, status, base="/console/queries")
    return page(request, "queries.html", title=_("Queries"), pg=pg, shown=status)


@router.get("/queries/{query_id}")
def query(query_id: RecordId, request: Request, actor: ConsoleUser, svc: ServicesDep) -> Response:
    return page(request, "query.html", title=_("Query"), query=svc.queries.get(actor, query_id))

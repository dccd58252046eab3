"""Administrators' dataset pages (decisions, grants and accounts have their own modules)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from gateway.api.deps import ServicesDep
from gateway.api.params import DatasetName
from gateway.i18n import _
from gateway.web.render import ConsoleRoute, page
from gateway.web.session import AdminUser

router = APIRouter(prefix="/console", route_class=ConsoleRoute)


@router.get("/admin/datasets")
def datasets(request: Request, actor: AdminUser, svc: ServicesDep) -> Response:
    return page(request, "datasets.html", title=_("Datasets"), datasets=svc.catalog.list(actor))


@router.get("/admin/datasets/{name}")
def dataset(name: DatasetName, request: Request, actor: AdminUser, svc: ServicesDep) -> Response:
    found = svc.catalog.describe(actor, name)
    return page(request, "dataset.html", title=_("Dataset %(name)s") % {"name": found["name"]},
                dataset=found)

"""The console's routes under /console, assembled in one router."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.web.render import ConsoleRoute
from gateway.web.routes import accounts, admin, audit, decisions, grants, home, records

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
for module in (home, decisions, grants, accounts, admin, records, audit):
    router.include_router(module.router)
# Last, so that it only catches what nothing else matched: a page, not the API's JSON 404.
router.add_api_route("/console/{rest:path}", home.not_found, methods=["GET", "POST"])

__all__ = ["router"]

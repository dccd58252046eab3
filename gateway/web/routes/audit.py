"""Auditors: the log with filters and paging, its verification, entries, exports, charts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from gateway.api.deps import ServicesDep
from gateway.api.params import AuditSeq
from gateway.i18n import _
from gateway.services.audit import AuditFilter
from gateway.web.charts import RANGES, spend_charts
from gateway.web.render import ConsoleRoute, page
from gateway.web.routes.common import back, notice
from gateway.web.session import AuditorUser, AuditReader, FormUser
from gateway.web.views import audit_log, chart_limits

router = APIRouter(prefix="/console", route_class=ConsoleRoute)
Text = Annotated[str | None, Query(max_length=64)]
PAGE_SIZE = 50


def as_utc(value: str | None) -> str | None:
    """A time from the form's datetime-local field (no zone) is read as UTC, as labelled."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value  # the audit service refuses it with a message naming the field
    return value if moment.tzinfo else f"{value}+00:00"


@router.get("/audit")
def log_page(
    request: Request, actor: AuditReader, svc: ServicesDep,
    actor_name: Annotated[str | None, Query(alias="actor", max_length=64)] = None,
    dataset: Text = None, action: Text = None,
    outcome: Literal["", "ok", "denied", "error"] = "", since: Text = None, until: Text = None,
    query_id: Text = None, grant_id: Text = None, request_id: Text = None,
    page_number: Annotated[int, Query(alias="page", ge=1, le=1_000_000)] = 1,
) -> Response:
    flt = AuditFilter(actor=actor_name or None, dataset=dataset or None, action=action or None,
                      outcome=outcome or None, since=as_utc(since), until=as_utc(until),
                      query_id=query_id or None, grant_id=grant_id or None,
                      request_id=request_id or None)
    return page(request, "audit_log.html", title=_("Audit log"), notice=notice(request),
                **audit_log(svc, flt, page=page_number, size=PAGE_SIZE))


@router.post("/audit/verify")
def verify_all(actor: FormUser, svc: ServicesDep) -> Response:
    """Recompute the entire chain from its first entry; the page shows what it found."""
    svc.audit.verify(actor)
    return back("/console/audit", "chain-verified")


@router.get("/audit/entries/{seq}")
def entry(seq: AuditSeq, request: Request, actor: AuditReader, svc: ServicesDep) -> Response:
    found = svc.audit.entry(seq, actor)
    return page(request, "audit_entry.html", title=_("Audit entry %(seq)s") % {"seq": seq}, entry=found)


@router.get("/audit/export.{fmt}")
def export(fmt: Literal["csv", "jsonl"], actor: AuditorUser, svc: ServicesDep) -> Response:
    body = svc.audit.export(fmt, actor, via="console")
    media = "text/csv" if fmt == "csv" else "application/x-ndjson"
    return Response(body, media_type=media, headers={
        "Content-Disposition": f'attachment; filename="dpsandbox-audit.{fmt}"',
        "Cache-Control": "no-store"})


@router.get("/audit/charts")
def charts(request: Request, actor: AuditReader, svc: ServicesDep,
           time_range: Annotated[Literal["1d", "7d", "30d", "all"], Query(alias="range")] = "all",
           ) -> Response:
    caps, granted = chart_limits(svc, actor)
    return page(request, "audit_charts.html", title=_("Privacy budget spent"), ranges=RANGES,
                charts=spend_charts(svc.audit, caps=caps, granted=granted, time_range=time_range))

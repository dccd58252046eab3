from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import Response

from gateway.api.deps import CurrentUser, ServicesDep
from gateway.api.params import AuditSeq, ExportFormat, FilterText, PageNumber, PageSize
from gateway.api.responses import AuditEntry, AuditPage, ChainAnswer, answer_router
from gateway.services.audit import AuditFilter, report_json

router = answer_router("audit")
Text = FilterText


@router.get("/audit", response_model=AuditPage)
def list_audit(
    actor: CurrentUser, svc: ServicesDep, actor_name: Annotated[str | None, Query(
        alias="actor", max_length=64)] = None,
    dataset: Text = None, action: Text = None, outcome: Text = None, since: Text = None,
    until: Text = None, query_id: Text = None, grant_id: Text = None, request_id: Text = None,
    page: PageNumber = 1, page_size: PageSize = 50,
) -> dict[str, Any]:
    flt = AuditFilter(actor=actor_name, dataset=dataset, action=action, outcome=outcome,
                      since=since, until=until, query_id=query_id, grant_id=grant_id,
                      request_id=request_id)
    entries, total = svc.audit.page(flt, page=page, size=page_size, actor=actor)
    return {"entries": entries, "total": total, "page": page, "page_size": page_size}


@router.get("/audit/verify", response_model=ChainAnswer)
def verify(actor: CurrentUser, svc: ServicesDep) -> dict[str, Any]:
    return report_json(svc.audit.verify(actor))


@router.get("/audit/export", response_class=Response, responses={200: {
    "description": "the whole log, hash chain included (verifiable offline)",
    "content": {"text/csv": {}, "application/x-ndjson": {}}}})
def export(actor: CurrentUser, svc: ServicesDep, format: ExportFormat = "jsonl") -> Response:
    body = svc.audit.export(format, actor)
    media = "text/csv" if format == "csv" else "application/x-ndjson"
    return Response(body, media_type=media, headers={
        "Content-Disposition": f'attachment; filename="dpsandbox-audit.{format}"'})


@router.get("/audit/{seq}", response_model=AuditEntry)
def entry(seq: AuditSeq, actor: CurrentUser, svc: ServicesDep) -> dict[str, Any]:
    return svc.audit.entry(seq, actor)

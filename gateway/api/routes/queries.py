from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import Query

from gateway.api.deps import CurrentUser, ServicesDep
from gateway.api.params import IdempotencyKey, RecordId
from gateway.api.responses import PreviewAnswer, QueryAnswer, answer_router
from gateway.api.schemas import NoteBody, QueryBody

router = answer_router("queries")


@router.post("/queries/preview", response_model=PreviewAnswer)
def preview(body: QueryBody, actor: CurrentUser, svc: ServicesDep) -> dict[str, Any]:
    return svc.queries.preview(actor, body.to_request())


@router.post("/queries", response_model=QueryAnswer)
def run_query(body: QueryBody, actor: CurrentUser, svc: ServicesDep,
              idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    return svc.queries.run(actor, replace(body.to_request(), idempotency_key=idempotency_key))


@router.get("/queries", response_model=list[QueryAnswer])
def list_queries(
    actor: CurrentUser, svc: ServicesDep,
    status: Annotated[str | None, Query(max_length=20)] = None,
    dataset: Annotated[str | None, Query(max_length=63)] = None,
) -> list[dict[str, Any]]:
    return svc.queries.list(actor, status=status, dataset=dataset)


@router.get("/queries/{query_id}", response_model=QueryAnswer)
def get_query(query_id: RecordId, actor: CurrentUser, svc: ServicesDep) -> dict[str, Any]:
    return svc.queries.get(actor, query_id)


@router.post("/queries/{query_id}/release", response_model=QueryAnswer)
def release_query(query_id: RecordId, actor: CurrentUser, svc: ServicesDep,
                  body: NoteBody | None = None) -> dict[str, Any]:
    return svc.queries.release_review(actor, query_id, body.note if body else "")


@router.post("/queries/{query_id}/reject", response_model=QueryAnswer)
def reject_query(query_id: RecordId, body: NoteBody, actor: CurrentUser,
                 svc: ServicesDep) -> dict[str, Any]:
    return svc.queries.reject_review(actor, query_id, body.note)

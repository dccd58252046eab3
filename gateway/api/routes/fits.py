"""``/v1/synthetic`` and ``/v1/models``: DP synthetic rows and DP models (thin routes)."""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Annotated, Any

import polars as pl
from fastapi import Header, Response

from gateway.api.deps import CurrentUser, ServicesDep
from gateway.api.fit_schemas import FitPreview, ModelAnswer, ModelBody, SyntheticAnswer, SyntheticBody
from gateway.api.params import IdempotencyKey
from gateway.api.responses import answer_router

router = answer_router("synthetic data and models")  # absent stays absent, as elsewhere

PARQUET = "application/vnd.apache.parquet"


def _parquet(answer: dict[str, Any]) -> Response:
    """Released synthetic rows as a Parquet file; the release's facts in headers."""
    frame = pl.DataFrame(answer["rows"], schema=answer["columns"], orient="row")
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    headers = {"X-Release-Id": answer["id"], "X-Cached": str(answer["cached"]).lower(),
               "X-Epsilon-Charged": repr(answer["epsilon_charged"]),
               "X-Delta-Charged": repr(answer["delta_charged"])}
    if answer.get("note"):
        headers["X-Note"] = answer["note"]
    return Response(buffer.getvalue(), media_type=PARQUET, headers=headers)


@router.post("/synthetic/preview")
def preview_synthetic(body: SyntheticBody, actor: CurrentUser, svc: ServicesDep) -> FitPreview:
    return FitPreview.model_validate(svc.fits.preview(actor, body.to_request()))


@router.post("/synthetic", response_model=SyntheticAnswer,
             responses={200: {"content": {PARQUET: {}},
                              "description": "JSON, or Parquet rows with Accept: " + PARQUET}})
def synthetic(body: SyntheticBody, actor: CurrentUser, svc: ServicesDep,
              accept: Annotated[str | None, Header(max_length=512)] = None,
              idempotency_key: IdempotencyKey = None) -> Any:
    answer = svc.fits.run(actor, replace(body.to_request(), idempotency_key=idempotency_key))
    if accept and PARQUET in accept and answer.get("status") == "released":
        return _parquet(answer)
    return SyntheticAnswer.model_validate(answer)


@router.post("/models/preview")
def preview_model(body: ModelBody, actor: CurrentUser, svc: ServicesDep) -> FitPreview:
    return FitPreview.model_validate(svc.fits.preview(actor, body.to_request()))


@router.post("/models")
def model(body: ModelBody, actor: CurrentUser, svc: ServicesDep,
          idempotency_key: IdempotencyKey = None) -> ModelAnswer:
    return ModelAnswer.model_validate(
        svc.fits.run(actor, replace(body.to_request(), idempotency_key=idempotency_key)))

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gateway.api.deps import CurrentUser, ServicesDep
from gateway.api.params import DatasetName, DummyRows

router = APIRouter(tags=["catalog"])


@router.get("/datasets")
def list_datasets(actor: CurrentUser, svc: ServicesDep) -> list[dict[str, Any]]:
    return svc.catalog.list(actor)


@router.get("/datasets/{name}")
def describe_dataset(name: DatasetName, actor: CurrentUser, svc: ServicesDep) -> dict[str, Any]:
    return svc.catalog.describe(actor, name)


@router.get("/datasets/{name}/dummy")
def dummy_rows(
    name: DatasetName, actor: CurrentUser, svc: ServicesDep, rows: DummyRows = 100
) -> dict[str, Any]:
    return svc.catalog.dummy(actor, name, rows)

from __future__ import annotations

from typing import Any

from gateway.api.deps import CurrentUser, ServicesDep
from gateway.api.params import DatasetName, DummyRows
from gateway.api.responses import DatasetAnswer, DummyAnswer, answer_router
from gateway.i18n import current_locale

router = answer_router("catalog")


def in_reader_language(dataset: dict[str, Any]) -> dict[str, Any]:
    """``title`` and ``description`` (of the dataset and of each column) in the language of
    the request: a policy's ``title_zh``/``description_zh`` for zh readers, when it has them.
    The ``*_zh`` fields stay as they are, so a client can show either."""
    if not current_locale().startswith("zh"):
        return dataset
    out = dict(dataset)
    for key in ("title", "description"):
        out[key] = dataset.get(f"{key}_zh") or dataset.get(key)
    if isinstance(dataset.get("columns"), dict):
        out["columns"] = {name: {**col, "description": col.get("description_zh")
                                 or col.get("description", "")}
                          for name, col in dataset["columns"].items()}
    if isinstance(dataset.get("policy"), dict):
        out["policy"] = in_reader_language(dataset["policy"])
    return out


@router.get("/datasets", response_model=list[DatasetAnswer])
def list_datasets(actor: CurrentUser, svc: ServicesDep) -> list[dict[str, Any]]:
    return [in_reader_language(d) for d in svc.catalog.list(actor)]


@router.get("/datasets/{name}", response_model=DatasetAnswer)
def describe_dataset(name: DatasetName, actor: CurrentUser, svc: ServicesDep) -> dict[str, Any]:
    return in_reader_language(svc.catalog.describe(actor, name))


@router.get("/datasets/{name}/dummy", response_model=DummyAnswer)
def dummy_rows(
    name: DatasetName, actor: CurrentUser, svc: ServicesDep, rows: DummyRows = 100
) -> dict[str, Any]:
    return svc.catalog.dummy(actor, name, rows)

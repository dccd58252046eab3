"""Bodies and typed answers of ``/v1/synthetic`` and ``/v1/models`` (unknown fields refused)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.api.responses import Answer
from gateway.domain.fits import DEFAULT_BINS
from gateway.services.fits import FitRequest


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=True)


class SyntheticBody(_Body):
    dataset: str = Field(max_length=63)
    columns: list[str] = Field(max_length=64)
    rows: int
    epsilon: float | int
    delta: float | int | None = None
    method: str = Field(default="aim", max_length=16)
    bins: int = DEFAULT_BINS

    def to_request(self) -> FitRequest:
        return FitRequest("synthetic", self.model_dump(exclude={"epsilon", "delta"}),
                          self.epsilon, self.delta)


class ModelBody(_Body):
    dataset: str = Field(max_length=63)
    kind: str = Field(max_length=32)
    x: list[str] | None = Field(default=None, max_length=64)
    y: str | None = Field(default=None, max_length=63)
    columns: list[str] | None = Field(default=None, max_length=64)
    components: int | None = None
    epsilon: float | int
    delta: float | int | None = None

    def to_request(self) -> FitRequest:
        return FitRequest("model", self.model_dump(exclude={"epsilon", "delta"}, exclude_none=True),
                          self.epsilon, self.delta)


class _Answer(Answer):
    id: str
    status: Literal["released", "pending_review", "running", "rejected", "error"]
    cached: bool = False
    dataset: str
    kind: str | None = None
    epsilon_charged: float = 0.0
    delta_charged: float = 0.0
    budget: dict[str, Any] | None = None


class Marginal(BaseModel):
    columns: list[str]
    stddev: float
    cells: int
    counts: list[float] | None = None


class SyntheticAnswer(_Answer):
    """Synthetic rows (released), or a held release's id and status (restricted data)."""

    method: str | None = None
    columns: list[str] = Field(default_factory=list)
    rows: list[list[Any]] = Field(default_factory=list)
    note: str | None = None
    marginals: list[Marginal] = Field(default_factory=list)
    categories: dict[str, list[Any]] = Field(default_factory=dict)
    accuracy: dict[str, Any] = Field(default_factory=dict)


class ModelAnswer(_Answer):
    """A fitted model (released), or a held release's id and status (restricted data).
    ``columns``/``rows``: the model as a table (what the console shows)."""

    x: list[str] | None = None
    y: str | None = None
    coef_: list[float] | None = None
    intercept_: float | None = None
    feature_names_in_: list[str] | None = None
    components_: list[list[float]] | None = None
    explained_variance_: list[float] | None = None
    explained_variance_ratio_: list[float] | None = None
    mean_: list[float] | None = None
    scale_lower: list[float] | None = None
    scale_span: list[float] | None = None
    n_samples: int | None = None
    columns: list[str] = Field(default_factory=list)
    rows: list[list[Any]] = Field(default_factory=list)
    accuracy: dict[str, Any] = Field(default_factory=dict)


class FitPreview(BaseModel):
    dataset: str
    kind: str
    epsilon: float
    delta: float
    spent_by_map: dict[str, float]
    accuracy: dict[str, Any]
    summary: str
    access: str
    budget: dict[str, Any] | None = None

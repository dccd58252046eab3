"""The JSON form of a query spec (what the API accepts) and its translation to QuerySpec."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from gateway.domain.errors import InvalidRequest
from gateway.domain.input_errors import describe
from gateway.domain.query import Aggregate, Filter, QuerySpec

Scalar = StrictStr | StrictInt | StrictFloat | StrictBool


class _Body(BaseModel):
    """Strict: a boolean is not a number, a number is not a string, anywhere in a query."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class AggregateBody(_Body):
    agg: str
    column: str | None = None
    q: StrictFloat | StrictInt | None = None
    bins: list[float] | None = None
    alias: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class FilterBody(_Body):
    column: str
    op: str
    value: Scalar | list[Scalar]


class OrderBody(_Body):
    column: str
    desc: bool = False


class SpecBody(_Body):
    dataset: str = Field(max_length=63)
    select: list[AggregateBody] = Field(min_length=1, max_length=16)
    where: list[FilterBody] = Field(default_factory=list, max_length=32)
    group_by: list[str] = Field(default_factory=list)
    order_by: list[OrderBody] = Field(default_factory=list)
    limit: int | None = Field(default=None, ge=0, le=1_000_000)

    def to_spec(self) -> QuerySpec:
        return QuerySpec(
            dataset=self.dataset,
            select=tuple(
                Aggregate(agg=a.agg, column=a.column, q=a.q,
                          bins=tuple(a.bins) if a.bins is not None else None, alias=a.alias)
                for a in self.select
            ),
            where=tuple(Filter(column=f.column, op=f.op, value=_freeze(f.value))
                        for f in self.where),
            group_by=tuple(self.group_by),
            order_by=tuple((o.column, o.desc) for o in self.order_by),
            limit=self.limit,
        )


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def spec_from_json(data: dict[str, Any]) -> QuerySpec:
    try:
        return SpecBody.model_validate(data).to_spec()
    except ValidationError as exc:
        raise InvalidRequest(describe(exc.errors())) from exc

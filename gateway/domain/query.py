"""Query specs: immutable plain data, validated against a dataset's policy.

A spec says *what* to release (aggregates, filters, group keys); the engine adapter
decides *how* (OpenDP measurements). Both the structured JSON API and DP SQL produce
a :class:`QuerySpec`, so one engine, one ledger and one audit path serve both.

The policy is duck-typed (see :class:`PolicyView`) so this module stays standard-library only.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.domain.budget import Budget
from gateway.domain.errors import InvalidRequest, UnsupportedQuery
from gateway.domain.text import _l

AGGREGATES = ("count", "sum", "mean", "quantile", "histogram")
OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "between", "in")
MAX_AGGREGATES = 16
MAX_GROUP_BY = 3
MAX_IN_VALUES = 1000
MAX_BINS = 200
MAX_PUBLIC_INT_KEYS = 1000
MAX_FILTER_MAGNITUDE = 2**53


class ColumnView(Protocol):
    type: str
    bounds: tuple[float, float] | None
    categories: list[Any] | None
    nullable: bool
    hidden: bool


class PolicyView(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def columns(self) -> Mapping[str, Any]: ...

    @property
    def delta(self) -> float: ...


@dataclass(frozen=True)
class Aggregate:
    agg: str
    column: str | None = None
    q: float | None = None
    bins: tuple[float, ...] | None = None
    alias: str | None = None

    def __post_init__(self) -> None:
        if self.agg not in AGGREGATES:
            raise UnsupportedQuery(_l("unknown aggregate %(agg)s; supported: %(aggregates)s",
                                      agg=repr(self.agg), aggregates=", ".join(AGGREGATES)))
        if self.agg != "count" and not self.column:
            raise InvalidRequest(_l("aggregate %(agg)s needs a column", agg=self.agg))
        if self.agg == "quantile":
            if (self.q is None or isinstance(self.q, bool) or not isinstance(self.q, int | float)
                    or not 0 <= self.q <= 1):
                raise InvalidRequest(_l("quantile needs q between 0 and 1, got %(q)s", q=repr(self.q)))
        elif self.q is not None:
            raise InvalidRequest(_l("q is only for quantile, not %(agg)s", agg=self.agg))
        if self.agg == "histogram":
            _check_bins(self.bins)
        elif self.bins is not None:
            raise InvalidRequest(_l("bins are only for histogram, not %(agg)s", agg=self.agg))

    @property
    def name(self) -> str:
        """The output column's name (an alias wins)."""
        if self.alias:
            return self.alias
        if self.agg == "count":
            return "count" if self.column is None else f"count_{self.column}"
        if self.agg == "quantile":
            return f"quantile_{self.column}_{self.q:g}"
        return f"{self.agg}_{self.column}"

    def canonical(self) -> dict[str, Any]:
        out: dict[str, Any] = {"agg": self.agg}
        if self.column is not None:
            out["column"] = self.column
        if self.q is not None:
            out["q"] = float(self.q)
        if self.bins is not None:
            out["bins"] = [float(b) for b in self.bins]
        return out


def _check_bins(bins: tuple[float, ...] | None) -> None:
    if not bins or len(bins) < 2:
        raise InvalidRequest(_l("histogram needs at least two bin edges"))
    if len(bins) > MAX_BINS + 1:
        raise InvalidRequest(_l("histogram takes at most %(max_bins)s bins", max_bins=MAX_BINS))
    for edge in bins:
        if (isinstance(edge, bool) or not isinstance(edge, int | float)
                or abs(edge) > MAX_FILTER_MAGNITUDE or not math.isfinite(edge)):
            raise InvalidRequest(_l(
                "histogram bin edges must be finite numbers, got %(edge)s",
                edge=repr(edge)))
    if any(b >= a for a, b in zip(bins[1:], bins[:-1], strict=False)):
        raise InvalidRequest(_l("histogram bin edges must be strictly increasing"))


def _edge(value: float) -> str:
    """An exact, readable bin edge: 500 not 500.0, 0.1 not 0.10000000000000001, 1000000 not 1e+06."""
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def histogram_labels(bins: Sequence[float]) -> list[str]:
    return [f"[{_edge(lo)}, {_edge(hi)})" for lo, hi in zip(bins[:-1], bins[1:], strict=True)]


@dataclass(frozen=True)
class Filter:
    column: str
    op: str
    value: Any

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise UnsupportedQuery(_l("unknown filter operator %(op)s; supported: %(operators)s",
                                      op=repr(self.op), operators=" ".join(OPERATORS)))
        if self.op == "between":
            if not isinstance(self.value, list | tuple) or len(self.value) != 2:
                raise InvalidRequest(_l("between on %(column)s needs [low, high]", column=self.column))
        elif self.op == "in":
            if not isinstance(self.value, list | tuple) or not self.value:
                raise InvalidRequest(_l("in on %(column)s needs a non-empty list", column=self.column))
            if len(self.value) > MAX_IN_VALUES:
                raise InvalidRequest(_l(
                    "in takes at most %(max_in_values)s values",
                    max_in_values=MAX_IN_VALUES))
        elif isinstance(self.value, list | tuple | dict) or self.value is None:
            raise InvalidRequest(_l(
                "%(op)s on %(column)s needs a single value",
                op=self.op, column=self.column))

    def canonical(self) -> dict[str, Any]:
        value = list(self.value) if isinstance(self.value, list | tuple) else self.value
        if self.op == "in":
            value = sorted(value, key=lambda v: (type(v).__name__, v))
        return {"column": self.column, "op": self.op, "value": value}


@dataclass(frozen=True)
class QuerySpec:
    dataset: str
    select: tuple[Aggregate, ...]
    where: tuple[Filter, ...] = ()
    group_by: tuple[str, ...] = ()
    order_by: tuple[tuple[str, bool], ...] = field(default=())  # (column, descending)
    limit: int | None = None

    def __post_init__(self) -> None:
        if not self.select:
            raise InvalidRequest(_l("a query needs at least one aggregate in select"))
        if len(self.select) > MAX_AGGREGATES:
            raise InvalidRequest(_l(
                "a query takes at most %(max_aggregates)s aggregates",
                max_aggregates=MAX_AGGREGATES))
        if len(self.group_by) > MAX_GROUP_BY:
            raise UnsupportedQuery(_l(
                "group_by takes at most %(max_group_by)s columns",
                max_group_by=MAX_GROUP_BY))
        if len(set(self.group_by)) != len(self.group_by):
            raise InvalidRequest(_l("group_by names a column twice"))
        names = [*self.group_by, *(a.name for a in self.select)]
        outputs = self.output_columns
        dupes = sorted({n for n in outputs if outputs.count(n) > 1})
        if dupes:
            raise InvalidRequest(_l("output column named twice: %(dupes)s", dupes=', '.join(dupes)))
        if self.limit is not None and (isinstance(self.limit, bool) or self.limit < 0):
            raise InvalidRequest(_l("limit must be a non-negative integer"))
        for column, _desc in self.order_by:
            if column not in names:
                raise InvalidRequest(_l("order by %(column)s: not an output column", column=column))

    @property
    def output_columns(self) -> list[str]:
        cols = list(self.group_by)
        for agg in self.select:
            if agg.agg == "histogram":
                assert agg.bins is not None
                cols += [f"{agg.name} {label}" for label in histogram_labels(agg.bins)]
            else:
                cols.append(agg.name)
        return cols

    def canonical(self) -> dict[str, Any]:
        """What the query computes, in a stable form (aliases and ordering excluded)."""
        return {
            "dataset": self.dataset,
            "select": [a.canonical() for a in self.select],
            "where": sorted((f.canonical() for f in self.where), key=_stable),
            "group_by": list(self.group_by),
        }

    def to_json(self) -> dict[str, Any]:
        """The spec as the API accepts it (round-trips through the request schema)."""
        out: dict[str, Any] = {
            "dataset": self.dataset,
            "select": [
                {**a.canonical(), **({"alias": a.alias} if a.alias else {})} for a in self.select
            ],
            "where": [f.canonical() for f in self.where],
            "group_by": list(self.group_by),
        }
        if self.order_by:
            out["order_by"] = [{"column": c, "desc": d} for c, d in self.order_by]
        if self.limit is not None:
            out["limit"] = self.limit
        return out


def _stable(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def query_key(spec: QuerySpec, loss: Budget, dataset_version: str) -> str:
    """Identity of a release: same computation, same loss, same data -> same key."""
    payload = {
        "spec": spec.canonical(),
        "epsilon_units": loss.epsilon_units,
        "delta_units": loss.delta_units,
        "version": dataset_version,
    }
    if loss.rho_units:  # zCDP; pure keys stay as they always were
        payload["rho_units"] = loss.rho_units
    return hashlib.sha256(_stable(payload).encode()).hexdigest()


def public_keys(column: Any) -> list[Any] | None:
    """The public key set of a column, or None when keys must be thresholded."""
    if column.categories:
        return list(column.categories)
    if column.type == "bool":
        return [False, True]
    if column.type == "int" and column.bounds is not None:
        lo, hi = math.ceil(column.bounds[0]), math.floor(column.bounds[1])
        if 0 <= hi - lo < MAX_PUBLIC_INT_KEYS:
            return list(range(lo, hi + 1))
    return None


def needs_delta(spec: QuerySpec, policy: PolicyView) -> bool:
    return any(public_keys(policy.columns[c]) is None for c in spec.group_by)


def public_columns(policy: PolicyView) -> list[str]:
    """The names an analyst may use (hidden columns are not public)."""
    return [name for name, col in policy.columns.items() if not col.hidden]


def closest(name: str, candidates: Sequence[str]) -> str | None:
    """The candidate closest to ``name`` (spelling or case), or None when none is close."""
    others = [c for c in candidates if c != name]
    close = difflib.get_close_matches(name, others, n=1, cutoff=0.6)
    if close:
        return close[0]
    return {c.lower(): c for c in others}.get(name.lower())


def queryable_column(policy: PolicyView, name: str, role: str) -> Any:
    col = policy.columns.get(name)
    if col is None or col.hidden:
        # Hidden columns answer exactly like missing ones: their existence is not public,
        # and only public names are suggested.
        suggestion = closest(name, public_columns(policy))
        if suggestion is None:
            raise InvalidRequest(_l("dataset %(dataset)s has no queryable column %(column)s "
                                    "(%(role)s)", dataset=policy.name, column=name, role=role))
        raise InvalidRequest(_l("dataset %(dataset)s has no queryable column %(column)s "
                                "(%(role)s); did you mean %(suggestion)s?", dataset=policy.name,
                                column=name, role=role, suggestion=suggestion))
    return col


def validate(spec: QuerySpec, policy: PolicyView) -> None:
    """Refuse, before any data is read, every spec the policy does not allow."""
    if spec.dataset != policy.name:
        raise InvalidRequest(_l(
            "spec is for %(dataset)s, policy is %(name)s",
            dataset=spec.dataset, name=policy.name))
    for agg in spec.select:
        if agg.column is None:
            continue
        col = queryable_column(policy, agg.column, agg.agg)
        if agg.agg == "count":
            continue
        if col.type not in ("int", "float"):
            if agg.agg == "histogram":
                raise UnsupportedQuery(_l("%(agg)s needs a numeric column; %(column)s is %(type)s",
                                          agg=agg.agg, column=agg.column, type=col.type))
            raise UnsupportedQuery(_l("%(agg)s needs a numeric column; %(column)s is %(type)s (use "
                                      "count with group_by instead)", agg=agg.agg,
                                      column=agg.column, type=col.type))
        if agg.agg in ("sum", "mean", "quantile") and col.bounds is None:
            raise UnsupportedQuery(
                _l(
                    "column %(column)s has no bounds in policy %(name)s, so %(agg)s cannot be "
                    "released",
                    column=agg.column, name=policy.name, agg=agg.agg)
            )
    for name in spec.group_by:
        queryable_column(policy, name, "group_by")
    for flt in spec.where:
        _check_filter(flt, queryable_column(policy, flt.column, "where"))


def _check_filter(flt: Filter, col: Any) -> None:
    values = list(flt.value) if isinstance(flt.value, list | tuple) else [flt.value]
    for value in values:
        if col.type == "str" and not isinstance(value, str):
            raise InvalidRequest(_l(
                "filter on %(column)s (str) needs text values, got %(value)s",
                column=flt.column, value=repr(value)))
        if col.type in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidRequest(
                    _l(
                        "filter on %(column)s (%(type)s) needs numbers, got %(value)s",
                        column=flt.column, type=col.type, value=repr(value))
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidRequest(_l("filter on %(column)s needs finite numbers", column=flt.column))
            if abs(value) > MAX_FILTER_MAGNITUDE:
                raise InvalidRequest(_l(
                    "filter values must be at most %(max_filter_magnitude)s in magnitude",
                    max_filter_magnitude=format(MAX_FILTER_MAGNITUDE, ".0e")))
        if col.type == "bool" and not isinstance(value, bool):
            raise InvalidRequest(_l(
                "filter on %(column)s (bool) needs true/false, got %(value)s",
                column=flt.column, value=repr(value)))
    if col.type == "str" and flt.op in ("<", "<=", ">", ">=", "between"):
        raise UnsupportedQuery(_l(
            "%(op)s is not supported on text column %(column)s; use = or in",
            op=flt.op, column=flt.column))
    if flt.op == "between" and values[0] > values[1]:
        raise InvalidRequest(_l(
            "between on %(column)s: low %(value)s is above high %(value2)s",
            column=flt.column, value=values[0], value2=values[1]))


def resolve_loss(
    spec: QuerySpec, policy: PolicyView, *, epsilon: object, delta: object | None
) -> Budget:
    """The (epsilon, delta) the query spends; delta defaults to the policy's when keys are private."""
    return _resolve(spec, policy, delta, lambda d: Budget.query_loss(epsilon, d))


def resolve_zcdp_loss(
    spec: QuerySpec, policy: PolicyView, *, rho: object, delta: object | None
) -> Budget:
    """The (rho, delta) a zCDP query spends; delta as in :func:`resolve_loss`."""
    return _resolve(spec, policy, delta, lambda d: Budget.zcdp_loss(rho, d))


def _resolve(
    spec: QuerySpec, policy: PolicyView, delta: object | None, loss_of: Callable[[object], Budget]
) -> Budget:
    need = needs_delta(spec, policy)
    loss = loss_of(delta if delta is not None else (policy.delta if need else 0))
    _check_delta(spec, policy, loss, need)
    return loss


def _check_delta(spec: QuerySpec, policy: PolicyView, loss: Budget, need: bool) -> None:
    private = [c for c in spec.group_by if public_keys(policy.columns[c]) is None]
    if need and loss.delta_units == 0:
        raise InvalidRequest(
            _l(
                "group_by %(private)s has no public categories, so its keys are released only"
                " above a noisy threshold, which needs delta > 0 (policy %(name)s allows "
                "%(delta)s)",
                private=', '.join(private), name=policy.name, delta=format(policy.delta, "g"))
        )
    if not need and loss.delta_units != 0:
        raise InvalidRequest(_l("this query needs no delta; send delta 0 (or leave it out)"))
    if need and loss.delta_float > policy.delta * (1 + 1e-12):
        raise InvalidRequest(
            _l(
                "delta %(delta_float)s is above the per-query delta of policy %(name)s "
                "(%(delta)s)",
                delta_float=format(loss.delta_float, "g"), name=policy.name,
                delta=format(policy.delta, "g"))
        )

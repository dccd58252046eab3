"""Building the gateway's structured query body from friendly arguments."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from sandbox.client._errors import InvalidQuery
from sandbox.client._i18n import _
from sandbox.client._where import Where, normalize_where

Columns = str | Sequence[str] | None
Quantiles = Mapping[str, float | Sequence[float]] | tuple[str, float] | None
Histograms = Mapping[str, Sequence[float]] | None
_SHORTHAND = re.compile(r"^\s*(count|sum|mean|quantile)\s*(?:\(\s*([A-Za-z_][A-Za-z0-9_]*)?"
                        r"\s*(?:,\s*([0-9.]+)\s*)?\))?\s*$", re.IGNORECASE)


def as_list(columns: Columns) -> list[str]:
    if columns is None:
        return []
    return [columns] if isinstance(columns, str) else list(columns)


def _aggregate(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        return dict(item)
    if isinstance(item, str):
        match = _SHORTHAND.match(item)
        if match:
            agg, column, q = match.group(1).lower(), match.group(2), match.group(3)
            out: dict[str, Any] = {"agg": agg}
            if column:
                out["column"] = column
            if q is not None:
                out["q"] = float(q)
            return out
    raise InvalidQuery(_("select: cannot use {item}; give dicts like {{'agg': 'mean', "
                         "'column': 'dep_delay'}} or strings like 'count', 'mean(dep_delay)', "
                         "'quantile(air_time, 0.5)'").format(item=repr(item)))


def build_select(*, count: bool = False, sum: Columns = None, mean: Columns = None,
                 quantile: Quantiles = None, histogram: Histograms = None,
                 select: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """The select list from keyword shorthands, then any explicit ``select`` items."""
    out: list[dict[str, Any]] = []
    if count:
        out.append({"agg": "count"})
    out += [{"agg": "sum", "column": c} for c in as_list(sum)]
    out += [{"agg": "mean", "column": c} for c in as_list(mean)]
    if isinstance(quantile, tuple):
        quantile = {quantile[0]: quantile[1]}
    for column, qs in (quantile or {}).items():
        for q in [qs] if isinstance(qs, int | float) else qs:
            out.append({"agg": "quantile", "column": column, "q": float(q)})
    for column, bins in (histogram or {}).items():
        out.append({"agg": "histogram", "column": column, "bins": [float(b) for b in bins]})
    out += [_aggregate(item) for item in select or ()]
    if not out:
        raise InvalidQuery(_("nothing to compute: pass count=True, mean='column', ... or "
                             "select=[...]"))
    return out


def check_loss(epsilon: float | None, delta: float | None, *, name: str = "epsilon") -> None:
    """Refuse a loss that cannot be sent (NaN, infinite) before anything is sent."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) \
            or not math.isfinite(epsilon) or epsilon <= 0:
        if name == "rho":
            raise InvalidQuery(_("rho must be a positive finite number, got {value}").format(
                value=repr(epsilon)))
        raise InvalidQuery(_("epsilon must be a positive finite number, got {value}").format(
            value=repr(epsilon)))
    if delta is not None and (isinstance(delta, bool) or not isinstance(delta, int | float)
                              or not math.isfinite(delta) or delta < 0):
        raise InvalidQuery(_("delta must be a finite number >= 0, got {value}").format(
            value=repr(delta)))


def query_body(dataset: str, *, select: list[dict[str, Any]], where: Where = None,
               group_by: Columns = None, order_by: Any = None, limit: int | None = None,
               epsilon: float | None, delta: float | None = None,
               rho: float | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"dataset": dataset, "select": select,
                            "where": normalize_where(where), "group_by": as_list(group_by)}
    if rho is None:
        check_loss(epsilon, delta)
        body["epsilon"] = epsilon
    else:
        check_loss(rho, delta, name="rho")
        if epsilon is not None:
            raise InvalidQuery(_("give either epsilon or rho, not both"))
        body["rho"] = rho
    if order_by:
        body["order_by"] = [_order(o) for o in as_list(order_by)] if isinstance(
            order_by, str) else [_order(o) for o in order_by]
    if limit is not None:
        body["limit"] = limit
    if delta is not None:
        body["delta"] = delta
    return body


def _order(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        return dict(item)
    if isinstance(item, str):
        text = item.strip()
        desc = text.startswith("-") or text.lower().endswith(" desc")
        column = text.lstrip("-").removesuffix(" desc").removesuffix(" DESC")
        column = column.removesuffix(" asc").removesuffix(" ASC").strip()
        return {"column": column, "desc": desc}
    raise InvalidQuery(_("order_by: cannot use {item}; give 'column', '-column' or "
                         "'column desc'").format(item=repr(item)))

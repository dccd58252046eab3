"""One *unit* per aggregate: the noisy polars expressions that release it, at a noise scale.

How each aggregate treats nulls (OpenDP would silently impute the bounds' midpoint). The
source scan has already turned float NaN into null.

- ``count`` counts rows; ``count`` of a column counts its non-null values.
- ``sum`` adds the non-null values, clipped to the policy bounds (SQL ``SUM``: nulls add
  nothing). Integer columns are summed exactly as integers; floats in fixed point (see
  :class:`Summand`), so neither carries OpenDP's float rounding slack.
- ``mean`` is a noisy sum over a noisy count of the non-null values, their noise scales in
  the ratio that minimises the mean's error (:func:`mean_scale_ratio`; Laplace noise under
  pure DP, Gaussian under zCDP, where OpenDP picks the noise from the output measure).
- ``quantile`` ignores nulls; candidates come from the bounds: every integer of an int
  range of at most ``QUANTILE_POINTS`` values, else an evenly spaced grid.
- ``histogram`` (built in compiler) counts non-null values in ``[lo, hi)`` bins.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

os.environ["RUST_BACKTRACE"] = "0"  # before opendp loads: a backtrace costs ~80 ms per error

import opendp.prelude as dp
import polars as pl
from opendp.extras.polars import DPExpr

from gateway.domain.query import Aggregate
from gateway.policy import Column

QUANTILE_POINTS = 161
INT_SUM_LIMIT = 2**62  # sums of max_rows values stay below this, so 64 bits never overflow

Exprs = Callable[[float], list[pl.Expr]]  # noise scale -> the unit's noisy expressions


@dataclass(frozen=True, eq=False)
class Unit:
    """Noisy expressions calibrated together to one share of the loss.

    ``agg`` is the spec's aggregate, or None for the hidden count that releases private
    group keys when the spec has no plain count to threshold on.
    """

    agg: Aggregate | None
    kind: str  # count | count_column | sum | mean | quantile | histogram | keys
    aliases: tuple[str, ...]
    make: Exprs
    integer: bool = True  # release as int
    bounds: tuple[float, float] | None = None  # a mean's, to clip it
    factor: float = 1.0  # a released sum (a mean's too) is in units of 1 / factor
    position: int = -1  # index of the aggregate in the spec's select (-1: hidden)


def frame_len(alias: str) -> Exprs:
    return lambda scale: [dp.len(scale=scale, signed=True).alias(alias)]


def aggregate_unit(
    alias: str, agg: Aggregate, col: Column | None, max_rows: int, *, position: int,
    gaussian: bool = False,
) -> Unit:
    return replace(_unit(alias, agg, col, max_rows, gaussian), position=position)


def _unit(alias: str, agg: Aggregate, col: Column | None, max_rows: int, gaussian: bool) -> Unit:
    if agg.column is None or col is None:
        return Unit(agg, "count", (alias,), frame_len(alias))
    name = agg.column
    if agg.agg == "count":
        return Unit(agg, "count_column", (alias,), _count(name, alias))
    assert col.bounds is not None
    if agg.agg == "quantile":
        return _quantile_unit(alias, agg, col)
    summand = summand_of(name, col, max_rows)
    if agg.agg == "sum":
        make = _sum(summand, alias)
        return Unit(agg, "sum", (alias,), make, integer=summand.integer, factor=summand.factor)
    ratio = mean_scale_ratio(*col.bounds, gaussian=gaussian) * summand.factor
    total, count = _sum(summand, f"{alias}_s"), _count(name, f"{alias}_n")
    return Unit(
        agg,
        "mean",
        (f"{alias}_s", f"{alias}_n"),
        lambda s: [*total(s * ratio), *count(s)],
        integer=False,
        bounds=col.bounds,
        factor=summand.factor,
    )


@dataclass(frozen=True, eq=False)
class Summand:
    """A column as non-null Int64 values in units of 1 / ``factor``, ready for an exact sum.

    OpenDP's float sums carry a rounding slack that grows with max_rows (6x the noise at
    20M rows, far worse with thresholded keys), so floats are summed in fixed point:
    clipped to the bounds, times ``factor`` = 2**k (exact), truncated, with k as large as
    64 bits allow for max_rows values. Nulls add 0; the sum's bounds are widened to include
    0, which leaves its sensitivity, max(|lo|, |hi|), unchanged.
    """

    expr: pl.Expr
    bounds: tuple[int, int]
    factor: float
    integer: bool


@dataclass(frozen=True)
class FixedPoint:
    """How a column is summed exactly: clipped to ``clip``, times ``factor`` (a power of 2),
    truncated to an integer in ``bounds`` (which include 0: a null adds 0). The same for
    every engine, so their sums and noise agree."""

    clip: tuple[float, float]
    bounds: tuple[int, int]
    factor: float
    integer: bool  # an int column summed as it is (factor 1)

    @property
    def sensitivity(self) -> int:
        """What one row can add to or take from the sum, in units of 1 / factor."""
        return max(abs(self.bounds[0]), abs(self.bounds[1]))


def fixed_point(col: Column, max_rows: int) -> FixedPoint:
    assert col.bounds is not None
    lo, hi = col.bounds
    if col.type == "int":
        ilo, ihi = math.ceil(lo), math.floor(hi)
        if max_rows * max(abs(ilo), abs(ihi)) < INT_SUM_LIMIT:
            return FixedPoint((ilo, ihi), (min(ilo, 0), max(ihi, 0)), 1.0, True)
        lo, hi = float(ilo), float(ihi)
    magnitude = max(abs(lo), abs(hi)) or 1.0
    factor = 2.0 ** math.floor(math.log2(INT_SUM_LIMIT / (max_rows * magnitude)))
    bounds = (math.floor(min(lo, 0) * factor), math.ceil(max(hi, 0) * factor))
    return FixedPoint((float(lo), float(hi)), bounds, factor, False)


def summand_of(name: str, col: Column, max_rows: int) -> Summand:
    point = fixed_point(col, max_rows)
    if point.integer:
        ilo, ihi = int(point.clip[0]), int(point.clip[1])
        expr = pl.col(name)
        if point.bounds != (ilo, ihi):
            expr = expr.clip(pl.lit(ilo, dtype=pl.Int64), pl.lit(ihi, dtype=pl.Int64))
        return Summand(expr.fill_null(pl.lit(0, dtype=pl.Int64)), point.bounds, 1.0, True)
    clipped = pl.col(name).cast(pl.Float64).clip(*point.clip)
    scaled = (clipped.fill_null(0.0) * point.factor).cast(pl.Int64)
    return Summand(scaled.fill_null(pl.lit(0, dtype=pl.Int64)), point.bounds, point.factor, False)


def mean_scale_ratio(lo: float, hi: float, *, gaussian: bool = False) -> float:
    """Noise scale of a mean's sum over that of its count.

    The mean's error is about (noise_sum - mean * noise_count) / count. With Laplace noise,
    minimising its variance under sensitivity_sum / scale_sum + 1 / scale_count = epsilon
    gives scale_sum / scale_count = (sensitivity_sum * mean^2)^(1/3); with Gaussian noise
    under zCDP, (sensitivity_sum^2 / scale_sum^2 + 1 / scale_count^2) / 2 = rho gives
    (sensitivity_sum * mean)^(1/2). The mean is taken as the bounds' midpoint (at least a
    quarter of their width). OpenDP's ``dp.mean`` uses one scale for both, which drowns the
    count in noise when the bounds are wide.
    """
    sensitivity = max(abs(lo), abs(hi))
    typical = max(abs(lo + hi) / 2, (hi - lo) / 4)
    if sensitivity == 0 or typical == 0:
        return 1.0
    if gaussian:
        return float((sensitivity * typical) ** 0.5)
    return float((sensitivity * typical**2) ** (1 / 3))


def _count(name: str, alias: str) -> Exprs:
    return lambda s: [DPExpr(pl.col(name)).count(scale=s, signed=True).alias(alias)]


def _sum(summand: Summand, alias: str) -> Exprs:
    return lambda s: [DPExpr(summand.expr).sum(summand.bounds, scale=s).alias(alias)]


def _quantile_unit(alias: str, agg: Aggregate, col: Column) -> Unit:
    assert col.bounds is not None and agg.column is not None
    integer = col.type == "int"
    lo, hi = col.bounds
    candidates = _candidates(math.ceil(lo), math.floor(hi)) if integer else _grid(lo, hi)
    values, q = pl.col(agg.column).drop_nulls(), float(agg.q or 0)
    return Unit(
        agg,
        "quantile",
        (alias,),
        lambda s: [DPExpr(values).quantile(q, candidates, scale=s).alias(alias)],
        integer=integer,
    )


def _candidates(lo: int, hi: int) -> list[Any]:
    steps = QUANTILE_POINTS - 1
    if hi - lo <= steps:
        return list(range(lo, hi + 1))
    return sorted({lo + round((hi - lo) * i / steps) for i in range(QUANTILE_POINTS)})


def _grid(lo: float, hi: float) -> list[Any]:
    if lo == hi:
        return [float(lo)]
    steps = QUANTILE_POINTS - 1
    return [lo + (hi - lo) * i / steps for i in range(QUANTILE_POINTS)]

"""Compile a validated :class:`QuerySpec` into polars plans that OpenDP can make private.

Nothing here reads data or calls OpenDP's constructors; the result, a :class:`Blueprint`,
describes one *stage* (one OpenDP measurement, one scan) per group of aggregates that share
a grouping: the plain aggregates together, each histogram on its own (grouped by its bins).

Aggregates become noisy expressions in :mod:`gateway.adapters.dp.units` (null handling is
described there); histograms are built here. Filters are AND-ed and applied before
aggregation; with an ``id_column`` privacy unit, each individual's rows are then sampled
down to ``max_contributions``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any

import polars as pl

from gateway.adapters.dp.units import Unit, aggregate_unit, frame_len
from gateway.domain.errors import UnsupportedQuery
from gateway.domain.query import (
    Aggregate,
    Filter,
    QuerySpec,
    public_keys,
    queryable_column,
    validate,
)
from gateway.domain.text import _l
from gateway.policy import Column, Policy

CANONICAL: dict[str, Any] = {
    "int": pl.Int64,
    "float": pl.Float64,
    "str": pl.String,
    "bool": pl.Boolean,
}
_READ_COST = {"bool": 0, "int": 1, "float": 2, "str": 3}
BIN = "__bin"
MAX_KEY_CELLS = 100_000


@dataclass(frozen=True, eq=False)
class Stage:
    units: tuple[Unit, ...]
    share: int  # how many of the spec's aggregates this stage carries
    by: tuple[str, ...]
    keys: pl.DataFrame | None  # public key set joined in; None with `by`: thresholded
    bin_column: str | None = None
    edges: tuple[float, ...] | None = None

    @property
    def thresholded(self) -> bool:
        return bool(self.by) and self.keys is None

    @property
    def key_unit(self) -> int:
        """Index of the unit whose noisy row count OpenDP thresholds the keys on."""
        return next(i for i, u in enumerate(self.units) if u.kind in ("count", "keys", "histogram"))


@dataclass(frozen=True, eq=False)
class Blueprint:
    columns: dict[str, Any]  # source column -> canonical polars dtype
    max_rows: int
    max_contributions: int
    id_column: str | None
    group_by: tuple[str, ...]
    keys: pl.DataFrame | None  # public key set of group_by; None: none or private
    predicate: pl.Expr | None
    stages: tuple[Stage, ...]

    @property
    def outputs(self) -> list[Unit]:
        """The spec's aggregates' units, in the spec's (= the output columns') order."""
        units = [unit for stage in self.stages for unit in stage.units if unit.agg is not None]
        return sorted(units, key=lambda unit: unit.position)

    @property
    def thresholded(self) -> bool:
        return any(stage.thresholded for stage in self.stages)


def source(bp: Blueprint, parquet: Any) -> pl.LazyFrame:
    """The private data: a Parquet scan of just the query's columns in canonical types,
    float NaN turned into null (so the OpenDP domain can promise no NaN)."""
    return pl.scan_parquet(parquet).select([_canonical(n, t) for n, t in bp.columns.items()])


def _canonical(name: str, dtype: Any) -> pl.Expr:
    expr = pl.col(name).cast(dtype)
    return expr.fill_nan(None) if dtype == pl.Float64 else expr


def stage_plan(bp: Blueprint, stage: Stage, scales: Sequence[float]) -> pl.LazyFrame:
    """The polars plan of one stage at the given noise scales (one per unit)."""
    frame = pl.LazyFrame(schema=bp.columns)
    if bp.predicate is not None:
        frame = frame.filter(bp.predicate)
    if stage.bin_column is not None:
        assert stage.edges is not None
        col = pl.col(stage.bin_column)
        frame = frame.filter((col >= stage.edges[0]) & (col < stage.edges[-1]))
    if bp.id_column is not None:
        # at most max_contributions rows per individual, sampled after the filters
        rank = pl.int_range(pl.len()).shuffle().over(bp.id_column)
        frame = frame.filter(rank < bp.max_contributions)
    if stage.bin_column is not None:
        frame = frame.with_columns(_bin_index(stage.bin_column, stage.edges or ()).alias(BIN))
    exprs = [e for unit, scale in zip(stage.units, scales, strict=True) for e in unit.make(scale)]
    if not stage.by:
        return frame.select(exprs)
    grouped = frame.group_by(list(stage.by)).agg(exprs)
    if stage.keys is None:
        return grouped
    return stage.keys.lazy().join(grouped, on=list(stage.by), how="left", nulls_equal=True)


def _bin_index(name: str, edges: Sequence[float]) -> pl.Expr:
    """0-based bin of a value already known to lie in [edges[0], edges[-1]).

    A sum of comparisons, not ``cut``: the physical codes of polars categoricals follow
    insertion order, so they are data-dependent and must not name bins.
    """
    steps = [(pl.col(name) >= pl.lit(edge, dtype=pl.Float64)).cast(pl.UInt32) for edge in edges[1:-1]]
    return _balanced(steps, lambda a, b: a + b) if steps else pl.lit(0, dtype=pl.UInt32)


def compile_spec(spec: QuerySpec, policy: Policy, *, gaussian: bool = False) -> Blueprint:
    """``gaussian``: the plan will run under zCDP (Gaussian noise), which changes how a mean
    splits its share between its sum and its count."""
    validate(spec, policy)  # the domain's rules, again: the engine never trusts its caller
    for agg in spec.select:
        _check_int_bounds(agg, policy)
    group_keys = _group_keys(spec.group_by, policy)
    unit = policy.privacy_unit
    names = [*spec.group_by, *(a.column for a in spec.select if a.column)]
    names += [f.column for f in spec.where]
    if unit.id_column is not None:
        names.append(unit.id_column)
    if not names:  # a bare count still needs one column, or the scan has no rows
        names.append(min(policy.columns, key=lambda n: _READ_COST[policy.columns[n].type]))
    columns = {name: CANONICAL[policy.columns[name].type] for name in dict.fromkeys(names)}
    return Blueprint(
        columns=columns,
        max_rows=policy.max_rows,
        max_contributions=unit.max_contributions,
        id_column=unit.id_column,
        group_by=spec.group_by,
        keys=group_keys,
        predicate=_predicate(spec.where, policy),
        stages=_stages(spec, policy, group_keys, gaussian),
    )


def _queryable(policy: Policy, name: str, role: str) -> Column:
    column: Column = queryable_column(policy, name, role)
    return column


def _check_int_bounds(agg: Aggregate, policy: Policy) -> None:
    """What the engine needs beyond the domain's rules: integer bounds that hold an integer."""
    if agg.column is None or agg.agg == "count":
        return
    col = _queryable(policy, agg.column, agg.agg)
    if col.type == "int" and col.bounds is not None:
        if math.ceil(col.bounds[0]) > math.floor(col.bounds[1]):
            raise UnsupportedQuery(_l("the bounds of int column %(column)s hold no integer",
                                      column=agg.column))


def _group_keys(group_by: Sequence[str], policy: Policy) -> pl.DataFrame | None:
    """The public key set (every combination), or None when any column's keys are private."""
    frames = []
    for name in group_by:
        col = _queryable(policy, name, "group_by")
        keys = public_keys(col)
        if keys is None:
            return None
        frames.append(pl.DataFrame({name: pl.Series(name, keys, dtype=CANONICAL[col.type])}))
    if not frames:
        return None
    cells = math.prod(f.height for f in frames)
    if cells > MAX_KEY_CELLS:
        raise UnsupportedQuery(_l(
            "group_by %(columns)s has %(cells)s public key combinations; at most %(max)s can be "
            "released at once", columns=", ".join(group_by), cells=cells, max=MAX_KEY_CELLS))
    return reduce(lambda left, right: left.join(right, how="cross"), frames)


def _stages(
    spec: QuerySpec, policy: Policy, keys: pl.DataFrame | None, gaussian: bool
) -> tuple[Stage, ...]:
    by = tuple(spec.group_by)
    private = bool(by) and keys is None
    plain = [a for a in spec.select if a.agg != "histogram"]
    stages = []
    if plain:
        units = [
            aggregate_unit(f"__a{i}", agg, _column(policy, agg), policy.max_rows, position=i,
                           gaussian=gaussian)
            for i, agg in enumerate(spec.select)
            if agg.agg != "histogram"
        ]
        if private and not any(u.kind == "count" for u in units):
            units.append(Unit(None, "keys", ("__keys",), frame_len("__keys")))
        stages.append(Stage(tuple(units), len(plain), by, keys))
    for i, agg in enumerate(spec.select):
        if agg.agg == "histogram":
            stages.append(_histogram_stage(f"__h{i}", agg, by, keys, position=i))
    return tuple(stages)


def _column(policy: Policy, agg: Aggregate) -> Column | None:
    return None if agg.column is None else policy.columns[agg.column]


def _histogram_stage(
    alias: str, agg: Aggregate, by: tuple[str, ...], keys: pl.DataFrame | None, *, position: int
) -> Stage:
    assert agg.bins is not None and agg.column is not None
    bins = pl.DataFrame({BIN: pl.Series(BIN, range(len(agg.bins) - 1), dtype=pl.UInt32)})
    if by and keys is None:
        cell_keys = None
    else:
        cell_keys = bins if keys is None else keys.join(bins, how="cross")
        if cell_keys.height > MAX_KEY_CELLS:
            raise UnsupportedQuery(_l(
                "histogram %(name)s has %(cells)s cells with its group_by; at most %(max)s can "
                "be released at once", name=agg.name, cells=cell_keys.height, max=MAX_KEY_CELLS))
    unit = Unit(agg, "histogram", (alias,), frame_len(alias), position=position)
    return Stage((unit,), 1, (*by, BIN), cell_keys, agg.column, tuple(float(b) for b in agg.bins))


def _predicate(where: Iterable[Filter], policy: Policy) -> pl.Expr | None:
    terms = [_condition(flt, _queryable(policy, flt.column, "where")) for flt in where]
    return reduce(lambda a, b: a & b, terms) if terms else None


def _condition(flt: Filter, col: Column) -> pl.Expr:
    values = list(flt.value) if isinstance(flt.value, list | tuple) else [flt.value]
    lhs, lit = _operands(flt.column, col, values)
    if flt.op == "between":
        return (lhs >= lit(values[0])) & (lhs <= lit(values[1]))
    if flt.op == "in":
        return _balanced([lhs == lit(v) for v in values], lambda a, b: a | b)  # no is_in in 0.16
    compare: dict[str, Callable[[pl.Expr], pl.Expr]] = {
        "=": lambda v: lhs == v, "!=": lambda v: lhs != v, "<": lambda v: lhs < v,
        "<=": lambda v: lhs <= v, ">": lambda v: lhs > v, ">=": lambda v: lhs >= v,
    }
    return compare[flt.op](lit(values[0]))


def _balanced(terms: list[pl.Expr], join: Callable[[pl.Expr, pl.Expr], pl.Expr]) -> pl.Expr:
    """Combine as a balanced tree: a 1,000-value `in` stays 10 levels deep."""
    if len(terms) == 1:
        return terms[0]
    middle = len(terms) // 2
    return join(_balanced(terms[:middle], join), _balanced(terms[middle:], join))


def _operands(name: str, col: Column, values: list[Any]) -> tuple[pl.Expr, Callable[[Any], pl.Expr]]:
    if col.type == "int":
        if all(float(v).is_integer() and abs(v) < 2**63 for v in values):
            return pl.col(name), lambda v: pl.lit(int(v), dtype=pl.Int64)
        return pl.col(name).cast(pl.Float64), lambda v: pl.lit(float(v), dtype=pl.Float64)
    if col.type == "float":
        return pl.col(name), lambda v: pl.lit(float(v), dtype=pl.Float64)
    if col.type == "bool":
        return pl.col(name), lambda v: pl.lit(bool(v), dtype=pl.Boolean)
    return pl.col(name), lambda v: pl.lit(str(v), dtype=pl.String)


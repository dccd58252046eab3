"""The stable, row-level part of a query as Spark DataFrames: nothing here adds noise.

From a compiled :class:`~gateway.adapters.dp.compiler.Blueprint` (the same one the polars
engine runs) each stage becomes one aggregate frame with one row per key cell:

- the source (a Parquet directory or a table) is read in place, just the query's columns,
  cast to the policy's types, float NaN as null;
- filters are AND-ed as in the polars engine (a comparison with null drops the row);
- a histogram keeps the values in ``[first edge, last edge)`` and numbers their bins;
- with an ``id_column`` privacy unit, each individual's rows are cut to ``max_contributions``
  at random, after the filters (rows without an id are dropped: no individual owns them);
- counts count rows (or a column's non-null values); sums add each value clipped to the
  policy bounds, in the fixed point of :func:`~gateway.adapters.dp.units.fixed_point`, as
  exact decimals (no overflow, no float rounding).

The gateway then adds OpenDP's noise to the collected cells (:mod:`.noise`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import reduce
from typing import Any

from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from gateway.adapters.dp.compiler import BIN, Blueprint, Stage
from gateway.adapters.dp.units import FixedPoint, Unit, fixed_point
from gateway.domain.errors import InternalError
from gateway.domain.query import Filter, QuerySpec
from gateway.domain.text import _l
from gateway.policy import Policy

SPARK_TYPES = {"int": "bigint", "float": "double", "str": "string", "bool": "boolean"}
EXACT = "decimal(38,0)"  # sums: 38 digits never overflow at any realistic row count
_ROW = "__row"


def is_table(location: str) -> bool:
    """A table name (``db.table``) rather than a path or URI of Parquet files."""
    return "/" not in location and not location.lower().endswith(".parquet")


def read_source(spark: SparkSession, location: str) -> DataFrame:
    return spark.read.table(location) if is_table(location) else spark.read.parquet(location)


def compatible(policy_type: str, stored: T.DataType) -> bool:
    """Whether a stored column can be read as the policy's type without losing its meaning."""
    if policy_type == "int":
        return isinstance(stored, T.IntegralType)
    if policy_type == "float":
        return isinstance(stored, T.IntegralType | T.FractionalType)
    if policy_type == "str":
        return isinstance(stored, T.StringType | T.VarcharType | T.CharType)
    return isinstance(stored, T.BooleanType)


def rows(source: DataFrame, spec: QuerySpec, policy: Policy, bp: Blueprint) -> DataFrame:
    """The query's columns in the policy's types, filtered."""
    selected = []
    for name in bp.columns:
        kind = policy.columns[name].type
        column = F.col(name).cast(SPARK_TYPES[kind])
        if kind == "float":
            column = F.when(F.isnan(column), F.lit(None).cast("double")).otherwise(column)
        selected.append(column.alias(name))
    frame = source.select(*selected)
    if spec.where:
        frame = frame.filter(reduce(lambda a, b: a & b, [_condition(f, policy) for f in spec.where]))
    return frame


def _condition(flt: Filter, policy: Policy) -> SparkColumn:
    kind = policy.columns[flt.column].type
    values = list(flt.value) if isinstance(flt.value, list | tuple) else [flt.value]
    column, lit = F.col(flt.column), _literal(kind, values)
    if kind == "int" and lit is _float:
        column = column.cast("double")
    if flt.op == "between":
        return (column >= lit(values[0])) & (column <= lit(values[1]))
    if flt.op == "in":
        return column.isin([lit(v) for v in values])
    compare: dict[str, Callable[[SparkColumn], SparkColumn]] = {
        "=": lambda v: column == v, "!=": lambda v: column != v, "<": lambda v: column < v,
        "<=": lambda v: column <= v, ">": lambda v: column > v, ">=": lambda v: column >= v,
    }
    return compare[flt.op](lit(values[0]))


def _float(value: Any) -> SparkColumn:
    return F.lit(float(value)).cast("double")


def _literal(kind: str, values: Sequence[Any]) -> Callable[[Any], SparkColumn]:
    if kind == "int":
        if all(float(v).is_integer() and abs(v) < 2**63 for v in values):
            return lambda v: F.lit(int(v)).cast("bigint")
        return _float
    if kind == "float":
        return _float
    if kind == "bool":
        return lambda v: F.lit(bool(v))
    return lambda v: F.lit(str(v))


def stage_cells(frame: DataFrame, bp: Blueprint, stage: Stage, policy: Policy) -> DataFrame:
    """One row per key cell of the stage (those present in the data), one column per alias."""
    if stage.bin_column is not None:
        assert stage.edges is not None
        column = F.col(stage.bin_column)
        frame = frame.filter((column >= stage.edges[0]) & (column < stage.edges[-1]))
    if bp.id_column is not None:
        frame = bounded(frame, bp.id_column, bp.max_contributions)
    if stage.bin_column is not None:
        frame = frame.withColumn(BIN, _bin_index(stage.bin_column, stage.edges or ()))
    aggregates = [a for unit in stage.units for a in _aggregates(unit, policy, bp.max_rows)]
    if not stage.by:
        return frame.agg(*aggregates)
    return frame.groupBy(*stage.by).agg(*aggregates)


def bounded(frame: DataFrame, id_column: str, contributions: int) -> DataFrame:
    """At most ``contributions`` rows per individual, chosen at random."""
    order = Window.partitionBy(id_column).orderBy(F.rand())
    return (frame.filter(F.col(id_column).isNotNull())
            .withColumn(_ROW, F.row_number().over(order))
            .filter(F.col(_ROW) <= contributions).drop(_ROW))


def _bin_index(name: str, edges: Sequence[float]) -> SparkColumn:
    steps = [(F.col(name) >= F.lit(float(edge))).cast("int") for edge in edges[1:-1]]
    return reduce(lambda a, b: a + b, steps) if steps else F.lit(0)


def point_of(unit: Unit, policy: Policy, max_rows: int) -> FixedPoint:
    assert unit.agg is not None and unit.agg.column is not None
    return fixed_point(policy.columns[unit.agg.column], max_rows)


def _aggregates(unit: Unit, policy: Policy, max_rows: int) -> list[SparkColumn]:
    first = unit.aliases[0]
    if unit.kind in ("count", "keys", "histogram"):
        return [F.count(F.lit(1)).alias(first)]
    assert unit.agg is not None and unit.agg.column is not None
    column = unit.agg.column
    if unit.kind == "count_column":
        return [F.count(F.col(column)).alias(first)]
    if unit.kind in ("sum", "mean"):
        total = F.sum(_summand(column, point_of(unit, policy, max_rows)))
        if unit.kind == "sum":
            return [total.alias(first)]
        return [total.alias(first), F.count(F.col(column)).alias(unit.aliases[1])]
    raise InternalError(_l("the Spark engine has no aggregate for %(kind)s; this is a bug (the "
                           "plan refuses it)", kind=unit.kind))


def _summand(name: str, point: FixedPoint) -> SparkColumn:
    """The column clipped to the policy bounds, in fixed point, null as 0, as an exact decimal."""
    lo, hi = point.clip
    column = F.col(name) if point.integer else F.col(name).cast("double")
    low, high = (F.lit(int(lo)), F.lit(int(hi))) if point.integer else (F.lit(lo), F.lit(hi))
    # not least/greatest: they skip nulls, so a null would become a bound
    clipped = F.when(column < low, low).when(column > high, high).otherwise(column)
    scaled = clipped if point.integer else clipped * F.lit(point.factor)
    # truncated to an integer like the polars engine; a null adds 0
    return F.coalesce(scaled.cast("bigint"), F.lit(0).cast("bigint")).cast(EXACT)

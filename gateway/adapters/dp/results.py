"""Turn the stages' noisy frames into the response's rows and accuracy (post-processing only).

Everything here works on values OpenDP has already released, so none of it costs privacy:

- counts are signed (unbiased) integers, so a small true count can come out negative;
- a mean is the noisy sum over the noisy count, clipped to the column's bounds, and None
  when the noisy count is below 1;
- with private keys, a cell whose key did not clear the threshold in its stage is None;
- rows follow the public key order (policy order), else the keys' natural order; the spec's
  ``order_by`` and ``limit`` are the caller's (``services.queries.post_process``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from gateway.adapters.dp.compiler import BIN, Blueprint, Stage
from gateway.adapters.dp.units import Unit
from gateway.domain.query import histogram_labels

Key = tuple[Any, ...]
Cells = dict[str, Any]


def collect_cells(bp: Blueprint, frames: Sequence[pl.DataFrame]) -> list[tuple[Key, Cells]]:
    """Every released key with its noisy cells (by internal alias), in output key order."""
    tables = [_table(bp, stage, frame) for stage, frame in zip(bp.stages, frames, strict=True)]
    out = []
    for key in _keys(bp, tables):
        cells: Cells = {}
        for table in tables:
            cells.update(table.get(key, {}))
        out.append((key, cells))
    return out


def assemble(bp: Blueprint, keyed: Sequence[tuple[Key, Cells]]) -> list[list[object]]:
    return [[*key, *_values(bp, cells)] for key, cells in keyed]


def _table(bp: Blueprint, stage: Stage, frame: pl.DataFrame) -> dict[Key, Cells]:
    table: dict[Key, Cells] = {}
    width = len(bp.group_by)
    for record in frame.iter_rows(named=True):
        key = tuple(record[name] for name in bp.group_by)
        cells = table.setdefault(key, {})
        if stage.bin_column is None:
            cells.update({alias: record[alias] for u in stage.units for alias in u.aliases})
        else:
            alias = stage.units[0].aliases[0]
            cells[f"{alias}#{record[BIN]}"] = record[alias]
    assert all(len(key) == width for key in table)
    return table


def _keys(bp: Blueprint, tables: Sequence[dict[Key, Cells]]) -> list[Key]:
    if not bp.group_by:
        return [()]
    if bp.keys is not None:
        return list(bp.keys.iter_rows())
    seen = {key for table in tables for key in table}
    return sorted(seen, key=lambda key: tuple((v is None, v) for v in key))


def _values(bp: Blueprint, cells: Cells) -> list[object]:
    out: list[object] = []
    for unit in bp.outputs:
        alias = unit.aliases[0]
        if unit.kind == "histogram":
            assert unit.agg is not None and unit.agg.bins is not None
            out += [_int(cells.get(f"{alias}#{b}")) for b in range(len(unit.agg.bins) - 1)]
        elif unit.kind == "mean":
            out.append(_mean(unit, cells.get(unit.aliases[0]), cells.get(unit.aliases[1])))
        elif unit.integer:
            out.append(_int(cells.get(alias)))
        else:
            out.append(_float(cells.get(alias), unit.factor))
    return out


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _float(value: Any, factor: float) -> float | None:
    return None if value is None else float(value) / factor


def _mean(unit: Unit, total: Any, count: Any) -> float | None:
    if total is None or count is None or count < 1:
        return None
    assert unit.bounds is not None
    lo, hi = unit.bounds
    return float(min(max(total / unit.factor / count, lo), hi))


def accuracy(
    bp: Blueprint, by_alias: dict[str, float | None], keyed: Sequence[tuple[Key, Cells]] | None
) -> dict[str, float | None]:
    """Per output column, the (1 - alpha) half-width of its noise.

    Counts, sums and histogram bins report OpenDP's own figure. A quantile has none. A mean
    has none before release (it depends on the private count); after release it is the
    first-order propagation (a_sum + |mean| a_count) / count at the released values, the
    widest over the rows, capped at the width of the bounds (a clipped mean is never
    further off).
    """
    out: dict[str, float | None] = {}
    for unit in bp.outputs:
        agg = unit.agg
        assert agg is not None
        if unit.kind == "histogram":
            assert agg.bins is not None
            for label in histogram_labels(agg.bins):
                out[f"{agg.name} {label}"] = by_alias.get(unit.aliases[0])
        elif unit.kind == "quantile":
            out[agg.name] = None
        elif unit.kind == "mean":
            out[agg.name] = _mean_accuracy(unit, by_alias, keyed)
        else:
            value = by_alias.get(unit.aliases[0])
            out[agg.name] = None if value is None else value / unit.factor
    return out


def _mean_accuracy(
    unit: Unit, by_alias: dict[str, float | None], keyed: Sequence[tuple[Key, Cells]] | None
) -> float | None:
    a_sum, a_count = by_alias.get(unit.aliases[0]), by_alias.get(unit.aliases[1])
    if keyed is None or a_sum is None or a_count is None or unit.bounds is None:
        return None
    a_sum /= unit.factor
    widths = [unit.bounds[1] - unit.bounds[0]]  # a clipped mean is never further off
    for _key, cells in keyed:
        count = cells.get(unit.aliases[1])
        mean = _mean(unit, cells.get(unit.aliases[0]), count)
        if mean is not None and count is not None:
            widths.append((a_sum + abs(mean) * a_count) / count)
    return min(widths[0], max(widths[1:])) if len(widths) > 1 else None

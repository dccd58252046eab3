"""Columns of a synthetic-data release, encoded as categories from the policy alone.

Every column becomes a finite set of categories that OpenDP's ``mbi`` treats as public keys
(so the release needs no delta and no key discovery):

- a str column: its public ``categories``; a bool column: False, True;
- an int column whose bounds span at most ``bins`` values: each value;
- any other int or float column with bounds: ``bins`` equal-width bins of its policy bounds
  (public), values clipped to the bounds first, the bin index as the key;
- anything else (no public categories, no bounds) is refused: its values are not public.

OpenDP adds a null category to each column (nulls, and values outside the public keys).
Rows go in through :func:`encoded_frame` (row-wise, so neighbouring datasets stay
neighbours) and come out through :func:`decode`, a bin becoming its midpoint.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from gateway.domain.errors import InvalidRequest, UnsupportedQuery
from gateway.domain.query import queryable_column
from gateway.domain.text import N_, _l
from gateway.policy import Column, Policy

DEFAULT_BINS = 10
MAX_BINS = 64
BIN_NOTE = N_(
    "numeric columns were cut into equal-width bins of their policy bounds; each synthetic "
    "value is the midpoint of its bin (an int column's middle integer), not an observed value"
)


@dataclass(frozen=True)
class Encoded:
    """One column as categories: ``keys`` are what OpenDP sees; ``edges`` for binned ones."""

    name: str
    type: str
    keys: tuple[Any, ...]
    edges: tuple[float, ...] | None = None  # bins + 1 edges from the lower to the upper bound

    @property
    def binned(self) -> bool:
        return self.edges is not None

    @property
    def cardinality(self) -> int:
        return len(self.keys) + 1  # OpenDP's null category

    def labels(self) -> list[Any]:
        """Public names of the categories, in key order (a bin as "[lo, hi)")."""
        if self.edges is None:
            return list(self.keys)
        last = len(self.edges) - 2
        return [
            f"[{_fmt(lo)}, {_fmt(hi)}{']' if i == last else ')'}"
            for i, (lo, hi) in enumerate(zip(self.edges, self.edges[1:], strict=False))
        ]


def _fmt(value: float) -> str:
    return f"{value:g}"


def encode_columns(policy: Policy, columns: Sequence[str], *, bins: int) -> list[Encoded]:
    if not columns:
        raise InvalidRequest(_l("name at least one column"))
    if len(set(columns)) != len(columns):
        raise InvalidRequest(_l("columns must be distinct"))
    if isinstance(bins, bool) or not isinstance(bins, int) or not 2 <= bins <= MAX_BINS:
        raise InvalidRequest(
            _l("bins must be an integer from 2 to %(max)s, got %(value)s", max=MAX_BINS, value=repr(bins))
        )
    return [_encode(name, queryable_column(policy, name, "synthetic"), bins) for name in columns]


def _encode(name: str, col: Column, bins: int) -> Encoded:
    if col.categories:
        return Encoded(name, col.type, tuple(col.categories))
    if col.type == "bool":
        return Encoded(name, col.type, (False, True))
    if col.type in ("int", "float") and col.bounds is not None:
        lo, hi = col.bounds
        if col.type == "int":
            ilo, ihi = math.ceil(lo), math.floor(hi)
            if ihi - ilo + 1 <= bins:
                return Encoded(name, col.type, tuple(range(ilo, ihi + 1)))
            lo, hi = float(ilo), float(ihi)
        if lo == hi:
            return Encoded(name, col.type, (col.bounds[0],))
        edges = tuple(lo + (hi - lo) * i / bins for i in range(bins)) + (hi,)
        return Encoded(name, col.type, tuple(range(bins)), edges)
    raise UnsupportedQuery(
        _l(
            "column %(column)s has no public categories or bounds in the policy, so synthetic data "
            "cannot cover it (its values are not public)",
            column=name,
        )
    )


def domain_size(encoded: Sequence[Encoded]) -> int:
    return math.prod(e.cardinality for e in encoded)


def _expr(e: Encoded) -> pl.Expr:
    col = pl.col(e.name)
    if e.type == "float":
        col = col.cast(pl.Float64).fill_nan(None)
    elif e.type == "int":
        col = col.cast(pl.Int64)
    elif e.type == "str":
        col = col.cast(pl.String)
    if e.edges is None:
        return col.alias(e.name)
    lo, hi, n = e.edges[0], e.edges[-1], len(e.keys)
    index = ((col.cast(pl.Float64).clip(lo, hi) - lo) / (hi - lo) * n).floor()
    return index.clip(0, n - 1).cast(pl.Int64).alias(e.name)


def encoded_frame(parquet: Any, encoded: Sequence[Encoded]) -> pl.LazyFrame:
    """The Parquet scan with each column as its key (row-wise; nothing is read yet)."""
    return pl.scan_parquet(parquet).select([_expr(e) for e in encoded])


def decode(e: Encoded, keys: Any, indices: np.ndarray) -> list[Any]:
    """OpenDP's key indices (its null category last) back to values; bins to midpoints."""
    values = list(keys)
    if e.edges is None:
        return [values[i] for i in indices]
    mids = [_midpoint(e, k) if k is not None else None for k in values]
    return [mids[i] for i in indices]


def _midpoint(e: Encoded, index: int) -> float | int:
    assert e.edges is not None
    lo, hi = e.edges[index], e.edges[index + 1]
    if e.type == "int":
        first = math.ceil(lo)
        last = math.floor(hi) if index == len(e.keys) - 1 else math.ceil(hi) - 1
        return (first + max(first, last)) // 2
    return (lo + hi) / 2

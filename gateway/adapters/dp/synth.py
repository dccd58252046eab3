"""Synthetic data: AIM or MST over Private-PGM (``opendp.extras.mbi``), charged by OpenDP's map.

    plan = plan_synthetic(policy, parquet=path, version=v, columns=[...], rows=500,
                          method="aim", bins=10, loss=Budget.of(1.0))   # reads no data
    plan.spent           # (epsilon, delta) from OpenDP's privacy map of what will run
    plan.accuracy()      # one-way marginal counts: OpenDP's half-width at alpha
    release = plan.release()                                          # reads data, once

Columns are categories from the policy alone (:mod:`.synth_columns`). With ``delta == 0``
the contingency table is measured under pure DP (Laplace noise); with ``delta > 0`` under
zero-concentrated DP at the largest rho whose (epsilon, delta) conversion by OpenDP
(``make_zCDP_to_approxDP`` then ``make_fix_delta``) fits the loss, and the converted
measurement is the one run, so its map is the charge.

All noise comes from OpenDP. Drawing rows from the fitted model (Private-PGM's sampler)
and decoding bins to midpoints are post-processing of the released model: they touch no
data. Caps (rows, columns, domain size; policy ``synthetic``) are checked before planning.

Errors: :class:`InvalidRequest` / :class:`UnsupportedQuery` (via ``translated("plan")``)
for a request that cannot be planned, :class:`InternalError` when a planned fit fails.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

os.environ["RUST_BACKTRACE"] = "0"  # before opendp loads: a backtrace costs ~80 ms per error

import numpy as np
import opendp.prelude as dp

from gateway.adapters.dp.measure import Loss, translated, within
from gateway.adapters.dp.plan import ReleaseOnce
from gateway.adapters.dp.synth_columns import (
    BIN_NOTE,
    Encoded,
    decode,
    domain_size,
    encode_columns,
    encoded_frame,
)
from gateway.domain.budget import Budget
from gateway.domain.errors import InternalError, InvalidRequest, UnsupportedQuery
from gateway.domain.text import _l
from gateway.policy import Policy

METHODS = ("aim", "mst")
MARGINAL_CELLS_SHOWN = 2000  # a measured marginal's noisy counts are listed up to this size


@dataclass(frozen=True)
class Tuning:
    """Optimiser settings (post-processing only: they never change what is charged)."""

    iters: int = 500  # Private-PGM mirror descent steps per fit (its default: 1000)
    aim_rounds: int | None = 32  # OpenDP's default (None) is 16 x the number of columns
    aim_max_size: float = 80.0  # MB, AIM's cap on the model it builds


@dataclass(frozen=True)
class SyntheticRelease:
    columns: list[str]
    rows: list[list[Any]]
    marginals: list[dict[str, Any]]
    categories: dict[str, list[Any]]
    note: str | None
    method: str


def check_caps(policy: Policy, encoded: Sequence[Encoded], rows: int) -> None:
    limits = policy.synthetic
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise InvalidRequest(_l("rows must be a positive integer, got %(value)s", value=repr(rows)))
    if len(encoded) < 2:  # Private-PGM's MST fits pairs of columns: one column has none
        raise InvalidRequest(_l("synthetic data needs at least two columns"))
    if rows > limits.max_rows:
        raise InvalidRequest(
            _l("rows %(rows)s is over this dataset's cap of %(cap)s", rows=rows, cap=limits.max_rows)
        )
    if len(encoded) > limits.max_columns:
        raise InvalidRequest(
            _l(
                "%(count)s columns is over this dataset's cap of %(cap)s",
                count=len(encoded),
                cap=limits.max_columns,
            )
        )
    size = domain_size(encoded)
    size_text, cap_text = f"{size:,}", f"{limits.max_domain_size:,}"
    if size > limits.max_domain_size:
        raise InvalidRequest(
            _l(
                "the columns span %(size)s category combinations, over this dataset's cap of "
                "%(cap)s; use fewer columns or fewer bins",
                size=size_text,
                cap=cap_text,
            )
        )


def _guard_aim_steps() -> None:
    """Let AIM stop when its last step is too small to calibrate.

    OpenDP 0.16's AIM ends on a step with whatever budget is left; when that is a sliver,
    the search for its selection's noise scale raises (it only expects ValueError) and the
    whole fit fails after it was charged. Returning None there is OpenDP's own "no step
    fits" answer: AIM stops, having spent at most its budget. Only construction is guarded
    (no data is read there), so the privacy accounting is unchanged.
    """
    from opendp.extras.mbi import _aim

    original = _aim._make_aim_select
    if getattr(original, "dpsandbox_guard", False):
        return

    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(*args, **kwargs)
        except dp.OpenDPException:
            return None

    guarded.dpsandbox_guard = True  # type: ignore[attr-defined]
    _aim._make_aim_select = guarded


_guard_aim_steps()


def _algorithm(method: str, tuning: Tuning) -> Any:
    estimator = partial(_mirror_descent, iters=tuning.iters)
    if method == "aim":
        return dp.mbi.AIM(estimator=estimator, rounds=tuning.aim_rounds, max_size=tuning.aim_max_size)
    if method == "mst":
        return dp.mbi.MST(estimator=estimator)
    raise UnsupportedQuery(
        _l("method must be one of %(methods)s, got %(value)s", methods=", ".join(METHODS), value=repr(method))
    )


def _mirror_descent(domain: Any, loss_fn: Any, *, potentials: Any = None, iters: int) -> Any:
    from mbi.estimation import mirror_descent

    return mirror_descent(domain, loss_fn, potentials=potentials, iters=iters)


def rho_for(epsilon: float, delta: float) -> float:
    """The largest rho whose conversion by OpenDP spends at most (epsilon, delta)."""

    def converted(scale: float) -> Any:
        gaussian = dp.m.make_gaussian(
            dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float), scale
        )
        return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(gaussian), delta)

    scale = dp.binary_search_param(converted, d_in=1.0, d_out=(epsilon, delta), T=float)
    gaussian = dp.m.make_gaussian(dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float), scale)
    return float(gaussian.map(1.0))


class _Cache:
    """Planned measurements per (version, columns, method, loss); building one costs seconds."""

    def __init__(self, size: int = 16) -> None:
        self._size, self._items = size, OrderedDict[tuple[Any, ...], Any]()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> Any:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple[Any, ...], value: Any) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_CACHE = _Cache()


@dataclass
class SyntheticPlan:
    encoded: list[Encoded]
    rows: int
    method: str
    parquet: Path
    measurement: Any
    d_in: int
    spent: Loss
    oneway_scale: float | None
    zcdp: bool
    _once: ReleaseOnce = field(init=False, repr=False, compare=False, default_factory=lambda: (
        ReleaseOnce(_l("a synthetic-data plan is released at most once"))))

    def accuracy(self, alpha: float = 0.05) -> dict[str, float | None]:
        """OpenDP's (1 - alpha) half-width of each noisy one-way marginal count."""
        if self.oneway_scale is None:
            return {"one_way_count": None}
        with translated("plan"):
            if self.zcdp:
                width = dp.gaussian_scale_to_accuracy(self.oneway_scale, alpha)
            else:
                width = dp.discrete_laplacian_scale_to_accuracy(self.oneway_scale, alpha)
        return {"one_way_count": float(width)}

    def release(self) -> SyntheticRelease:
        self._once.claim()
        with translated("release"):
            table = self.measurement(encoded_frame(self.parquet, self.encoded))
            frame = table.model.synthetic_data(self.rows, "round").df
        names = [e.name for e in self.encoded]
        columns = {e.name: decode(e, table.keys[e.name], frame[e.name].to_numpy()) for e in self.encoded}
        rows = [list(values) for values in zip(*(columns[n] for n in names), strict=True)]
        return SyntheticRelease(
            columns=names,
            rows=rows,
            marginals=_marginals(table),
            categories={e.name: [*e.labels(), None] for e in self.encoded},
            note=BIN_NOTE if any(e.binned for e in self.encoded) else None,
            method=self.method,
        )


def _marginals(table: Any) -> list[dict[str, Any]]:
    """What was measured: each clique, its noise standard deviation and (if small) its
    noisy counts in row-major order of the columns' categories (null last)."""
    out = []
    for m in table.marginals.flatten():
        values = np.asarray(m.noisy_measurement, dtype=float).ravel()
        out.append(
            {
                "columns": list(m.clique),
                "stddev": float(m.stddev),
                "cells": int(values.size),
                "counts": [round(float(v), 3) for v in values]
                if values.size <= MARGINAL_CELLS_SHOWN
                else None,
            }
        )
    return out


def plan_synthetic(
    policy: Policy,
    *,
    parquet: Path,
    version: str,
    columns: Sequence[str],
    rows: int,
    method: str,
    bins: int,
    loss: Budget,
    tuning: Tuning | None = None,
) -> SyntheticPlan:
    """Refuse what the policy does not allow, then build the OpenDP measurement (no data read)."""
    tuning = tuning or Tuning()
    encoded = encode_columns(policy, columns, bins=bins)
    check_caps(policy, encoded, rows)
    algorithm = _algorithm(method, tuning)
    if policy.privacy_unit.id_column is not None:
        raise UnsupportedQuery(
            _l(
                "synthetic data needs a privacy unit of a bounded number of rows; this dataset's "
                "unit is an id column"
            )
        )
    d_in = policy.privacy_unit.max_contributions
    epsilon, delta = loss.epsilon_float, loss.delta_float
    key = (version, tuple(columns), bins, method, tuning, loss.epsilon_units, loss.delta_units)
    cached = _CACHE.get(key)
    if cached is None:
        with translated("plan"):
            cached = _build(policy, parquet, encoded, algorithm, d_in, epsilon, delta)
        _CACHE.put(key, cached)
    measurement, spent, scale = cached
    if not within(spent, (epsilon, delta)):
        raise InternalError(_l("the planned fit would spend %(spent)s, over %(total)s", spent=spent,
                                total=(epsilon, delta)))
    return SyntheticPlan(
        encoded, rows, method, Path(parquet), measurement, d_in, spent, scale, zcdp=delta > 0
    )


def _build(
    policy: Policy,
    parquet: Path,
    encoded: list[Encoded],
    algorithm: Any,
    d_in: int,
    epsilon: float,
    delta: float,
) -> tuple[Any, Loss, float | None]:
    loss = dp.loss_of(rho=rho_for(epsilon, delta)) if delta > 0 else dp.loss_of(epsilon=epsilon)
    context = dp.Context.compositor(
        data=encoded_frame(parquet, encoded),
        privacy_unit=dp.unit_of(contributions=d_in),
        privacy_loss=loss,
        margins=[dp.polars.Margin(max_length=policy.max_rows)],
    )
    query = context.query(**_query_loss(loss)).contingency_table(
        keys={e.name: list(e.keys) for e in encoded}, algorithm=algorithm
    )
    chain = query.resolve()
    if delta > 0:
        chain = dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(chain), delta)
        eps, dlt = chain.map(d_in)
        spent: Loss = (float(eps), float(dlt))
    else:
        spent = (float(chain.map(d_in)), 0.0)
    scale = cast(Any, query).oneway_scale  # ContingencyTableQuery; typed as a Query
    return chain, spent, None if scale is None else float(scale)


def _query_loss(loss: Any) -> dict[str, float]:
    _measure, distance = loss
    if isinstance(distance, tuple):
        raise InternalError(_l("a contingency table is planned under pure or concentrated DP only"))
    return {"rho": float(distance)} if "Concentrated" in str(_measure) else {"epsilon": float(distance)}

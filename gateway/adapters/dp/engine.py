"""The OpenDP engine: a validated query spec in, a differentially private release out.

    engine = Engine()
    plan = engine.plan(spec, policy, parquet=path, version=v, loss=loss)   # reads no data
    plan.accuracy(alpha=0.05)     # OpenDP's noise half-widths; spends nothing
    release = plan.release()      # the only step that reads data and draws noise

A plan compiles the spec into one OpenDP measurement per *stage* (the plain aggregates
together; each histogram on its own), over ``pl.scan_parquet`` of just the query's columns.
The loss is split evenly over the spec's aggregates (a histogram is one). Noise scales and
key thresholds are computed in closed form from OpenDP's own privacy map, cached per
(dataset version, query shape, loss), and every measurement's privacy map is checked
against the loss before a plan is returned (fail closed: :class:`InternalError`).

Accounting: a loss with epsilon plans pure DP (Laplace-type noise); a loss with rho
(``Budget.zcdp``) plans zero-concentrated DP (Gaussian-type noise), approximate zCDP when
keys are thresholded. :func:`~gateway.adapters.dp.conversion.epsilon_for_rho` and
:func:`~gateway.adapters.dp.conversion.rho_for_epsilon` convert with OpenDP.

Group keys: columns with public keys (categories, bool, small int ranges) release every
public key combination, joined in as a public key set, with no delta; otherwise only keys
whose noisy count clears OpenDP's threshold are released, spending delta.

Errors (translated once, in :mod:`gateway.adapters.dp.measure`): :class:`UnsupportedQuery`
or :class:`InvalidRequest` when a query cannot be planned; :class:`InternalError` when a
planned query fails to release or a check fails.

Threads: an :class:`Engine` may be shared (its cache is locked); a :class:`Plan` belongs to
one request and is released at most once. ``plan()`` reads the Parquet footer (schema) only.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from gateway.adapters.dp.compiler import Blueprint, compile_spec, source
from gateway.adapters.dp.measure import (
    Calibration,
    Loss,
    Space,
    accuracy_by_alias,
    calibrate,
    loss_of,
    make_measurement,
    make_space,
    release_all,
    translated,
    within,
)
from gateway.adapters.dp.plan import Release, StagedPlan
from gateway.domain.budget import Budget
from gateway.domain.errors import InternalError, InvalidRequest
from gateway.domain.query import QuerySpec
from gateway.domain.text import _l
from gateway.policy import Policy

__all__ = ["Engine", "Plan", "Release"]

SHARE_SLACK = 1 - 1e-12  # stage budgets sum to a hair under the loss, never over


class _LRU:
    """Calibrations per (version, shape, loss); thread-safe, least recently used evicted."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[Any, ...], tuple[Calibration, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> tuple[Calibration, ...] | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple[Any, ...], value: tuple[Calibration, ...]) -> None:
        if self._size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def discard(self, key: tuple[Any, ...]) -> None:
        with self._lock:
            self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


class Engine:
    def __init__(self, *, plan_cache_size: int = 1024) -> None:
        self._cache = _LRU(plan_cache_size)

    def plan(
        self, spec: QuerySpec, policy: Policy, *, parquet: Path, version: str, loss: Budget
    ) -> Plan:
        """Validate-compile the spec into OpenDP measurement(s) over pl.scan_parquet(parquet),
        reading no data. Raises UnsupportedQuery / InvalidRequest with user-facing messages."""
        zcdp = loss.is_zcdp
        bp, total, budgets = compile_budgeted(spec, policy, loss)
        key = (version, _shape(spec, policy), loss.epsilon_units, loss.delta_units, loss.rho_units)
        with translated("plan"):
            _check_schema(bp, parquet)
            space = make_space(bp, approximate=bp.thresholded, zcdp=zcdp)
            calibrations = self._cache.get(key)
            if calibrations is None:
                calibrations = tuple(
                    calibrate(space, bp, stage, budget)
                    for stage, budget in zip(bp.stages, budgets, strict=True)
                )
            measurements = [
                make_measurement(space, bp, stage, c.scales, c.threshold)
                for stage, c in zip(bp.stages, calibrations, strict=True)
            ]
            spent = [loss_of(space, m) for m in measurements]
        if not _affordable(spent, budgets, total):
            self._cache.discard(key)
            raise InternalError(_l("the planned measurements would spend %(spent)s, over %(total)s",
                                    spent=spent, total=total))
        self._cache.put(key, calibrations)
        return Plan(spec, bp, space, Path(parquet), measurements, budgets, spent)


def compile_budgeted(spec: QuerySpec, policy: Policy, loss: Budget) -> tuple[Blueprint, Loss, list[Loss]]:
    """The spec's blueprint, the loss it may spend (rho under zCDP, else epsilon; delta only
    for keys released above a noisy threshold) and that loss split over its stages; where
    every engine starts. Thresholded keys without delta are refused."""
    zcdp = loss.is_zcdp
    bp = compile_spec(spec, policy, gaussian=zcdp)
    if bp.thresholded and loss.delta_units == 0:
        raise InvalidRequest(_l(
            "group_by %(columns)s has no public keys, so its keys are released only above "
            "a noisy threshold, which needs delta > 0", columns=", ".join(spec.group_by)))
    total: Loss = (loss.rho_float if zcdp else loss.epsilon_float,
                   loss.delta_float if bp.thresholded else 0.0)
    return bp, total, stage_budgets(spec, bp, total)


def stage_budgets(spec: QuerySpec, bp: Blueprint, total: Loss) -> list[Loss]:
    parts = len(spec.select)
    return [
        (total[0] * stage.share / parts * SHARE_SLACK, total[1] * stage.share / parts * SHARE_SLACK)
        for stage in bp.stages
    ]


def _affordable(spent: list[Loss], budgets: list[Loss], total: Loss) -> bool:
    each = all(within(s, b) for s, b in zip(spent, budgets, strict=True))
    summed = (sum(s[0] for s in spent), sum(s[1] for s in spent))
    return each and within(summed, total)


def _shape(spec: QuerySpec, policy: Policy) -> str:
    """Everything the noise scales depend on: the computation (not filter values) and the
    policy's public facts about the columns involved."""
    canonical = spec.canonical()
    canonical["where"] = sorted((f.column, f.op) for f in spec.where)
    names = {*spec.group_by, *(a.column for a in spec.select if a.column)}
    facts = {
        "max_rows": policy.max_rows,
        "unit": policy.privacy_unit.model_dump(),
        "columns": {n: policy.columns[n].model_dump() for n in sorted(names) if n in policy.columns},
    }
    return json.dumps([canonical, facts], sort_keys=True, default=str)


def _compatible(policy_dtype: Any, stored: Any) -> bool:
    if policy_dtype == pl.Int64:
        return bool(stored.is_integer())
    if policy_dtype == pl.Float64:
        return bool(stored.is_float() or stored.is_integer())
    if policy_dtype == pl.String:
        return bool(stored in (pl.String, pl.Categorical) or isinstance(stored, pl.Enum))
    return bool(stored == pl.Boolean)


def _check_schema(bp: Blueprint, parquet: Path) -> None:
    """The data file must hold every column the query touches, in a type the policy allows."""
    try:
        schema = pl.scan_parquet(parquet).collect_schema()
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InternalError(_l("the data file of this dataset cannot be read (%(error)s)",
                                error=exc)) from exc
    for name, dtype in bp.columns.items():
        stored = schema.get(name)
        if stored is None or not _compatible(dtype, stored):
            raise InternalError(_l(
                "column %(column)s is stored as %(stored)s, which does not match its policy type",
                column=name, stored=stored))


@dataclass
class Plan(StagedPlan):
    space: Space
    parquet: Path
    measurements: list[Any]
    budgets: list[Loss]
    spent_by_stage: list[Loss]
    _accuracy: dict[float, dict[str, float | None]] = field(default_factory=dict, init=False)

    @property
    def zcdp(self) -> bool:
        return self.space.zcdp

    @property
    def spent(self) -> Loss:
        """(epsilon, delta), or (rho, delta) under zCDP, that the measurements spend, by
        OpenDP's privacy maps (zCDP and its approximate form compose by adding)."""
        return (
            sum(s[0] for s in self.spent_by_stage),
            sum(s[1] for s in self.spent_by_stage),
        )

    def _accuracy_by_alias(self, alpha: float) -> dict[str, float | None]:
        cached = self._accuracy.get(alpha)
        if cached is None:
            cached = {}
            with translated("plan"):
                for measurement in self.measurements:
                    cached.update(accuracy_by_alias(measurement, alpha, gaussian=self.zcdp))
            self._accuracy[alpha] = cached
        return cached

    def _noisy_frames(self) -> list[pl.DataFrame]:
        with translated("release"):
            return release_all(
                self.space,
                source(self.blueprint, self.parquet),
                self.measurements,
                self.budgets,
                [not any(u.kind == "quantile" for u in stage.units) for stage in self.blueprint.stages],
            )

"""The Spark engine: the same port as the OpenDP polars engine, for data read in place.

    engine = SparkEngine(SparkSessions("local[*]"))
    plan = engine.plan(spec, policy, parquet=location, version=v, loss=loss)  # schema only
    plan.accuracy(alpha=0.05)     # OpenDP's noise half-widths; spends nothing
    release = plan.release()      # Spark aggregates, then OpenDP adds the noise

``plan`` compiles the spec with the polars engine's compiler (the same validation, stages,
units and fixed point), refuses what this engine cannot bound (:class:`UnsupportedQuery`,
e.g. quantiles), calibrates OpenDP measurements for the collected vectors (:mod:`.noise`)
and checks that their privacy maps add up to the charge: the primary loss (epsilon, or rho
under zCDP) equals the charge to within float rounding, and never exceeds it; delta, spent
only by a key threshold, never exceeds it. Anything else is an :class:`InternalError`
before any data is read. :class:`SparkPlan` is a :class:`~gateway.adapters.dp.plan.StagedPlan`,
as the polars engine's plan is: the same alpha check and once-only release, its results and
accuracy assembled by :mod:`gateway.adapters.dp.results`, so both engines answer alike.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import polars as pl

from gateway.adapters.dp.compiler import Blueprint, Stage
from gateway.adapters.dp.engine import compile_budgeted
from gateway.adapters.dp.measure import Loss, translated
from gateway.adapters.dp.plan import Release, StagedPlan
from gateway.adapters.spark import frames
from gateway.adapters.spark.noise import (
    StageNoise,
    accuracy_by_alias,
    calibrate,
    noisy_vector,
    released_keys,
)
from gateway.adapters.spark.session import SparkSessions
from gateway.domain.budget import Budget
from gateway.domain.errors import DomainError, InternalError
from gateway.domain.query import QuerySpec
from gateway.domain.text import _l
from gateway.policy import Policy

__all__ = ["SparkEngine", "SparkPlan", "check_charge"]

log = logging.getLogger(__name__)

MAP_TOLERANCE = 1e-6  # relative: the maps' sum may fall this far below the charge, no further


def check_charge(spent: Loss, total: Loss, *, exact: bool = True) -> None:
    """The charge must be what OpenDP's maps say the measurements spend (``exact``), or at
    least cover it where a key count's noise was raised to OpenDP's minimum scale."""
    low = total[0] * (1 - MAP_TOLERANCE) if exact else 0.0
    primary_ok = low <= spent[0] <= total[0]
    if not (primary_ok and 0 <= spent[1] <= total[1]):
        raise InternalError(_l("the planned measurements would spend %(spent)s, not the charge "
                               "%(total)s", spent=spent, total=total))


@contextmanager
def spark_errors(phase: str) -> Iterator[None]:
    """Spark's failures as domain errors: reading the data is the operator's problem, never
    the analyst's, so both phases give an :class:`InternalError` (a plan's charges nothing)."""
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    try:
        yield
    except DomainError:
        raise
    except (PySparkException, Py4JError, OSError) as exc:
        log.warning("Spark %s failed: %s", phase, exc, exc_info=exc)
        if phase == "plan":
            raise InternalError(_l("the data of this dataset cannot be read by Spark")) from exc
        raise InternalError(_l("the Spark engine failed while releasing the query")) from exc


class SparkEngine:
    def __init__(self, sessions: SparkSessions) -> None:
        self.sessions = sessions

    def plan(self, spec: QuerySpec, policy: Policy, *, parquet: Any, version: str,
             loss: Budget) -> SparkPlan:
        """Compile, calibrate and check; reads the source's schema only."""
        zcdp = loss.is_zcdp
        bp, total, budgets = compile_budgeted(spec, policy, loss)
        with translated("plan"):
            noise = [calibrate(stage, bp, policy, budget, gaussian=zcdp)
                     for stage, budget in zip(bp.stages, budgets, strict=True)]
        spent_by_stage = [stage.loss() for stage in noise]
        spent = (sum(s[0] for s in spent_by_stage), sum(s[1] for s in spent_by_stage))
        check_charge(spent, total, exact=not any(stage.floored for stage in noise))
        source = self._checked_source(policy, bp, str(parquet))
        return SparkPlan(spec, bp, policy=policy, source=source, noise=noise, spent=spent,
                         zcdp=zcdp)

    def _checked_source(self, policy: Policy, bp: Blueprint, location: str) -> Any:
        """The source as a lazy DataFrame, its schema checked: the release aggregates this
        one, so Spark lists the files and reads their footers once per query."""
        with spark_errors("plan"):
            source = frames.read_source(self.sessions.get(), location)
            schema = source.schema
        stored = {f.name: f.dataType for f in schema.fields}
        for name in bp.columns:
            kind = policy.columns[name].type
            if name not in stored or not frames.compatible(kind, stored[name]):
                raise InternalError(_l(
                    "column %(name)s is stored as %(stored)s, which does not match its policy "
                    "type", name=name, stored=str(stored.get(name))))
        return source


@dataclass
class SparkPlan(StagedPlan):
    """A Spark query plan. Test seam: :meth:`_aggregates` and :meth:`_noised` split the
    release into Spark's exact aggregates and OpenDP's noise on them, so that a test can
    tell which private keys must be released and draw a release from known aggregates;
    neither claims the plan's one release, and nothing in the gateway calls them."""

    policy: Policy
    source: Any  # the checked DataFrame, read lazily at release
    noise: list[StageNoise]
    spent: Loss
    zcdp: bool

    def _accuracy_by_alias(self, alpha: float) -> dict[str, float | None]:
        """As the polars engine reports it (means: None before release)."""
        with translated("plan"):
            return accuracy_by_alias(self.noise, alpha, gaussian=self.zcdp)

    def _noisy_frames(self) -> list[pl.DataFrame]:
        return self._frames_from(self._aggregates())

    def _aggregates(self) -> list[list[Any]]:
        """Spark's exact aggregates, one list of rows per stage: never released as they are."""
        bp = self.blueprint
        with spark_errors("release"):
            rows = frames.rows(self.source, self.spec, self.policy, bp)
            return [frames.stage_cells(rows, bp, stage, self.policy).collect()
                    for stage in bp.stages]

    def _frames_from(self, aggregates: list[list[Any]]) -> list[pl.DataFrame]:
        """OpenDP's noise added to the collected vectors, one frame per stage."""
        with translated("release"):
            return [_noisy_frame(stage, noise, cells) for stage, noise, cells
                    in zip(self.blueprint.stages, self.noise, aggregates, strict=True)]

    def _noised(self, aggregates: list[list[Any]], *, alpha: float = 0.05) -> Release:
        """Test seam (see the class): a release noised from ``aggregates``."""
        return self._answer(self._by_alias(alpha), self._frames_from(aggregates))


def _noisy_frame(stage: Stage, noise: StageNoise, cells: list[Any]) -> pl.DataFrame:
    """The stage's cells with noise, as the polars engine's stage frame: key columns, then
    one column per alias. Public keys: every key cell, absent ones as 0; private keys:
    those that cleared the threshold."""
    by = list(stage.by)
    exact = {tuple(row[name] for name in by): row.asDict() for row in cells}
    if stage.keys is not None:
        keys = list(stage.keys.select(by).iter_rows())
        columns: dict[str, list[Any]] = {}
    elif by:
        assert noise.keys is not None
        kept = released_keys(noise.keys, {key: int(row[noise.keys.alias]) for key, row in exact.items()})
        keys = sorted(kept, key=lambda key: tuple((v is None, str(v)) for v in key))
        columns = {noise.keys.alias: [kept[key] for key in keys]}
    else:
        keys = [()]
        columns = {}
    for vector in noise.vectors:
        values = [int(exact.get(key, {}).get(vector.alias) or 0) for key in keys]
        columns[vector.alias] = noisy_vector(vector, values)
    data = {name: [key[i] for key in keys] for i, name in enumerate(by)}
    return pl.DataFrame({**data, **columns}, strict=False)

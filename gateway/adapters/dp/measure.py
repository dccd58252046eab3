"""Every call into OpenDP lives here: domains, measurements, calibration, summaries, releases.

OpenDP errors are translated in this module, once, by :func:`translated`: while a query is
being planned they become :class:`UnsupportedQuery` (the query asks for something the engine
cannot do safely), while it is being released they become :class:`InternalError` (a plan
that compiled must release; anything else is a bug or a dataset that no longer matches its
registration).

Calibration avoids OpenDP's generic ``resolve()`` search. Each unit of a stage (one
aggregate of the spec, or the hidden count that releases private keys) adds noise whose
privacy loss is ``sensitivity / scale`` under pure DP (Laplace-type noise, epsilon) and
``sensitivity^2 / (2 scale^2)`` under zero-concentrated DP (Gaussian-type noise, rho):
OpenDP picks the distribution from the output measure. The unit's loss at scale 1 is read
from OpenDP's own privacy map by one probe per unit (the unit at scale 1, every other unit
at a negligible-loss scale), the scale then follows in closed form, the key threshold
likewise from the discrete Laplace or Gaussian tail, and the final measurement's privacy
map is checked against the requested loss (fail closed).

Under zCDP a thresholded stage runs under OpenDP's approximate zCDP: its loss is
(rho, delta), delta being what the key threshold spends.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

os.environ["RUST_BACKTRACE"] = "0"  # before opendp loads: a backtrace costs ~80 ms per error

import opendp.prelude as dp
import polars as pl

from gateway.adapters.dp.compiler import Blueprint, Stage, stage_plan
from gateway.domain.errors import DomainError, InternalError, UnsupportedQuery
from gateway.domain.text import _l

# honest-but-curious: OnceFrame.lazy(), so that polars' own streaming engine runs the plan
# (about 2.5x less CPU than OpenDP's bundled polars at 10M rows). Safe here because every
# measurement comes from this module and each released frame is collected exactly once,
# its rows then re-ordered by key (see release_all).
dp.enable_features("contrib", "honest-but-curious")

log = logging.getLogger(__name__)

PROBE_SCALE = 1e30  # noise so wide that a unit at this scale adds ~0 to a probe's loss
PROBE_THRESHOLD = 2**32 - 1  # OpenDP's own choice while it searches for a scale
HEADROOM = 1 + 1e-9  # scales are widened by this factor so float rounding never overspends
MAX_THRESHOLD_STEPS = 64
EXACT_GAUSSIAN_SCALE = 2.0**14  # OpenDP's discrete-Gaussian accuracy is O(scale) to compute
MIN_KEY_SCALE = 0.01  # OpenDP's tail bound overflows exp() below ~1/700; more noise is safe
_ATOM = {pl.Int64: "i64", pl.Float64: "f64", pl.String: "String", pl.Boolean: "bool"}

Loss = tuple[float, float]  # (epsilon, delta), or (rho, delta) under zCDP; delta 0 without keys


def _atom(dtype: Any) -> Any:
    if dtype == pl.Float64:
        return dp.atom_domain(T="f64", nan=False)  # the source scan turns NaN into null
    return dp.atom_domain(T=_ATOM[dtype])


@dataclass(frozen=True)
class Calibration:
    """The noise scale of each unit of a stage, and its key threshold (None: no threshold)."""

    scales: tuple[float, ...]
    threshold: int | None


@dataclass(frozen=True, eq=False)
class Space:
    """Input domain, metric, distance and output measure shared by every stage of a query."""

    domain: Any
    metric: Any
    d_in: int
    measure: Any
    approximate: bool
    zcdp: bool = False


def _clean(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc)
    text = " ".join(str(text).split())
    match = re.match(r'^\w+\("(.*)"\)$', text)
    text = match.group(1) if match else text
    text = text.split(" Resolved plan until failure")[0]
    return text[:400]


@contextmanager
def translated(phase: str) -> Iterator[None]:
    """Turn OpenDP / polars failures into domain errors; ``phase`` is "plan" or "release"."""
    try:
        yield
    except DomainError:
        raise
    except (dp.OpenDPException, pl.exceptions.PolarsError, OSError, ValueError, TypeError) as exc:
        detail = _clean(exc)
        log.warning("OpenDP %s failed: %s", phase, detail, exc_info=exc)
        if phase == "plan":
            raise UnsupportedQuery(_l(
                "this query cannot be answered with differential privacy: %(detail)s",
                detail=detail)) from exc
        raise InternalError(_l("the DP engine failed while releasing the query: %(detail)s",
                               detail=detail)) from exc


def make_space(bp: Blueprint, *, approximate: bool, zcdp: bool = False) -> Space:
    series = [
        dp.series_domain(name, dp.option_domain(_atom(dtype)))
        for name, dtype in bp.columns.items()
    ]
    domain = dp.with_margin(
        dp.lazyframe_domain(series), dp.polars.Margin(by=[], max_length=bp.max_rows)
    )
    if bp.group_by:
        # max_groups: every group holds at least one row, so max_rows bounds the group count
        margin = dp.polars.Margin(
            by=list(bp.group_by), max_length=bp.max_rows, max_groups=bp.max_rows
        )
        domain = dp.with_margin(domain, margin)
    if bp.id_column is None:
        metric, d_in = dp.symmetric_distance(), bp.max_contributions
    else:
        metric, d_in = dp.symmetric_id_distance(bp.id_column), 1
    measure = dp.zero_concentrated_divergence() if zcdp else dp.max_divergence()
    if approximate:
        measure = dp.approximate(measure)
    return Space(domain, metric, d_in, measure, approximate, zcdp)


def make_measurement(
    space: Space, bp: Blueprint, stage: Stage, scales: Sequence[float], threshold: int | None
) -> Any:
    return dp.m.make_private_lazyframe(
        input_domain=space.domain,
        input_metric=space.metric,
        output_measure=space.measure,
        lazyframe=stage_plan(bp, stage, scales),
        threshold=threshold,
    )


def loss_of(space: Space, measurement: Any) -> Loss:
    out = measurement.map(space.d_in)
    if space.approximate:
        return float(out[0]), float(out[1])
    return float(out), 0.0


def within(spent: Loss, budget: Loss) -> bool:
    return spent[0] <= budget[0] and spent[1] <= budget[1]


def calibrate(space: Space, bp: Blueprint, stage: Stage, budget: Loss) -> Calibration:
    """Closed-form scales (and threshold) so that the stage spends at most ``budget``."""
    n_units = len(stage.units)
    probe_threshold = PROBE_THRESHOLD if stage.thresholded else None
    scales = []
    for index in range(n_units):
        probe = [PROBE_SCALE] * n_units
        probe[index] = 1.0
        at_one = loss_of(
            space, make_measurement(space, bp, stage, probe, probe_threshold)
        )[0]
        if not (math.isfinite(at_one) and at_one > 0):
            raise InternalError(_l("calibration probe returned a loss of %(loss)s", loss=at_one))
        share = at_one * n_units / budget[0]  # loss at scale 1 over the unit's share
        scales.append((math.sqrt(share) if space.zcdp else share) * HEADROOM)
    threshold = None
    if stage.thresholded:
        scales[stage.key_unit] = max(scales[stage.key_unit], MIN_KEY_SCALE)
        threshold = _threshold(space, bp, stage, scales, budget)
    return Calibration(tuple(scales), threshold)


def first_threshold(
    scale: float, delta: float, *, per_group: int, groups: int, gaussian: bool
) -> int:
    """Smallest t with P(noise(scale) > t - per_group) <= delta / groups.

    OpenDP charges 1 - (1 - tail)^groups <= groups * tail for the keys an individual can
    touch (``groups``). Discrete Laplace: tail = exp(-d / scale) / (1 + exp(-1 / scale)),
    d = t - per_group; discrete Gaussian: about the normal tail at d / scale (the caller
    then checks OpenDP's own map and raises t where needed).
    """
    target = delta / groups
    if gaussian:
        distance = scale * NormalDist().inv_cdf(1 - target) if target < 0.5 else 0.0
    else:
        distance = scale * -math.log(target * (1 + math.exp(-1 / scale)))
    return per_group + max(1, math.ceil(distance))


def _threshold(
    space: Space, bp: Blueprint, stage: Stage, scales: list[float], budget: Loss
) -> int:
    return search_threshold(
        scales[stage.key_unit], budget, bp, gaussian=space.zcdp,
        fits=lambda t: within(loss_of(space, make_measurement(space, bp, stage, scales, t)),
                              budget))


def search_threshold(scale: float, budget: Loss, bp: Blueprint, *, gaussian: bool,
                     fits: Callable[[int], bool]) -> int:
    """The first threshold for a key count at ``scale`` whose measurement ``fits`` the
    budget (every engine's map), from :func:`first_threshold` up in steps of scale / 8."""
    contributions = bp.max_contributions
    threshold = first_threshold(
        scale, budget[1], per_group=min(contributions, bp.max_rows), groups=contributions,
        gaussian=gaussian,
    )
    for _ in range(MAX_THRESHOLD_STEPS):
        if threshold >= PROBE_THRESHOLD:
            break
        if fits(threshold):
            return threshold
        threshold += max(1, math.ceil(scale / 8))
    unit = "rho" if gaussian else "epsilon"  # a parameter's name: not translated
    raise UnsupportedQuery(_l(
        "delta %(delta)s is too small to release private group keys with this %(unit)s; raise "
        "delta or %(unit)s", delta=format(budget[1], "g"), unit=unit))


def accuracy_by_alias(measurement: Any, alpha: float, *, gaussian: bool = False) -> dict[str, float | None]:
    """OpenDP's (1 - alpha) noise half-width for each noisy column of one measurement.

    Gaussian noise (zCDP) is summarised without alpha and each column's half-width taken
    from :func:`gaussian_accuracy`: OpenDP's discrete-Gaussian figure sums the distribution
    term by term, which takes seconds at the scales of wide sums.
    """
    if not gaussian:
        summary = dp.summarize_polars_measurement(measurement, alpha)
        return {str(c): None if v is None else float(v)
                for c, v in summary.select("column", "accuracy").iter_rows()}
    summary = dp.summarize_polars_measurement(measurement)
    out: dict[str, float | None] = {}
    for column, distribution, scale in summary.select("column", "distribution", "scale").iter_rows():
        integer = str(distribution) == "Integer Gaussian"
        known = "Gaussian" in str(distribution) and scale is not None
        out[str(column)] = gaussian_accuracy(float(scale), alpha, integer=integer) if known else None
    return out


def gaussian_accuracy(scale: float, alpha: float, *, integer: bool) -> float:
    """Half-width of the (1 - alpha) interval of (discrete) Gaussian noise at ``scale``.

    OpenDP's exact discrete figure up to EXACT_GAUSSIAN_SCALE; above it, OpenDP's continuous
    figure rounded up, plus 1 for the discrete support (never below the exact figure: at
    such scales the two differ by less than 1).
    """
    if not integer:
        return float(dp.gaussian_scale_to_accuracy(scale, alpha))
    if scale <= EXACT_GAUSSIAN_SCALE:
        return float(dp.discrete_gaussian_scale_to_accuracy(scale, alpha))
    return float(math.ceil(dp.gaussian_scale_to_accuracy(scale, alpha)) + 1)


def release_all(
    space: Space,
    source: pl.LazyFrame,
    measurements: Sequence[Any],
    budgets: Sequence[Loss],
    lazy: Sequence[bool],
) -> list[pl.DataFrame]:
    """Run every stage through one OpenDP Context built on the Parquet scan.

    The Context's accountant is an adaptive composition whose per-query losses are the
    stages' budgets; OpenDP itself refuses a measurement that would spend more. Each
    OnceFrame's plan is collected once, by polars' streaming engine where ``lazy`` allows;
    its row order (which OpenDP asks not to reveal) is discarded by results, which orders
    rows by key.
    """
    d_mids: list[Any] = [b if space.approximate else b[0] for b in budgets]
    accountant = dp.c.make_adaptive_composition(
        input_domain=space.domain,
        input_metric=space.metric,
        output_measure=space.measure,
        d_in=space.d_in,
        d_mids=list(d_mids),
    )
    context = dp.Context(
        accountant=accountant, queryable=accountant(source), d_in=space.d_in, d_mids=d_mids
    )
    return [_collect(context(m), streaming) for m, streaming in zip(measurements, lazy, strict=True)]


def _collect(frame: Any, streaming: bool) -> pl.DataFrame:
    if streaming:
        return frame.lazy().collect(engine="streaming")
    return frame.collect()  # quantile scoring is an opaque plugin: its plan cannot leave OpenDP

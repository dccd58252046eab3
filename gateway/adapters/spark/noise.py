"""OpenDP measurements on the aggregates Spark collected: calibration, privacy maps, noise.

Every noisy column (*alias*) of a stage is a vector with one integer cell per key: counts,
or sums in fixed point. One individual adds or removes at most ``max_contributions`` rows
(cut to that many per id when the policy has an ``id_column``), each of which moves one
cell of a count by 1 and one cell of a sum by at most the fixed point's sensitivity. So
the vector's L1 sensitivity, and its L2 sensitivity (at most L1), is
``max_contributions * per-row change``: derived from the policy alone.

- Pure DP: ``make_laplace`` on ``vector_domain(atom_domain(i64))`` with ``l1_distance``
  (discrete Laplace); zCDP: ``make_gaussian`` with ``l2_distance`` (discrete Gaussian).
- Private keys: the stage's row count goes through ``make_laplace_threshold`` (or
  ``make_gaussian_threshold``) on a map key -> count under ``l01inf_distance`` (l0 keys
  touched, l1 or l2, l-infinity: each at most ``max_contributions``); it releases the keys
  whose noisy count clears the threshold. The stage's other aliases are then noised on
  those keys only (the key set is public once released, and a sum restricted to any fixed
  key set keeps its sensitivity: adaptive composition).

Scales come from OpenDP's own maps: each unit's loss at scale 1 is read from the maps of
its measurements, the scale for its share of the loss follows in closed form (loss ~ 1 /
scale, or 1 / scale^2 under zCDP), and the stage's maps at the final scales are what the
plan checks against the charge before anything runs. OpenDP errors are translated by
:func:`gateway.adapters.dp.measure.translated`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import opendp.prelude as dp

from gateway.adapters.dp.compiler import Blueprint, Stage
from gateway.adapters.dp.measure import (
    HEADROOM,
    MIN_KEY_SCALE,
    Loss,
    gaussian_accuracy,
    search_threshold,
    within,
)
from gateway.adapters.dp.units import Unit, mean_scale_ratio
from gateway.adapters.spark.frames import point_of
from gateway.domain.errors import InternalError, UnsupportedQuery
from gateway.domain.text import _l
from gateway.policy import Policy

I64 = 2**63


@dataclass(frozen=True, eq=False)
class Noisy:
    """One alias: its noise scale, the sensitivity its map is taken at, its measurement."""

    alias: str
    scale: float
    sensitivity: int
    measurement: Any

    def loss(self) -> float:
        return float(self.measurement.map(self.sensitivity))


@dataclass(frozen=True, eq=False)
class KeyThreshold:
    """The thresholded count that releases a stage's private keys."""

    alias: str
    scale: float
    threshold: int
    d_in: tuple[int, int, int]  # keys touched, l1 (or l2), l-infinity
    measurement: Any

    def loss(self) -> Loss:
        epsilon, delta = self.measurement.map(self.d_in)
        return float(epsilon), float(delta)


@dataclass(frozen=True, eq=False)
class StageNoise:
    vectors: tuple[Noisy, ...]
    keys: KeyThreshold | None

    def loss(self) -> Loss:
        primary = sum(v.loss() for v in self.vectors)
        if self.keys is None:
            return primary, 0.0
        epsilon, delta = self.keys.loss()
        return primary + epsilon, delta

    @property
    def floored(self) -> bool:
        """The key count's noise was raised to OpenDP's minimum scale: it spends less than
        its share (only at epsilons of about 100 per key count and above)."""
        return self.keys is not None and self.keys.scale == MIN_KEY_SCALE

    def scales(self) -> dict[str, float]:
        out = {v.alias: v.scale for v in self.vectors}
        if self.keys is not None:
            out[self.keys.alias] = self.keys.scale
        return out


def vector_measurement(scale: float, *, gaussian: bool) -> Any:
    domain = dp.vector_domain(dp.atom_domain(T="i64"))
    if gaussian:
        return dp.m.make_gaussian(domain, dp.l2_distance(T="i64"), scale)
    return dp.m.make_laplace(domain, dp.l1_distance(T="i64"), scale)


def threshold_measurement(scale: float, threshold: int, *, gaussian: bool) -> Any:
    domain = dp.map_domain(dp.atom_domain(T="String"), dp.atom_domain(T="i64"))
    if gaussian:
        metric = dp.l02inf_distance(dp.absolute_distance(T="i64"))
        return dp.m.make_gaussian_threshold(domain, metric, scale, threshold)
    metric = dp.l01inf_distance(dp.absolute_distance(T="i64"))
    return dp.m.make_laplace_threshold(domain, metric, scale, threshold)


def _parts(unit: Unit, policy: Policy, bp: Blueprint, gaussian: bool) -> list[tuple[str, float, int]]:
    """(alias, scale relative to the unit's, sensitivity) of each noisy column of a unit."""
    k = bp.max_contributions
    if unit.kind in ("count", "keys", "histogram", "count_column"):
        return [(unit.aliases[0], 1.0, k)]
    if unit.kind in ("sum", "mean"):
        point = point_of(unit, policy, bp.max_rows)
        total = k * point.sensitivity
        if total >= I64:
            raise UnsupportedQuery(_l("the bounds of %(column)s are too wide to sum exactly",
                                      column=str(unit.agg.column if unit.agg else "")))
        if unit.kind == "sum":
            return [(unit.aliases[0], 1.0, total)]
        assert unit.bounds is not None
        ratio = mean_scale_ratio(*unit.bounds, gaussian=gaussian) * point.factor
        return [(unit.aliases[0], ratio, total), (unit.aliases[1], 1.0, k)]
    raise UnsupportedQuery(_l(
        "the Spark engine cannot release %(agg)s (%(name)s); it releases counts, sums, means "
        "and histograms", agg=unit.kind, name=unit.agg.name if unit.agg else unit.kind))


def calibrate(stage: Stage, bp: Blueprint, policy: Policy, budget: Loss, *,
              gaussian: bool) -> StageNoise:
    """Noise for every alias of the stage so that it spends at most ``budget``."""
    share = budget[0] / len(stage.units)
    key_alias = stage.units[stage.key_unit].aliases[0] if stage.thresholded else None
    vectors, key_scale = [], 0.0
    for unit in stage.units:
        parts = _parts(unit, policy, bp, gaussian)
        at_one = sum(float(vector_measurement(r, gaussian=gaussian).map(s)) for _, r, s in parts)
        if not (math.isfinite(at_one) and at_one > 0):
            raise InternalError(_l("calibration returned a loss of %(loss)s", loss=at_one))
        scale = (math.sqrt(at_one / share) if gaussian else at_one / share) * HEADROOM
        for alias, relative, sensitivity in parts:
            if alias == key_alias:
                key_scale = max(scale * relative, MIN_KEY_SCALE)
                continue
            measurement = vector_measurement(scale * relative, gaussian=gaussian)
            vectors.append(Noisy(alias, scale * relative, sensitivity, measurement))
    keys = None
    if key_alias is not None:
        spent = sum(v.loss() for v in vectors)
        keys = _key_threshold(key_alias, key_scale, bp, (budget[0] - spent, budget[1]),
                              gaussian=gaussian)
    return StageNoise(tuple(vectors), keys)


def _key_threshold(alias: str, scale: float, bp: Blueprint, budget: Loss, *,
                   gaussian: bool) -> KeyThreshold:
    k = bp.max_contributions

    def keys(threshold: int) -> KeyThreshold:
        return KeyThreshold(alias, scale, threshold, (k, k, k),
                            threshold_measurement(scale, threshold, gaussian=gaussian))

    return keys(search_threshold(scale, budget, bp, gaussian=gaussian,
                                 fits=lambda t: within(keys(t).loss(), budget)))


def accuracy_by_alias(noise: Sequence[StageNoise], alpha: float, *,
                      gaussian: bool) -> dict[str, float | None]:
    """OpenDP's (1 - alpha) half-width of each alias's integer noise."""
    out: dict[str, float | None] = {}
    for stage in noise:
        for alias, scale in stage.scales().items():
            out[alias] = (gaussian_accuracy(scale, alpha, integer=True) if gaussian
                          else float(dp.discrete_laplacian_scale_to_accuracy(scale, alpha)))
    return out


# -- release ---------------------------------------------------------------------------


def key_text(key: tuple[Any, ...]) -> str:
    return json.dumps(list(key), separators=(",", ":"))


def released_keys(keys: KeyThreshold, counts: dict[tuple[Any, ...], int]) -> dict[tuple[Any, ...], int]:
    """The keys whose noisy count cleared the threshold, with that noisy count."""
    texts = {key_text(key): key for key in counts}
    noisy = keys.measurement({text: _i64(counts[key]) for text, key in texts.items()})
    return {texts[text]: int(value) for text, value in noisy.items()}


def noisy_vector(noisy: Noisy, values: Sequence[int]) -> list[int]:
    if not values:
        return []
    return [int(v) for v in noisy.measurement([_i64(v) for v in values])]


def _i64(value: int) -> int:
    if not -I64 < value < I64:
        raise InternalError(_l("an aggregate is outside 64-bit integers; the data has more rows "
                               "than its policy's max_rows"))
    return value

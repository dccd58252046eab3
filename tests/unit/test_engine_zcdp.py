"""The engine under zero-concentrated DP: rho losses, Gaussian noise, thresholded keys under
approximate zCDP, accuracy and coverage, OpenDP's rho <-> (epsilon, delta) conversion, and
the error at k = 100 queries against pure accounting."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import opendp.prelude as dp
import polars as pl
import pytest

from gateway.adapters.dp import (
    Engine,
    Plan,
    epsilon_for_rho,
    rho_for_epsilon,
    rho_units_for_epsilon,
)
from gateway.adapters.dp.measure import EXACT_GAUSSIAN_SCALE, gaussian_accuracy
from gateway.adapters.dp.units import mean_scale_ratio
from gateway.domain.budget import RHO_SCALE, Budget
from gateway.domain.query import Aggregate, validate
from tests.unit.test_engine import (
    COVERAGE_BOUNDS,
    N,
    coverage,
    make_frame,
    make_policy,
    spec,
    zplan,
)
from tests.unit.test_engine_privacy import SHAPES

GRANT_EPSILON, GRANT_DELTA = 1.0, 1e-7


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return make_frame(seed=2)


def opendp_spent(plan: Plan) -> tuple[float, float]:
    """The sum of OpenDP's own privacy maps over the measurements actually run."""
    rho, delta = 0.0, 0.0
    for measurement in plan.measurements:
        out = measurement.map(plan.space.d_in)
        r, d = out if isinstance(out, tuple) else (out, 0.0)
        rho, delta = rho + r, delta + d
    return rho, delta


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("rho", [1e-5, 0.02, 0.5])
def test_the_charge_is_opendps_rho_of_what_runs(
    engine: Engine, parquet: Path, name: str, rho: float
) -> None:
    query, delta = SHAPES[name]
    loss = Budget.zcdp(rho, delta or 0)
    plan = zplan(engine, parquet, query, rho=rho, delta=delta)
    measure = "Approximate(ZeroConcentratedDivergence)" if delta else "ZeroConcentratedDivergence"
    assert all(str(m.output_measure) == measure for m in plan.measurements)
    spent_rho, spent_delta = opendp_spent(plan)
    # the ledger charges loss.rho_units; OpenDP's map of the measurements equals it
    assert spent_rho <= loss.rho_float
    assert spent_rho == pytest.approx(loss.rho_float, rel=1e-8)
    assert 0 < spent_delta <= loss.delta_float if delta else spent_delta == 0
    assert plan.spent == pytest.approx((spent_rho, spent_delta))
    release = plan.release()
    assert release.columns == query.output_columns


def test_noise_is_gaussian_and_accuracy_is_opendps(engine: Engine, parquet: Path) -> None:
    query = spec(Aggregate("count"), Aggregate("sum", "dist"), group_by=("region",))
    plan = zplan(engine, parquet, query, rho=0.01)
    summary = dp.summarize_polars_measurement(plan.measurements[0], alpha=0.05)
    assert set(summary["distribution"]) == {"Integer Gaussian"}
    accuracy = plan.accuracy(0.05)
    count_row = summary.filter(pl.col("column") == "__a0")
    assert accuracy["count"] == count_row["accuracy"].item()  # OpenDP's exact discrete figure
    sum_scale = summary.filter(pl.col("column") == "__a1")["scale"].item()
    assert sum_scale > EXACT_GAUSSIAN_SCALE  # so the closed form is used, and it is safe:
    assert accuracy["sum_dist"] == gaussian_accuracy(sum_scale, 0.05, integer=True)
    assert accuracy["sum_dist"] >= dp.gaussian_scale_to_accuracy(sum_scale, 0.05)


@pytest.mark.parametrize("scale", [0.5, 3.7, 100.0, 4321.0, EXACT_GAUSSIAN_SCALE])
def test_gaussian_accuracy_matches_opendp_where_it_is_computed(scale: float) -> None:
    exact = dp.discrete_gaussian_scale_to_accuracy(scale, 0.05)
    assert gaussian_accuracy(scale, 0.05, integer=True) == exact
    closed_form = math.ceil(dp.gaussian_scale_to_accuracy(scale, 0.05)) + 1
    if scale > 50:  # above small scales the closed form is never below OpenDP's exact figure
        assert exact <= closed_form <= exact + 1


def test_thresholded_keys_under_zcdp_spend_delta(engine: Engine, parquet: Path) -> None:
    """ZZ's 3 rows lie 2 scales nearer the threshold than the 1 row it is set for; Gaussian
    tails make that count: at delta 1e-7 ZZ clears it in 2e-6 of runs, at 1e-10 in ~1e-9."""
    query = spec(Aggregate("count"), group_by=("carrier",))
    plan = zplan(engine, parquet, query, rho=0.05, delta=1e-10)
    summary = dp.summarize_polars_measurement(plan.measurements[0])
    threshold = summary["threshold"].drop_nulls().item()
    released = {row[0]: row[1] for row in plan.release().rows}
    assert {"AA", "BB", "CC"} <= set(released) and "ZZ" not in released  # 3 rows: below it
    assert all(count >= threshold for count in released.values())
    assert 0 < opendp_spent(plan)[1] <= 1e-10
    with pytest.raises(Exception, match="delta"):
        zplan(engine, parquet, query, rho=0.05, delta=0)


def test_wide_sums_cover_about_95_percent_with_the_closed_form(
    engine: Engine, parquet: Path, frame: pl.DataFrame
) -> None:
    query = spec(Aggregate("sum", "dist"))
    truth = frame["dist"].sum()
    half_width = zplan(engine, parquet, query, rho=0.002).accuracy(0.05)["sum_dist"]
    assert half_width is not None and half_width > EXACT_GAUSSIAN_SCALE
    share = coverage(lambda: zplan(engine, parquet, query, rho=0.002), "sum_dist", truth)
    low, high = COVERAGE_BOUNDS  # true coverage here: 95.0%
    assert low <= share <= high, share


def test_mean_split_is_chosen_for_gaussian_noise() -> None:
    lo, hi = -60.0, 600.0
    sensitivity, typical = 600.0, 270.0
    assert mean_scale_ratio(lo, hi, gaussian=True) == pytest.approx(math.sqrt(sensitivity * typical))
    assert mean_scale_ratio(lo, hi) == pytest.approx((sensitivity * typical**2) ** (1 / 3))


# -- OpenDP's conversion ----------------------------------------------------------------------


@pytest.mark.parametrize("rho", [1e-4, 0.0201, 0.5, 3.0])
@pytest.mark.parametrize("delta", [1e-9, 1e-7, 1e-5])
def test_epsilon_for_rho_is_opendps_conversion(rho: float, delta: float) -> None:
    # a real Gaussian mechanism whose map is rho at sensitivity 1, converted by OpenDP
    gaussian = dp.m.make_gaussian(dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float),
                                  1 / math.sqrt(2 * rho))
    converted = dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(gaussian), delta)
    rho_mapped = gaussian.map(1.0)
    assert epsilon_for_rho(rho_mapped, delta) == converted.map(1.0)[0]
    textbook = rho + 2 * math.sqrt(rho * math.log(1 / delta))  # Bun & Steinke's bound
    assert textbook / 2 < epsilon_for_rho(rho, delta) <= textbook  # OpenDP's is tighter


def test_keys_delta_is_composed_by_opendp() -> None:
    # (rho, keys_delta) approximate zCDP at total delta keys_delta + delta: the same epsilon
    assert epsilon_for_rho(0.02, 1e-7, 1e-5) == pytest.approx(epsilon_for_rho(0.02, 1e-7), rel=1e-12)


def test_rho_for_epsilon_is_the_largest_rho_within_epsilon() -> None:
    rho = rho_for_epsilon(GRANT_EPSILON, GRANT_DELTA)
    assert epsilon_for_rho(rho, GRANT_DELTA) <= GRANT_EPSILON
    assert epsilon_for_rho(rho * (1 + 1e-6), GRANT_DELTA) > GRANT_EPSILON
    units = rho_units_for_epsilon(GRANT_EPSILON, GRANT_DELTA)
    assert epsilon_for_rho(units / RHO_SCALE, GRANT_DELTA) <= GRANT_EPSILON
    assert epsilon_for_rho((units + 2) / RHO_SCALE, GRANT_DELTA) > GRANT_EPSILON - 1e-9
    assert 0.018 < units / RHO_SCALE < 0.022  # ~0.0202: the figures


# -- k = 100 queries on one grant: zCDP beats pure, by a margin from the theory --------------


def test_at_k_100_zcdp_error_is_lower_than_pure_by_the_theorys_margin(
    engine: Engine, parquet: Path
) -> None:
    """A grant of (epsilon 1, delta 1e-7) spent over k = 100 equal count queries.

    Pure: each query gets epsilon 1/k, discrete Laplace noise of scale b = k, so the mean
    absolute error is about b (sd b / sqrt(n) over n releases). zCDP: each query gets
    rho / k with rho = OpenDP's conversion of the grant, Gaussian noise of
    sigma = sqrt(k / (2 rho)), mean absolute error sigma sqrt(2 / pi) (sd sigma
    sqrt(1 - 2 / pi) / sqrt(n)). The measured gap must exceed the predicted gap less six
    standard deviations of the measured difference (and that margin is itself positive):
    six, so that a false alarm takes a 6-sigma deviation (below ~1e-9; at four it was
    ~3e-5). The medians differ by about 6 of their standard deviations (~3e-11).
    """
    k, n = 100, 300
    policy = make_policy(budget={"default_epsilon": 1.0, "max_epsilon_per_grant": 5.0,
                                 "dataset_epsilon_cap": 100.0, "delta": GRANT_DELTA})
    rho = rho_units_for_epsilon(GRANT_EPSILON, GRANT_DELTA) / RHO_SCALE
    query = spec(Aggregate("count"))
    validate(query, policy)
    pure_loss, zcdp_loss = Budget.of(GRANT_EPSILON / k), Budget.zcdp(rho / k)
    pure_errors, zcdp_errors = [], []
    for _ in range(n):
        for loss, errors in ((pure_loss, pure_errors), (zcdp_loss, zcdp_errors)):
            plan = engine.plan(query, policy, parquet=parquet, version="v1", loss=loss)
            errors.append(abs(plan.release().rows[0][0] - N))  # type: ignore[operator]
    b, sigma = k / GRANT_EPSILON, math.sqrt(k / (2 * rho))
    predicted_gap = b - sigma * math.sqrt(2 / math.pi)
    sd_gap = math.sqrt(b**2 + sigma**2 * (1 - 2 / math.pi)) / math.sqrt(n)
    margin = predicted_gap - 6 * sd_gap
    assert margin > 0
    measured_gap = statistics.fmean(pure_errors) - statistics.fmean(zcdp_errors)
    assert measured_gap > margin
    assert statistics.median(zcdp_errors) < statistics.median(pure_errors)

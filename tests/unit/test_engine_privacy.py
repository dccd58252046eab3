"""The OpenDP engine's privacy accounting, noise and accuracy, its cache and its threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import opendp.prelude as dp
import polars as pl
import pytest

from gateway.adapters.dp import Engine, Plan
from gateway.adapters.dp import engine as engine_module
from gateway.domain.budget import Budget
from gateway.domain.errors import InternalError, InvalidRequest
from gateway.domain.query import Aggregate, Filter
from tests.unit.test_engine import (
    COVERAGE_BOUNDS,
    N,
    coverage,
    make_frame,
    make_policy,
    plan_of,
    spec,
    zplan,
)


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return make_frame(seed=1)


@pytest.fixture
def engine() -> Engine:
    return Engine()


SHAPES = {
    "count": (spec(Aggregate("count")), None),
    "everything": (
        spec(
            Aggregate("count"),
            Aggregate("count", "delay"),
            Aggregate("sum", "dist"),
            Aggregate("sum", "delay"),
            Aggregate("mean", "ratio"),
            Aggregate("quantile", "month", q=0.25),
            Aggregate("histogram", "dist", bins=(0, 100, 1000, 5000)),
            where=(Filter("month", "between", [2, 11]),),
        ),
        None,
    ),
    "public keys": (
        spec(Aggregate("count"), Aggregate("mean", "delay"), group_by=("region", "flag")),
        None,
    ),
    "private keys": (
        spec(
            Aggregate("mean", "delay"),
            Aggregate("histogram", "month", bins=(1, 4, 13)),
            group_by=("carrier",),
        ),
        1e-7,
    ),
}


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("epsilon", [0.01, 0.7, 3.0])
def test_privacy_maps_stay_within_the_loss(
    engine: Engine, parquet: Path, name: str, epsilon: float
) -> None:
    query, delta = SHAPES[name]
    plan = plan_of(engine, parquet, query, epsilon=epsilon, delta=delta)
    spent_eps, spent_delta = 0.0, 0.0
    for measurement in plan.measurements:  # OpenDP's own maps, not the engine's bookkeeping
        out = measurement.map(plan.space.d_in)
        eps, dlt = out if isinstance(out, tuple) else (out, 0.0)
        spent_eps, spent_delta = spent_eps + eps, spent_delta + dlt
    assert spent_eps <= epsilon
    assert spent_eps > epsilon * 0.999  # and it spends what was asked, not far less
    assert spent_delta <= (delta or 0.0)
    assert plan.spent == pytest.approx((spent_eps, spent_delta))


def test_accuracy_is_what_opendp_summarize_reports(engine: Engine, parquet: Path) -> None:
    query = spec(
        Aggregate("count"),
        Aggregate("sum", "dist"),
        Aggregate("histogram", "dist", bins=(0, 2500, 5000)),
        group_by=("region",),
    )
    plan = plan_of(engine, parquet, query, epsilon=0.5)
    for alpha in (0.05, 0.1):
        accuracy = plan.accuracy(alpha)
        main, histogram = (
            dp.summarize_polars_measurement(m, alpha=alpha) for m in plan.measurements
        )
        assert accuracy["count"] == main.filter(pl.col("column") == "__a0")["accuracy"].item()
        assert accuracy["sum_dist"] == main.filter(pl.col("column") == "__a1")["accuracy"].item()
        bins = histogram["accuracy"].item()
        assert accuracy["histogram_dist [0, 2500)"] == accuracy["histogram_dist [2500, 5000)"] == bins
    assert plan.release().accuracy == plan.accuracy(0.05)


def test_noise_is_real(engine: Engine, parquet: Path) -> None:
    # discrete Laplace of scale 10: 10 equal releases in ~2e-13 of runs (6: 5e-8)
    plans = [plan_of(engine, parquet, spec(Aggregate("count")), epsilon=0.1) for _ in range(10)]
    assert len({plan.release().rows[0][0] for plan in plans}) > 1


@pytest.mark.parametrize(("planner", "loss"), [(plan_of, {"epsilon": 0.3}), (zplan, {"rho": 0.002})],
                         ids=["pure", "zcdp"])
def test_reported_accuracy_covers_about_95_percent_of_errors(
    engine: Engine, parquet: Path, planner: Callable[..., Plan], loss: dict[str, float]
) -> None:
    query = spec(Aggregate("count"))
    share = coverage(lambda: planner(engine, parquet, query, **loss), "count", N)
    low, high = COVERAGE_BOUNDS  # true coverage here: 95.8% (pure), 96.0% (zcdp)
    assert low <= share <= high, share


def test_scales_are_cached_per_version_shape_and_loss(
    engine: Engine, parquet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []
    real = engine_module.calibrate

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_module, "calibrate", counting)
    query = spec(Aggregate("count"), where=(Filter("month", ">", 3),))
    same_shape = spec(Aggregate("count"), where=(Filter("month", ">", 9),))
    plan_of(engine, parquet, query, epsilon=1.0)
    plan_of(engine, parquet, same_shape, epsilon=1.0)
    assert len(calls) == 1
    plan_of(engine, parquet, query, epsilon=2.0)
    assert len(calls) == 2


def test_cache_is_bounded(parquet: Path) -> None:
    engine = Engine(plan_cache_size=2)
    for epsilon in (0.1, 0.2, 0.3, 0.4):
        plan_of(engine, parquet, spec(Aggregate("count")), epsilon=epsilon)
    assert len(engine._cache) == 2


def test_a_plan_releases_once(engine: Engine, parquet: Path) -> None:
    plan = plan_of(engine, parquet, spec(Aggregate("count")), epsilon=1.0)
    plan.release()
    with pytest.raises(InternalError, match="at most once"):
        plan.release()


def test_a_bad_alpha_is_refused_without_using_up_the_release(engine: Engine, parquet: Path) -> None:
    plan = plan_of(engine, parquet, spec(Aggregate("count")), epsilon=1.0)
    with pytest.raises(InvalidRequest, match="alpha"):
        plan.release(alpha=1.5)
    assert plan.release().rows  # the one release is still there


def test_release_failure_is_an_internal_error(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "flights.parquet"
    make_frame().write_parquet(path)
    plan = plan_of(engine, path, spec(Aggregate("count")), epsilon=1.0)
    path.unlink()
    with pytest.raises(InternalError) as exc:
        plan.release()
    assert "backtrace" not in str(exc.value).lower()


def test_id_column_caps_each_individual(engine: Engine, parquet: Path, frame: pl.DataFrame) -> None:
    policy = make_policy(privacy_unit={"id_column": "person", "max_contributions": 2})
    plan = plan_of(engine, parquet, spec(Aggregate("count")), policy=policy)
    (count,) = plan.release().rows[0]
    people = frame.group_by("person").len()
    assert count == people.select(pl.col("len").clip(upper_bound=2)).sum().item()
    loose = plan_of(engine, parquet, spec(Aggregate("count")), epsilon=1.0, policy=policy)
    tight = plan_of(engine, parquet, spec(Aggregate("count")), epsilon=1.0)
    assert loose.accuracy()["count"] > tight.accuracy()["count"]  # 2 rows per person


def test_plans_and_releases_from_many_threads(parquet: Path) -> None:
    engine = Engine()
    query = spec(Aggregate("count"), Aggregate("mean", "ratio"), group_by=("region",))
    policy = make_policy()
    results: list[Any] = []

    def work() -> None:
        for _ in range(5):
            plan = engine.plan(query, policy, parquet=parquet, version="v1", loss=Budget.of(1.0))
            results.append(plan.release())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 20
    assert all(len(r.rows) == 4 for r in results)


@pytest.mark.parametrize("name", list(SHAPES))
def test_id_column_unit_works_for_every_shape(engine: Engine, parquet: Path, name: str) -> None:
    policy = make_policy(privacy_unit={"id_column": "person", "max_contributions": 3})
    query, delta = SHAPES[name]
    plan = plan_of(engine, parquet, query, epsilon=1.0, delta=delta, policy=policy)
    assert plan.spent[0] <= 1.0 and plan.spent[1] <= (delta or 0.0)
    release = plan.release()
    assert release.columns == query.output_columns

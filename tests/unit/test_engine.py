"""The OpenDP engine (gateway/adapters/dp.py): what it releases, and what it refuses.

Values are checked against the truth computed with polars on the same file, at an epsilon
so large that the noise is negligible; privacy accounting, noise and accuracy are in
test_engine_privacy.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from gateway.adapters.dp import Engine, Plan, Release
from gateway.adapters.dp.compiler import MAX_KEY_CELLS
from gateway.domain.budget import Budget
from gateway.domain.errors import InternalError, InvalidRequest, UnsupportedQuery
from gateway.domain.query import Aggregate, Filter, QuerySpec, resolve_loss, validate
from gateway.domain.text import use_locale
from gateway.policy import Policy
from tests.unit.support import BUDGET, policy_of

N = 2000
HUGE_EPSILON = 1e5  # noise scale ~1e-5 of a count: values are (almost) exact
# Tests that a small key (ZZ: 3 rows) is never released use this delta: the threshold rises
# with log(1 / delta), so ZZ clears it in about 2e-9 of runs at epsilon 1 (at delta 1e-6:
# 2e-6, since 3 rows lie 2 scales closer to it than the 1 row it is set for).
KEYS_DELTA = 1e-9
REGIONS = ["north", "south", "east", "west"]  # "west" never occurs in the data


def make_frame(seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    carrier = ["AA"] * 900 + ["BB"] * 700 + ["CC"] * 397 + ["ZZ"] * 3
    delay = rng.normal(10, 30, N)
    delay[rng.random(N) < 0.1] = np.nan  # stored NaN: treated as missing
    return pl.DataFrame(
        {
            "region": rng.choice(REGIONS[:3], N),
            "carrier": rng.permutation(carrier),
            "month": rng.integers(1, 13, N),
            "delay": pl.Series(delay).set(pl.Series(rng.random(N) < 0.1), None),
            "dist": rng.integers(0, 5001, N),
            "ratio": rng.random(N) * 100,
            "flag": rng.random(N) < 0.3,
            "person": rng.integers(0, 400, N),
            "secret": rng.integers(0, 10, N),
        }
    )


FLIGHTS_COLUMNS: dict[str, Any] = {
    "region": {"type": "str", "categories": REGIONS},
    "carrier": {"type": "str"},
    "month": {"type": "int", "bounds": [1, 12]},
    "delay": {"type": "float", "bounds": [-60, 600], "nullable": True},
    "dist": {"type": "int", "bounds": [0, 5000]},
    "ratio": {"type": "float", "bounds": [0, 100]},
    "flag": {"type": "bool"},
    "person": {"type": "int"},
    "secret": {"type": "int", "bounds": [0, 9], "hidden": True},
}


def make_policy(**overrides: Any) -> Policy:
    budget = BUDGET | {"max_epsilon_per_grant": 5.0, "delta": 1e-6}
    return policy_of("flights", FLIGHTS_COLUMNS, **{"budget": budget, **overrides})


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return make_frame()


def spec(*select: Aggregate, **kwargs: Any) -> QuerySpec:
    return QuerySpec(dataset="flights", select=tuple(select), **kwargs)


def plan_of(
    engine: Engine,
    parquet: Path,
    query: QuerySpec,
    *,
    epsilon: float = HUGE_EPSILON,
    delta: float | None = None,
    policy: Policy | None = None,
) -> Plan:
    policy = policy or make_policy()
    validate(query, policy)
    loss = resolve_loss(query, policy, epsilon=epsilon, delta=delta)
    return engine.plan(query, policy, parquet=parquet, version="v1", loss=loss)


def zplan(
    engine: Engine, parquet: Path, query: QuerySpec, *, rho: float, delta: float | None = None,
    policy: Policy | None = None,
) -> Plan:
    """A plan under zCDP: its loss in rho (and delta for private keys)."""
    policy = policy or make_policy()
    validate(query, policy)
    return engine.plan(query, policy, parquet=parquet, version="v1",
                       loss=Budget.zcdp(rho, delta or 0))


# Coverage checks draw COVERAGE_RELEASES releases; the share whose error lies within the
# reported 95% half-width is then within COVERAGE_BOUNDS but with probability below ~5e-9
# for any true coverage from 95% to 96.5% (binomial tails; integer noise covers a little
# more than 95%), while a half-width at alpha 0.1 (90%) fails in all but ~1e-3 of runs.
COVERAGE_RELEASES = 2000
COVERAGE_BOUNDS = (0.92, 0.985)


def coverage(plan: Callable[[], Plan], key: str, truth: float, *,
             releases: int = COVERAGE_RELEASES) -> float:
    """The share of ``releases`` fresh releases whose reported accuracy (the 95% half-width
    of ``key``) holds the true value of the first cell."""
    within = 0
    for _ in range(releases):
        release = plan().release()
        half_width = release.accuracy[key]
        assert half_width is not None
        within += abs(release.rows[0][0] - truth) <= half_width  # type: ignore[operator]
    return within / releases


def run(engine: Engine, parquet: Path, query: QuerySpec, **kwargs: Any) -> Release:
    return plan_of(engine, parquet, query, **kwargs).release()


def by_key(release: Release) -> dict[Any, list[object]]:
    return {row[0]: row[1:] for row in release.rows}


# -- aggregates -----------------------------------------------------------------------


def test_count_rows_and_non_null_values(engine: Engine, parquet: Path, frame: pl.DataFrame) -> None:
    release = run(engine, parquet, spec(Aggregate("count"), Aggregate("count", "delay")))
    assert release.columns == ["count", "count_delay"]
    non_null = frame.filter(pl.col("delay").is_not_null() & pl.col("delay").is_not_nan()).height
    assert release.rows == [[N, non_null]]
    assert all(isinstance(v, int) for v in release.rows[0])
    assert run(engine, parquet, spec(Aggregate("count"))).rows == [[N]]  # reads a column anyway


def test_sum_of_int_column_is_an_exact_integer(
    engine: Engine, parquet: Path, frame: pl.DataFrame
) -> None:
    release = run(engine, parquet, spec(Aggregate("sum", "dist")))
    (value,) = release.rows[0]
    assert isinstance(value, int)
    assert abs(value - frame["dist"].sum()) <= 1


def test_sum_of_float_column_ignores_nulls_and_nan(
    engine: Engine, parquet: Path, frame: pl.DataFrame
) -> None:
    release = run(engine, parquet, spec(Aggregate("sum", "delay"), Aggregate("sum", "ratio")))
    delay, ratio = release.rows[0]
    truth = frame["delay"].fill_nan(None).clip(-60, 600).sum()
    assert isinstance(delay, float) and isinstance(ratio, float)
    assert delay == pytest.approx(truth, abs=1.0)
    assert ratio == pytest.approx(frame["ratio"].sum(), abs=1.0)


def test_float_sum_carries_no_more_noise_than_an_int_sum(engine: Engine, parquet: Path) -> None:
    """Fixed-point summation: no float rounding slack on top of the sensitivity."""
    policy = make_policy(max_rows=20_000_000)
    query = spec(Aggregate("sum", "dist"), Aggregate("sum", "ratio"))
    accuracy = plan_of(engine, parquet, query, epsilon=1.0, policy=policy).accuracy()
    # same epsilon share; ratio's bound is 100, dist's 5000
    assert accuracy["sum_ratio"] == pytest.approx(accuracy["sum_dist"] / 50, rel=0.01)


def test_mean_ignores_nulls(engine: Engine, parquet: Path, frame: pl.DataFrame) -> None:
    release = run(engine, parquet, spec(Aggregate("mean", "delay"), Aggregate("mean", "month")))
    delay, month = release.rows[0]
    assert delay == pytest.approx(frame["delay"].fill_nan(None).clip(-60, 600).mean(), abs=0.01)
    assert month == pytest.approx(frame["month"].mean(), abs=0.01)
    assert release.accuracy["mean_delay"] is not None


def test_quantile_is_a_candidate_near_the_truth(
    engine: Engine, parquet: Path, frame: pl.DataFrame
) -> None:
    query = spec(Aggregate("quantile", "month", q=0.5), Aggregate("quantile", "ratio", q=0.9))
    release = run(engine, parquet, query)
    month, ratio = release.rows[0]
    assert isinstance(month, int) and abs(month - frame["month"].median()) <= 1  # type: ignore[operator]
    assert ratio == pytest.approx(frame["ratio"].quantile(0.9), abs=1.5)
    assert release.accuracy == {"quantile_month_0.5": None, "quantile_ratio_0.9": None}


def test_histogram_counts_values_in_half_open_bins(
    engine: Engine, parquet: Path, frame: pl.DataFrame
) -> None:
    bins = (0, 1000, 2500, 5000)
    release = run(engine, parquet, spec(Aggregate("histogram", "dist", bins=bins)))
    assert release.columns == [
        "histogram_dist [0, 1000)",
        "histogram_dist [1000, 2500)",
        "histogram_dist [2500, 5000)",
    ]
    dist = frame["dist"]
    truth = [int(((dist >= lo) & (dist < hi)).sum()) for lo, hi in zip(bins, bins[1:], strict=False)]
    assert release.rows == [truth]  # 5000 itself is outside [2500, 5000)
    assert set(release.accuracy) == set(release.columns)


def test_histogram_with_other_aggregates_and_public_groups(
    engine: Engine, parquet: Path, frame: pl.DataFrame
) -> None:
    query = spec(
        Aggregate("count"),
        Aggregate("histogram", "delay", bins=(-100, 0, 100)),
        group_by=("region",),
    )
    release = run(engine, parquet, query)
    assert release.columns == ["region", "count", "histogram_delay [-100, 0)", "histogram_delay [0, 100)"]
    rows = by_key(release)
    assert list(rows) == REGIONS
    north = frame.filter(pl.col("region") == "north")["delay"]
    assert rows["north"][1] == int(((north >= -100) & (north < 0)).sum())
    assert rows["west"] == [0, 0, 0]


def test_values_follow_the_spec_order_across_stages(
    engine: Engine, parquet: Path, frame: pl.DataFrame
) -> None:
    query = spec(
        Aggregate("histogram", "month", bins=(1, 7, 13)),
        Aggregate("count", "delay"),
        Aggregate("histogram", "dist", bins=(0, 5001), alias="all_dist"),
        Aggregate("sum", "month"),
    )
    release = run(engine, parquet, query)
    assert release.columns == query.output_columns
    non_null = frame.filter(pl.col("delay").is_not_null() & pl.col("delay").is_not_nan()).height
    early = int((frame["month"] < 7).sum())
    assert release.rows == [[early, N - early, non_null, N, frame["month"].sum()]]


# -- filters ------------------------------------------------------------------------------

FILTERS = [
    (Filter("month", "=", 3), pl.col("month") == 3),
    (Filter("month", "!=", 3), pl.col("month") != 3),
    (Filter("month", "<", 4), pl.col("month") < 4),
    (Filter("month", "<=", 4), pl.col("month") <= 4),
    (Filter("month", ">", 9), pl.col("month") > 9),
    (Filter("month", ">=", 9), pl.col("month") >= 9),
    (Filter("month", "<", 4.5), pl.col("month") < 4.5),
    (Filter("month", "between", [3, 5]), pl.col("month").is_between(3, 5)),
    (Filter("region", "in", ["north", "east"]), pl.col("region").is_in(["north", "east"])),
    (Filter("carrier", "=", "ZZ"), pl.col("carrier") == "ZZ"),
    (Filter("flag", "=", True), pl.col("flag")),
    (Filter("delay", ">", 20.5), pl.col("delay").fill_nan(None) > 20.5),
]


@pytest.mark.parametrize(("flt", "truth"), FILTERS, ids=[f"{f.column}{f.op}" for f, _ in FILTERS])
def test_filter(
    engine: Engine, parquet: Path, frame: pl.DataFrame, flt: Filter, truth: pl.Expr
) -> None:
    release = run(engine, parquet, spec(Aggregate("count"), where=(flt,)))
    assert release.rows == [[frame.filter(truth).height]]


def test_filters_are_anded(engine: Engine, parquet: Path, frame: pl.DataFrame) -> None:
    where = (Filter("month", ">=", 6), Filter("region", "=", "south"))
    release = run(engine, parquet, spec(Aggregate("sum", "dist"), where=where))
    truth = frame.filter((pl.col("month") >= 6) & (pl.col("region") == "south"))["dist"].sum()
    assert abs(release.rows[0][0] - truth) <= 1  # type: ignore[operator]


# -- group by -----------------------------------------------------------------------------


def test_public_keys_release_every_key_even_absent_ones(
    engine: Engine, parquet: Path, frame: pl.DataFrame
) -> None:
    query = spec(Aggregate("count"), Aggregate("mean", "ratio"), group_by=("region",))
    plan = plan_of(engine, parquet, query, epsilon=1.0)
    assert plan.spent[1] == 0.0  # no delta for public keys
    release = plan.release()
    assert [row[0] for row in release.rows] == REGIONS
    counts = frame.group_by("region").len()
    for region, size in counts.iter_rows():
        assert abs(by_key(release)[region][0] - size) < 60  # type: ignore[operator]


def test_public_keys_with_filter_and_two_columns(engine: Engine, parquet: Path) -> None:
    query = spec(Aggregate("count"), group_by=("flag", "month"), where=(Filter("month", "<=", 2),))
    release = run(engine, parquet, query)
    keys = [tuple(row[:2]) for row in release.rows]
    assert keys == [(flag, month) for flag in (False, True) for month in range(1, 13)]
    assert all(row[2] == 0 for row in release.rows if row[1] > 2)  # type: ignore[operator]


def test_private_keys_are_released_above_a_threshold(
    engine: Engine, parquet: Path, frame: pl.DataFrame
) -> None:
    query = spec(Aggregate("count"), Aggregate("sum", "ratio"), group_by=("carrier",))
    plan = plan_of(engine, parquet, query, epsilon=1.0, delta=KEYS_DELTA)
    assert 0 < plan.spent[1] <= KEYS_DELTA
    rows = by_key(plan.release())
    assert set(rows) == {"AA", "BB", "CC"}  # "ZZ" has 3 rows, far below the threshold
    assert abs(rows["AA"][0] - 900) < 50  # type: ignore[operator]  # scale 2: ~1e-11


def test_private_keys_without_a_count_spend_a_hidden_one(engine: Engine, parquet: Path) -> None:
    query = spec(Aggregate("mean", "ratio"), group_by=("carrier",))
    release = run(engine, parquet, query, epsilon=1.0, delta=KEYS_DELTA)
    assert release.columns == ["carrier", "mean_ratio"]
    assert {row[0] for row in release.rows} == {"AA", "BB", "CC"}


def test_private_keys_histogram(engine: Engine, parquet: Path, frame: pl.DataFrame) -> None:
    query = spec(Aggregate("histogram", "month", bins=(1, 7, 13)), group_by=("carrier",))
    rows = by_key(run(engine, parquet, query, delta=1e-6))
    aa = frame.filter(pl.col("carrier") == "AA")["month"]
    assert rows["AA"] == [int((aa < 7).sum()), int((aa >= 7).sum())]
    rows = by_key(run(engine, parquet, query, epsilon=1.0, delta=KEYS_DELTA))
    assert set(rows) == {"AA", "BB", "CC"}  # ZZ's 3 rows never clear the threshold


# -- refusals -----------------------------------------------------------------------------


def _message(exc: pytest.ExceptionInfo[Exception]) -> str:
    text = str(exc.value)
    assert "backtrace" not in text.lower() and "Traceback" not in text
    return text


def test_private_keys_need_delta(engine: Engine, parquet: Path) -> None:
    query = spec(Aggregate("count"), group_by=("carrier",))
    with pytest.raises(InvalidRequest) as exc:
        engine.plan(query, make_policy(), parquet=parquet, version="v1", loss=Budget.of(1.0))
    assert "delta" in _message(exc)
    # shown in the reader's language, the English kept for the record
    assert exc.value.message.startswith("group_by carrier has no public keys")
    with use_locale("zh_CN"):
        assert exc.value.localized().startswith("group_by carrier 没有公开的键")


@pytest.mark.parametrize(
    ("agg", "needle"),
    [
        (Aggregate("sum", "carrier"), "numeric"),
        (Aggregate("mean", "person"), "no bounds"),
        (Aggregate("histogram", "flag", bins=(0, 1)), "numeric"),
    ],
)
def test_refuses_aggregates_it_cannot_release(
    engine: Engine, parquet: Path, agg: Aggregate, needle: str
) -> None:
    policy = make_policy()
    loss = resolve_loss(spec(agg), policy, epsilon=1.0, delta=None)
    with pytest.raises(UnsupportedQuery) as exc:
        engine.plan(spec(agg), policy, parquet=parquet, version="v1", loss=loss)
    assert needle in _message(exc)


def test_hidden_columns_answer_like_missing_ones(engine: Engine, parquet: Path) -> None:
    policy = make_policy()
    for query in (spec(Aggregate("sum", "secret")), spec(Aggregate("count"), group_by=("secret",))):
        with pytest.raises(InvalidRequest) as exc:
            engine.plan(query, policy, parquet=parquet, version="v1", loss=Budget.of(1.0))
        assert "no queryable column secret" in _message(exc)


def test_refuses_too_many_public_key_cells(engine: Engine, parquet: Path) -> None:
    policy = make_policy(
        columns={
            **make_policy().model_dump()["columns"],
            "a": {"type": "int", "bounds": [0, 999]},
            "b": {"type": "int", "bounds": [0, 999]},
        }
    )
    query = spec(Aggregate("count"), group_by=("a", "b"))
    with pytest.raises(UnsupportedQuery) as exc:
        engine.plan(query, policy, parquet=parquet, version="v1", loss=Budget.of(1.0))
    assert "1000000 public key combinations" in _message(exc)
    with use_locale("zh_CN"):
        assert exc.value.localized() == ("group_by a, b 有 1000000 个公开键组合；一次最多只能发布 "
                                         f"{MAX_KEY_CELLS} 个")


def test_data_not_matching_its_policy_is_an_internal_error(
    engine: Engine, parquet: Path
) -> None:
    policy = make_policy(
        columns={**make_policy().model_dump()["columns"], "carrier": {"type": "int", "bounds": [0, 1]}}
    )
    with pytest.raises(InternalError) as exc:
        plan_of(engine, parquet, spec(Aggregate("sum", "carrier")), policy=policy)
    assert "carrier is stored as String" in _message(exc)

"""DP models (gateway/adapters/dp/models.py): OpenDP's Theil-Sen regression and PCA.

The regression's tolerance comes from repeated runs: the slope of each of many fits at
epsilon 10 is recorded, and the truth must lie within the spread those runs show (plus
the resolution of OpenDP's candidate grid), and their mean within a few standard errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from gateway.adapters.dp.models import CANDIDATES, plan_pca, plan_regression
from gateway.domain.budget import Budget
from gateway.domain.errors import InternalError, InvalidRequest, UnsupportedQuery
from gateway.policy import Policy
from tests.unit.support import policy_of

N = 2000
SLOPE, INTERCEPT = 2.0, 1.0


LINE_COLUMNS: dict[str, Any] = {
    "x": {"type": "float", "bounds": [0, 10], "nullable": True},
    "y": {"type": "float", "bounds": [0, 25]},
    "z": {"type": "int", "bounds": [0, 100]},
    "label": {"type": "str", "categories": ["p", "q"]},
    "loose": {"type": "float"},
    "secret": {"type": "float", "bounds": [0, 1], "hidden": True},
}


def make_policy(**overrides: Any) -> Policy:
    return policy_of("line", LINE_COLUMNS, **overrides)


@pytest.fixture(scope="module")
def parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 10, N)
    y = SLOPE * x + INTERCEPT + rng.normal(0, 0.5, N)
    z = np.clip(x * 8 + rng.normal(0, 3, N), 0, 100).astype(int)
    x_stored = pl.Series(x).set(pl.Series(rng.random(N) < 0.05), None)  # nulls are dropped
    frame = pl.DataFrame(
        {
            "x": x_stored,
            "y": y,
            "z": z,
            "label": rng.choice(["p", "q"], N),
            "loose": rng.random(N),
            "secret": rng.random(N),
        }
    )
    path = tmp_path_factory.mktemp("models") / "line.parquet"
    frame.write_parquet(path)
    return path


def regression(parquet: Path, epsilon: float, **kwargs: Any) -> Any:
    args: dict[str, Any] = {"x": ["x"], "y": "y"} | kwargs
    return plan_regression(make_policy(), parquet=parquet, loss=Budget.of(epsilon), **args)


def pca(parquet: Path, epsilon: float, **kwargs: Any) -> Any:
    args: dict[str, Any] = {"columns": ["x", "y", "z"], "components": 2} | kwargs
    return plan_pca(make_policy(), parquet=parquet, loss=Budget.of(epsilon), **args)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"x": ["x", "z"]}, UnsupportedQuery, "one x column"),
        ({"x": ["label"]}, UnsupportedQuery, "numeric columns; label is str"),
        ({"x": ["loose"]}, UnsupportedQuery, "no bounds"),
        ({"x": ["secret"]}, InvalidRequest, "no queryable column secret"),
        ({"y": "nope"}, InvalidRequest, "no queryable column nope"),
        ({"y": "x"}, InvalidRequest, "different columns"),
    ],
)
def test_regression_refusals(tmp_path: Path, kwargs: dict[str, Any], error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        regression(tmp_path / "absent.parquet", 1.0, **kwargs)


def test_models_refuse_a_delta(parquet: Path) -> None:
    with pytest.raises(InvalidRequest, match="no delta"):
        plan_regression(make_policy(), parquet=parquet, x=["x"], y="y", loss=Budget.of(1.0, 1e-6))


@pytest.mark.parametrize(("fit", "epsilon"), [(regression, 0.3), (regression, 1.0),
                                             (regression, 10.0), (pca, 0.5), (pca, 3.0)])
def test_a_models_charge_is_opendps_map(parquet: Path, fit: Any, epsilon: float) -> None:
    plan = fit(parquet, epsilon)
    spent = plan.measurement.map(plan.d_in)
    assert plan.spent == (spent, 0.0)
    assert epsilon * 0.999 < spent <= epsilon


def test_regression_at_epsilon_10_recovers_the_slope(parquet: Path) -> None:
    slopes = np.array([regression(parquet, 10.0).release().values["coef_"][0] for _ in range(25)])
    # OpenDP's medians are taken on a grid of the y range; predictions 5 apart on x
    resolution = 25 / (CANDIDATES - 1) * 2 / 5
    spread = float(slopes.max() - slopes.min())
    assert slopes.min() - resolution <= SLOPE <= slopes.max() + resolution
    assert abs(slopes.mean() - SLOPE) <= 4 * slopes.std(ddof=1) / np.sqrt(len(slopes)) + resolution
    assert spread < 0.2  # and at epsilon 10 the runs agree closely


def test_regression_noise_is_real(parquet: Path) -> None:
    # the slope lies on a grid: at epsilon 0.05 the likeliest value came out in 21% of 300
    # fits, so 8 fits were all equal in ~3e-6 of runs; 20 fits: below ~1e-11
    fits = {tuple(regression(parquet, 0.05).release().values["coef_"]) for _ in range(20)}
    assert len(fits) > 1


def test_a_model_plan_releases_once(parquet: Path) -> None:
    plan = regression(parquet, 1.0)
    plan.release()
    with pytest.raises(InternalError, match="at most once"):
        plan.release()


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"columns": ["x"]}, "2 to 20 columns"),
        ({"columns": ["x", "x"]}, "distinct"),
        ({"components": 4}, "components must be"),
        ({"components": 0}, "components must be"),
        ({"columns": ["x", "loose"]}, "no bounds"),
        ({"columns": ["x", "secret"]}, "no queryable column secret"),
    ],
)
def test_pca_refusals(tmp_path: Path, kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidRequest, match=words):
        pca(tmp_path / "absent.parquet", 1.0, **kwargs)


def test_pca_finds_the_main_direction(parquet: Path) -> None:
    values = pca(parquet, 10.0).release().values
    components = np.array(values["components_"])
    assert components.shape == (2, 3)
    np.testing.assert_allclose(components @ components.T, np.eye(2), atol=1e-6)
    # in [0, 1] units x, y and z all rise together: the first component is about (1, 1, 1)/sqrt(3)
    cosine = abs(components[0] @ (np.ones(3) / np.sqrt(3)))
    assert cosine > 0.95, components
    assert values["explained_variance_ratio_"][0] > 0.8
    assert abs(values["n_samples"] - N * 0.95) < 200  # a noisy count of the complete rows

"""DP models from ``opendp.extras.sklearn``: linear regression and PCA, charged by OpenDP's map.

    plan = plan_regression(policy, parquet=path, x=["age"], y="amount", loss=Budget.of(1.0))
    plan = plan_pca(policy, parquet=path, columns=[...], components=2, loss=Budget.of(1.0))
    plan.spent           # OpenDP's privacy map of the measurement that will run
    fitted = plan.release()   # reads the data once

- **Linear regression** is OpenDP's DP Theil-Sen (``make_private_theil_sen``): one x column
  (OpenDP fits one), x and y bounds from the policy, the noise scale of its two private
  medians found by OpenDP's ``binary_search_param`` for the loss. OpenDP reports no accuracy.
- **PCA** is OpenDP's ``dp.sklearn.decomposition.PCA`` (Amin et al.), which needs the row
  count. One OpenDP adaptive composition spends a tenth of the loss on a noisy count n, then
  runs the PCA on the rows resized to n (:func:`_make_resize`: a uniform sample without
  replacement drawn with OpenDP's CSPRNG, or padding with the box's centre; one added row
  changes at most one row of the output, two in symmetric distance). Columns are first
  rescaled to [0, 1] by their policy bounds (public), so the components are in those units.

Rows with a null in a used column are dropped; values are clipped to their bounds. Both
models run under pure DP: a delta is refused. PCA relies on OpenDP's ``idealized-numerics``
(floating-point linear algebra treated as exact, as OpenDP documents for this estimator).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ["RUST_BACKTRACE"] = "0"  # before opendp loads: a backtrace costs ~80 ms per error

import numpy as np
import opendp.prelude as dp
import polars as pl
from opendp._lib import get_np_csprng

from gateway.adapters.dp.measure import Loss, translated, within
from gateway.adapters.dp.plan import ReleaseOnce
from gateway.domain.budget import Budget
from gateway.domain.errors import InternalError, InvalidRequest, UnsupportedQuery
from gateway.domain.query import queryable_column
from gateway.domain.text import _l
from gateway.policy import Policy

dp.enable_features("idealized-numerics")  # OpenDP's PCA asserts it (see module docstring)

CANDIDATES = 400  # Theil-Sen's median candidates on the y range: resolution (hi - lo) / 399
COUNT_SHARE = 0.1  # of a PCA's epsilon, for the row count
MAX_PCA_COLUMNS = 20
SLACK = 1 - 1e-9  # ask OpenDP's search for a hair under the loss


@dataclass(frozen=True)
class FittedModel:
    kind: str
    values: dict[str, Any]  # coef_/intercept_ or components_/explained_variance_/mean_...


@dataclass
class ModelPlan:
    kind: str
    measurement: Any
    d_in: int
    spent: Loss
    read: Callable[[], np.ndarray]
    finish: Callable[[Any], dict[str, Any]]
    _once: ReleaseOnce = field(init=False, repr=False, compare=False, default_factory=lambda: (
        ReleaseOnce(_l("a model plan is released at most once"))))

    def accuracy(self, alpha: float = 0.05) -> dict[str, float | None]:
        return {}  # OpenDP reports no accuracy for these estimators

    def release(self) -> FittedModel:
        self._once.claim()
        with translated("release"), np.errstate(divide="ignore", invalid="ignore"):
            data = self.read()
            out = self.measurement(data)  # Theil-Sen drops its pairs with dx = 0
        return FittedModel(self.kind, self.finish(out))


def _numeric(policy: Policy, name: str, role: str) -> tuple[float, float]:
    col = queryable_column(policy, name, role)
    if col.type not in ("int", "float"):
        raise UnsupportedQuery(
            _l(
                "%(role)s needs numeric columns; %(column)s is %(type)s",
                role=role,
                column=name,
                type=col.type,
            )
        )
    if col.bounds is None:
        raise UnsupportedQuery(
            _l(
                "column %(column)s has no bounds in policy %(policy)s, so a model cannot use it",
                column=name,
                policy=policy.name,
            )
        )
    lo, hi = col.bounds
    if lo == hi:
        raise UnsupportedQuery(
            _l("column %(column)s has a single value in its bounds; it cannot be fitted", column=name)
        )
    return float(lo), float(hi)


def _unit(policy: Policy, loss: Budget) -> int:
    if policy.privacy_unit.id_column is not None:
        raise UnsupportedQuery(
            _l("models need a privacy unit of a bounded number of rows; this dataset's unit is an id column")
        )
    if loss.delta_units:
        raise InvalidRequest(_l("models run under pure DP and need no delta; leave delta out"))
    return policy.privacy_unit.max_contributions


def _reader(parquet: Path, bounds: dict[str, tuple[float, float]]) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        exprs = [
            pl.col(n).cast(pl.Float64).fill_nan(None).clip(lo, hi).alias(n) for n, (lo, hi) in bounds.items()
        ]
        frame = pl.scan_parquet(parquet).select(exprs).drop_nulls().collect()
        return frame.to_numpy().astype(float)

    return read


def plan_regression(policy: Policy, *, parquet: Path, x: Sequence[str], y: str, loss: Budget) -> ModelPlan:
    if isinstance(x, str) or len(x) != 1:
        raise UnsupportedQuery(
            _l("linear_regression fits one x column (OpenDP's DP Theil-Sen); name exactly one")
        )
    if x[0] == y:
        raise InvalidRequest(_l("x and y must be different columns"))
    x_bounds, y_bounds = _numeric(policy, x[0], "x"), _numeric(policy, y, "y")
    d_in = _unit(policy, loss)
    epsilon = loss.epsilon_float
    with translated("plan"):

        def theil_sen(scale: float) -> Any:
            return dp.sklearn.linear_model._make_private_theil_sen(
                dp.max_divergence(), x_bounds, y_bounds, scale=scale, candidates_count=CANDIDATES
            )

        # the loss is linear in 1 / scale: one probe at scale 1 gives the scale in closed form
        measurement = theil_sen(float(theil_sen(1.0).map(d_in)) / (epsilon * SLACK))
        spent: Loss = (float(measurement.map(d_in)), 0.0)
    if not within(spent, (epsilon, 0.0)):
        raise InternalError(_l("the planned fit would spend %(spent)s, over %(total)s", spent=spent,
                                total=epsilon))

    def finish(out: Any) -> dict[str, Any]:
        slope, intercept = (float(v) for v in np.asarray(out))
        return {"x": [x[0]], "y": y, "coef_": [slope], "intercept_": intercept}

    return ModelPlan(
        "linear_regression", measurement, d_in, spent, _reader(parquet, {x[0]: x_bounds, y: y_bounds}), finish
    )


def _make_resize(columns: int, size: int) -> Any:
    """Unsized rows -> exactly ``size`` rows (see module docstring); stability 2 per row."""
    csprng = get_np_csprng()
    centre = np.full(columns, 0.5)

    def resize(rows: np.ndarray) -> np.ndarray:
        n = rows.shape[0]
        if n >= size:
            return rows[np.sort(csprng.choice(n, size, replace=False))]
        return np.vstack([rows, np.tile(centre, (size - n, 1))])

    return dp.t.make_user_transformation(
        input_domain=dp.numpy.array2_domain(num_columns=columns, T=float),
        input_metric=dp.symmetric_distance(),
        output_domain=dp.numpy.array2_domain(num_columns=columns, size=size, T=float),
        output_metric=dp.symmetric_distance(),
        function=resize,
        stability_map=lambda d_in: 2 * d_in,
    )


def _make_pca_fit(columns: int, components: int, size: int, d_in: int, epsilon: float) -> Any:
    """Resize then OpenDP's PCA, its epsilon scaled so that the chain spends ``epsilon``."""
    norm = math.sqrt(columns) / 2  # rows in [0, 1]^k, around a centre inside the box

    def chain(eps: float) -> Any:
        pca = dp.sklearn.decomposition.PCA(
            epsilon=eps, row_norm=norm, n_samples=size, n_features=columns, n_components=components
        )
        return _make_resize(columns, size) >> pca.measurement()

    unit = float(chain(1.0).map(d_in))  # the map is linear in the PCA's epsilon
    return chain(epsilon / unit * SLACK)


def plan_pca(
    policy: Policy, *, parquet: Path, columns: Sequence[str], components: int, loss: Budget
) -> ModelPlan:
    if isinstance(columns, str) or not 2 <= len(columns) <= MAX_PCA_COLUMNS:
        raise InvalidRequest(_l("pca needs 2 to %(max)s columns", max=MAX_PCA_COLUMNS))
    if len(set(columns)) != len(columns):
        raise InvalidRequest(_l("columns must be distinct"))
    if isinstance(components, bool) or not isinstance(components, int) or not 1 <= components <= len(columns):
        raise InvalidRequest(
            _l(
                "components must be an integer from 1 to %(max)s, got %(value)s",
                max=len(columns),
                value=repr(components),
            )
        )
    bounds = {name: _numeric(policy, name, "pca") for name in columns}
    d_in = _unit(policy, loss)
    epsilon = loss.epsilon_float * SLACK
    k = len(columns)
    domain = dp.numpy.array2_domain(num_columns=k, T=float)
    with translated("plan"):
        count_scale = dp.binary_search_param(
            lambda s: _make_count(domain, s),
            d_in=d_in,
            d_out=epsilon * COUNT_SHARE,
            T=float,
        )
        m_count = _make_count(domain, count_scale)
        eps_pca = epsilon - float(m_count.map(d_in))
        compositor = dp.c.make_adaptive_composition(
            domain,
            dp.symmetric_distance(),
            dp.max_divergence(),
            d_in=d_in,
            d_mids=[float(m_count.map(d_in)), eps_pca],
        )

        def fit(rows: np.ndarray) -> Any:
            queryable = compositor(rows)
            size = max(int(queryable(m_count)), components + 1, 2)
            return size, queryable(_make_pca_fit(k, components, size, d_in, eps_pca))

        measurement = dp.m.make_user_measurement(
            domain, dp.symmetric_distance(), dp.max_divergence(), fit, compositor.map
        )
        spent: Loss = (float(measurement.map(d_in)), 0.0)
    if not within(spent, (loss.epsilon_float, 0.0)):
        raise InternalError(_l("the planned fit would spend %(spent)s, over %(total)s", spent=spent,
                                total=loss.epsilon_float))
    lows = np.array([b[0] for b in bounds.values()])
    spans = np.array([b[1] - b[0] for b in bounds.values()])

    def read_scaled() -> np.ndarray:
        return (_reader(parquet, bounds)() - lows) / spans

    def finish(out: Any) -> dict[str, Any]:
        size, model = out
        return {
            "feature_names_in_": list(columns),
            "n_samples": size,
            "components_": np.asarray(model.components_).tolist(),
            "explained_variance_": np.asarray(model.explained_variance_).tolist(),
            "explained_variance_ratio_": np.asarray(model.explained_variance_ratio_).tolist(),
            "mean_": np.asarray(model.mean_).tolist(),
            "scale_lower": lows.tolist(),
            "scale_span": spans.tolist(),
        }

    return ModelPlan("pca", measurement, d_in, spent, read_scaled, finish)


def _make_count(domain: Any, scale: float) -> Any:
    from opendp.extras.numpy._make_np_count import make_np_count

    return make_np_count(domain, dp.symmetric_distance()) >> dp.m.then_laplace(scale)

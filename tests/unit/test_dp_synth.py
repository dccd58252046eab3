"""Synthetic data (gateway/adapters/dp/synth.py): columns from the policy, caps, OpenDP's
charge, and a real AIM fit whose 2-way marginals beat the policy's dummy rows.

Fits are kept small (three columns, a few bins, few optimiser steps): the machine has two
shared cores.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from gateway.adapters.dp.synth import SyntheticPlan, Tuning, plan_synthetic, rho_for
from gateway.adapters.dp.synth_columns import BIN_NOTE, Encoded, encode_columns
from gateway.domain.budget import Budget
from gateway.domain.errors import InternalError, InvalidRequest, UnsupportedQuery
from gateway.policy import Policy
from gateway.services.catalog import synthetic_rows
from tests.unit.support import policy_of

N = 3000
FAST = Tuning(iters=150, aim_rounds=6)


PEOPLE_COLUMNS: dict[str, Any] = {
    "group": {"type": "str", "categories": ["a", "b", "c"]},
    "level": {"type": "int", "bounds": [0, 99]},
    "score": {"type": "float", "bounds": [0, 10], "nullable": True},
    "month": {"type": "int", "bounds": [1, 4]},
    "flag": {"type": "bool"},
    "free": {"type": "str"},
    "loose": {"type": "float"},
    "secret": {"type": "int", "bounds": [0, 9], "hidden": True},
}


def make_policy(**overrides: Any) -> Policy:
    synthetic = {"max_rows": 5000, "max_columns": 4, "max_domain_size": 5000}
    return policy_of("people", PEOPLE_COLUMNS, **{"synthetic": synthetic, **overrides})


def make_frame(seed: int = 0) -> pl.DataFrame:
    """Strongly dependent columns: group -> score -> level."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b", "c"], N, p=[0.5, 0.3, 0.2])
    centre = np.select([group == "a", group == "b"], [2.0, 5.0], 8.0)
    score = np.clip(centre + rng.normal(0, 0.7, N), 0, 10)
    level = np.clip(score * 10 + rng.normal(0, 4, N), 0, 99).astype(int)
    return pl.DataFrame(
        {
            "group": group,
            "level": level,
            "score": score,
            "month": rng.integers(1, 5, N),
            "flag": rng.random(N) < 0.3,
            "free": ["x"] * N,
            "loose": rng.random(N),
            "secret": rng.integers(0, 10, N),
        }
    )


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return make_frame()


def plan(
    parquet: Path,
    *,
    columns: list[str],
    epsilon: float = 1.0,
    delta: float = 0.0,
    method: str = "aim",
    rows: int = 200,
    bins: int = 4,
    policy: Policy | None = None,
) -> SyntheticPlan:
    return plan_synthetic(
        policy or make_policy(),
        parquet=parquet,
        version="v1",
        columns=columns,
        rows=rows,
        method=method,
        bins=bins,
        loss=Budget.of(epsilon, delta),
        tuning=FAST,
    )


def test_columns_come_from_the_policy_alone() -> None:
    encoded = {
        e.name: e for e in encode_columns(make_policy(), ["group", "level", "score", "month", "flag"], bins=5)
    }
    assert encoded["group"].keys == ("a", "b", "c") and not encoded["group"].binned
    assert encoded["month"].keys == (1, 2, 3, 4)  # a small int range: each value is a key
    assert encoded["flag"].keys == (False, True)
    assert encoded["score"].edges == (0.0, 2.0, 4.0, 6.0, 8.0, 10.0)
    assert encoded["score"].labels() == ["[0, 2)", "[2, 4)", "[4, 6)", "[6, 8)", "[8, 10]"]
    assert encoded["level"].keys == (0, 1, 2, 3, 4) and encoded["level"].edges == (
        0,
        19.8,
        39.6,
        59.4,
        79.2,
        99,
    )
    assert encoded["score"].cardinality == 6  # OpenDP's null category


@pytest.mark.parametrize(
    ("columns", "error", "words"),
    [
        (["free"], UnsupportedQuery, "no public categories or bounds"),
        (["loose"], UnsupportedQuery, "no public categories or bounds"),
        (["nope"], InvalidRequest, "no queryable column nope"),
        (["secret"], InvalidRequest, "no queryable column secret"),
        ([], InvalidRequest, "at least one column"),
        (["group", "group"], InvalidRequest, "distinct"),
    ],
)
def test_columns_the_policy_does_not_allow_are_refused(columns: list[str], error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        encode_columns(make_policy(), columns, bins=4)


def test_a_hidden_column_answers_like_a_missing_one() -> None:
    messages = []
    for name in ("secret", "secrex"):  # a hidden column, and a missing one spelled alike
        with pytest.raises(InvalidRequest) as info:
            encode_columns(make_policy(), [name], bins=4)
        messages.append(info.value.message.replace(name, "X"))
    assert messages[0] == messages[1]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"rows": 5001}, "over this dataset's cap of 5000"),
        ({"rows": 0}, "positive integer"),
        ({"columns": ["group", "level", "score", "month", "flag"]}, "5 columns is over"),
        ({"columns": ["level", "score", "group"], "bins": 40}, "category combinations"),
        ({"bins": 1}, "bins must be"),
        ({"bins": 65}, "bins must be"),
        ({"method": "gan"}, "method must be one of aim, mst"),
        ({"columns": ["group"]}, "at least two columns"),
    ],
)
def test_caps_and_bad_options_are_refused_before_any_data_is_read(
    tmp_path: Path, kwargs: dict[str, Any], words: str
) -> None:
    missing = tmp_path / "absent.parquet"  # proves nothing was read, nothing was built
    args: dict[str, Any] = {"columns": ["group", "score"]} | kwargs
    with pytest.raises(InvalidRequest, match=words):
        plan(missing, **args)


def test_an_id_column_unit_is_refused(parquet: Path) -> None:
    policy = make_policy(privacy_unit={"id_column": "secret", "max_contributions": 2})
    with pytest.raises(UnsupportedQuery, match="id column"):
        plan(parquet, columns=["group", "month"], policy=policy)


@pytest.mark.parametrize(("epsilon", "delta"), [(0.5, 0.0), (2.0, 1e-6)])
def test_the_charge_is_opendps_map_of_the_measurement_run(
    parquet: Path, epsilon: float, delta: float
) -> None:
    p = plan(parquet, columns=["group", "month"], epsilon=epsilon, delta=delta, method="mst")
    out = p.measurement.map(p.d_in)  # OpenDP's own map of the very measurement released
    eps, dlt = out if isinstance(out, tuple) else (out, 0.0)
    assert p.spent == (pytest.approx(eps, rel=0, abs=0), pytest.approx(dlt, rel=0, abs=0))
    assert epsilon * 0.999 < eps <= epsilon
    assert dlt == delta
    if delta:
        assert str(p.measurement.output_measure).startswith("Approximate(MaxDivergence")
    acc = p.accuracy(0.05)["one_way_count"]
    assert acc is not None and acc > 0


def test_rho_is_opendps_conversion_of_the_loss() -> None:
    import opendp.prelude as dp

    rho = rho_for(1.0, 1e-6)
    probe = dp.m.make_gaussian(
        dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float), (1 / (2 * rho)) ** 0.5
    )
    eps, delta = dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(probe), 1e-6).map(1.0)
    assert eps == pytest.approx(1.0, rel=1e-6) and eps <= 1.0 + 1e-12 and delta == 1e-6


def _binned(frame: pl.DataFrame, encoded: list[Encoded]) -> pl.DataFrame:
    from gateway.adapters.dp.synth_columns import _expr

    return frame.lazy().select([_expr(e) for e in encoded]).collect()


def tv_2way(real: pl.DataFrame, synth: pl.DataFrame) -> float:
    """Mean total-variation distance over every 2-way marginal (binned values)."""
    distances = []
    for a, b in itertools.combinations(real.columns, 2):
        p = real.group_by(a, b).len().with_columns(pl.col("len") / real.height)
        q = synth.group_by(a, b).len().with_columns(pl.col("len") / max(synth.height, 1))
        joined = p.join(q, on=[a, b], how="full", coalesce=True, nulls_equal=True).fill_null(0)
        distances.append(0.5 * float((joined["len"] - joined["len_right"]).abs().sum()))
    return float(np.mean(distances))


def test_aim_at_epsilon_1_beats_the_dummy_rows_and_decodes_inside_the_bins(
    parquet: Path, frame: pl.DataFrame
) -> None:
    columns = ["group", "score", "level"]
    p = plan(parquet, columns=columns, epsilon=1.0, rows=2000, bins=5)
    release = p.release()
    assert release.columns == columns and len(release.rows) == 2000
    assert release.note == BIN_NOTE
    synth = pl.DataFrame(release.rows, schema=columns, orient="row")
    assert set(synth["group"].drop_nulls()) <= {"a", "b", "c"}
    assert set(synth["score"].drop_nulls()) <= {1.0, 3.0, 5.0, 7.0, 9.0}  # midpoints
    assert set(synth["level"].drop_nulls()) <= {9, 29, 49, 69, 89}
    measured = {tuple(m["columns"]) for m in release.marginals}
    assert {("group",), ("score",), ("level",)} <= measured and any(len(c) >= 2 for c in measured)
    assert all(m["stddev"] > 0 and m["cells"] == len(m["counts"]) for m in release.marginals)
    dummy = synthetic_rows(make_policy(), 2000)
    dummy_frame = pl.DataFrame(
        [[row[dummy["columns"].index(c)] for c in columns] for row in dummy["rows"]],
        schema=columns,
        orient="row",
    )
    encoded = encode_columns(make_policy(), columns, bins=5)
    real_tv = tv_2way(_binned(frame.select(columns), encoded), _binned(synth, encoded))
    dummy_tv = tv_2way(_binned(frame.select(columns), encoded), _binned(dummy_frame, encoded))
    assert real_tv < dummy_tv * 0.6, (real_tv, dummy_tv)
    with pytest.raises(InternalError, match="at most once"):
        p.release()

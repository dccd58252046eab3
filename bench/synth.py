"""``make bench`` (part 3): quality and cost of DP synthetic data and DP regression.

Synthetic data, on the demo ``credit`` data (4 columns: two public-category columns and two
binned numeric ones, 8 bins; AIM capped at 24 rounds, 200 optimiser steps per fit) at
epsilon 1, 3 and 10: the average total-variation distance of every 1-way and every 2-way
marginal of the synthetic rows against the true data (both binned the same way, nulls a
category of their own), for AIM, MST, and the policy-based dummy rows of
``/v1/datasets/{name}/dummy`` (no data used).

DP regression (OpenDP's Theil-Sen) on the demo ``exam`` data (normexam ~ standLRT) and
``credit`` (amount ~ price): its slope and intercept against ordinary least squares on the
true data (the complete rows, clipped to the policy bounds), median of 5 fits.

Each fit runs in its own process, so its time and peak RSS are its own (the RSS includes
the interpreter, polars, OpenDP and, for synthetic data, jax: about 0.5 GB before a fit).
The numbers also land in bench/out/synth.json.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import resource
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.adapters.dp.synth import Tuning, plan_synthetic  # noqa: E402
from gateway.adapters.dp.synth_columns import _expr, encode_columns  # noqa: E402
from gateway.demo_data import export_demo_data  # noqa: E402
from gateway.domain.budget import Budget  # noqa: E402
from gateway.policy import load_policy  # noqa: E402
from gateway.services.catalog import synthetic_rows  # noqa: E402

warnings.filterwarnings("ignore", message="epsilon should be")  # OpenDP's advice at epsilon 10

EPSILONS = (1.0, 3.0, 10.0)
SYNTH_COLUMNS = ["status", "home", "age", "income"]
BINS = 8
ROWS = 4000
TUNING = Tuning(iters=200, aim_rounds=24)  # AIM: 24 rounds, not 16 x columns: minutes, not tens
REGRESSIONS = [("exam", "standLRT", "normexam"), ("credit", "price", "amount")]
OUT = ROOT / "bench" / "out"


def _binned(frame: pl.DataFrame, policy: Any) -> pl.DataFrame:
    encoded = encode_columns(policy, SYNTH_COLUMNS, bins=BINS)
    return frame.lazy().select([_expr(e) for e in encoded]).collect()


def _tv(real: pl.DataFrame, synth: pl.DataFrame, columns: tuple[str, ...]) -> float:
    cols = list(columns)
    p = real.group_by(cols).len().with_columns(pl.col("len") / real.height)
    q = synth.group_by(cols).len().with_columns(pl.col("len") / max(synth.height, 1))
    joined = p.join(q, on=cols, how="full", coalesce=True, nulls_equal=True).fill_null(0)
    return 0.5 * float((joined["len"] - joined["len_right"]).abs().sum())


def tv_by_order(real: pl.DataFrame, synth: pl.DataFrame) -> tuple[float, float]:
    one = [_tv(real, synth, (c,)) for c in real.columns]
    two = [_tv(real, synth, pair) for pair in itertools.combinations(real.columns, 2)]
    return float(np.mean(one)), float(np.mean(two))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fit_synth(args: tuple[Path, str, float], queue: Any) -> None:
    parquet, method, epsilon = args
    policy = load_policy(ROOT / "policies" / "credit.yaml")
    start = time.perf_counter()
    plan = plan_synthetic(policy, parquet=parquet, version="bench", columns=SYNTH_COLUMNS, rows=ROWS,
                          method=method, bins=BINS, loss=Budget.of(epsilon), tuning=TUNING)
    release = plan.release()
    seconds = time.perf_counter() - start
    queue.put({"rows": release.rows, "seconds": seconds, "peak_mb": _peak_mb()})


def _fit_regression(args: tuple[Path, str, str, str, float], queue: Any) -> None:
    from gateway.adapters.dp.models import plan_regression

    parquet, name, x, y, epsilon = args
    policy = load_policy(ROOT / "policies" / f"{name}.yaml")
    fits, seconds = [], []
    for _ in range(5):
        start = time.perf_counter()
        plan = plan_regression(policy, parquet=parquet, x=[x], y=y, loss=Budget.of(epsilon))
        values = plan.release().values
        seconds.append(time.perf_counter() - start)
        fits.append((values["coef_"][0], values["intercept_"]))
    slope, intercept = np.median(np.array(fits), axis=0)
    queue.put({"slope": float(slope), "intercept": float(intercept),
               "seconds": float(np.median(seconds)), "peak_mb": _peak_mb()})


def in_process(target: Any, args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(args, queue))
    proc.start()
    while True:  # a fit that dies must not hang the benchmark
        try:
            result = queue.get(timeout=5)
            break
        except Exception:
            if not proc.is_alive():
                raise SystemExit(f"a fit failed (exit code {proc.exitcode})") from None
    proc.join()
    return dict(result)


def ols(parquet: Path, policy: Any, x: str, y: str) -> tuple[float, float]:
    (xlo, xhi), (ylo, yhi) = policy.columns[x].bounds, policy.columns[y].bounds
    frame = pl.read_parquet(parquet).select(
        pl.col(x).cast(pl.Float64).clip(xlo, xhi), pl.col(y).cast(pl.Float64).clip(ylo, yhi)
    ).drop_nulls()
    slope, intercept = np.polyfit(frame[x].to_numpy(), frame[y].to_numpy(), 1)
    return float(slope), float(intercept)


def main() -> None:
    data = export_demo_data(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT / "demo-data")
    policy = load_policy(ROOT / "policies" / "credit.yaml")
    real = _binned(pl.read_parquet(data["credit"]).select(SYNTH_COLUMNS), policy)
    dummy = synthetic_rows(policy, ROWS)
    index = [dummy["columns"].index(c) for c in SYNTH_COLUMNS]
    dummy_rows = [[r[i] for i in index] for r in dummy["rows"]]
    dummy_frame = pl.DataFrame(dummy_rows, schema=SYNTH_COLUMNS, orient="row")
    results: dict[str, Any] = {"synthetic": [], "regression": []}
    print(f"synthetic data: credit, {real.height} rows, columns {', '.join(SYNTH_COLUMNS)}, {BINS} bins, "
          f"{ROWS} synthetic rows")
    print(f"{'method':>8} {'epsilon':>8} {'TV 1-way':>10} {'TV 2-way':>10} {'fit':>9} {'peak RSS':>10}")
    one, two = tv_by_order(real, _binned(dummy_frame, policy))
    print(f"{'dummy':>8} {'-':>8} {one:>10.3f} {two:>10.3f} {'-':>9} {'-':>10}")
    results["synthetic"].append({"method": "dummy", "tv1": one, "tv2": two})
    for method, epsilon in itertools.product(("aim", "mst"), EPSILONS):
        fit = in_process(_fit_synth, (data["credit"], method, epsilon))
        synth = pl.DataFrame(fit["rows"], schema=SYNTH_COLUMNS, orient="row")
        one, two = tv_by_order(real, _binned(synth, policy))
        print(f"{method:>8} {epsilon:>8g} {one:>10.3f} {two:>10.3f} {fit['seconds']:>8.1f}s "
              f"{fit['peak_mb']:>7.0f} MB", flush=True)
        results["synthetic"].append({"method": method, "epsilon": epsilon, "tv1": one, "tv2": two,
                                     "seconds": fit["seconds"], "peak_mb": fit["peak_mb"]})
    print()
    print("DP linear regression (OpenDP Theil-Sen), median of 5 fits, against OLS on the true data")
    print(f"{'data':>8} {'y ~ x':>18} {'epsilon':>8} {'slope':>9} {'OLS':>9} {'intercept':>10} {'OLS':>9} "
          f"{'fit':>8} {'peak RSS':>9}")
    for name, x, y in REGRESSIONS:
        pol = load_policy(ROOT / "policies" / f"{name}.yaml")
        true_slope, true_intercept = ols(data[name], pol, x, y)
        for epsilon in EPSILONS:
            fit = in_process(_fit_regression, (data[name], name, x, y, epsilon))
            print(f"{name:>8} {y + ' ~ ' + x:>18} {epsilon:>8g} {fit['slope']:>9.3f} {true_slope:>9.3f} "
                  f"{fit['intercept']:>10.2f} {true_intercept:>9.2f} {fit['seconds'] * 1000:>6.0f}ms "
                  f"{fit['peak_mb']:>6.0f} MB", flush=True)
            results["regression"].append({"dataset": name, "x": x, "y": y, "epsilon": epsilon, **fit,
                                          "ols_slope": true_slope, "ols_intercept": true_intercept})
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "synth.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

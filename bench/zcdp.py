"""``make bench`` (zCDP): the same grant spent over k queries under pure and zCDP accounting.

A grant of (epsilon 1, delta 1e-7) on the demo ``exam`` data (4,059 pupils) is spent over
k = 1, 10, 100 and 1,000 equal queries, each a count and a mean of ``normexam`` (bounds
[-4, 4]), through the gateway's own OpenDP engine:

- pure: each query spends epsilon 1 / k (Laplace-type noise), basic composition;
- zCDP: the grant is rho = OpenDP's conversion of (1, 1e-7), about 0.0202; each query spends
  rho / k (Gaussian-type noise), and k of them compose to rho, i.e. (1, 1e-7)-DP.

Each setting releases max(k, 300) answers (several grants when k is small) and reports the
median absolute error of the count and of the mean against the truth. The crossover is the
k where both accountings' errors are equal, interpolated (log-log) between the two measured
k around the first change of sign; for the count, the theory gives it too: pure errors grow
like k and zCDP errors like sqrt(k), so from the measured error ratio r at k = 100 it is
100 / r^2. (A mean is clipped to its bounds, which caps its error at large k.) The numbers
also land in bench/out/zcdp.json.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.adapters.dp import Engine, rho_units_for_epsilon  # noqa: E402
from gateway.demo_data import export_demo_data  # noqa: E402
from gateway.domain.budget import RHO_SCALE, Budget  # noqa: E402
from gateway.domain.query import Aggregate, QuerySpec, validate  # noqa: E402
from gateway.policy import load_policy  # noqa: E402

OUT = ROOT / "bench" / "out"
GRANT_EPSILON, GRANT_DELTA = 1.0, 1e-7
KS = (1, 2, 5, 10, 20, 50, 100, 1000)  # the 1, 10, 100, 1000, and more for the crossover
MIN_RELEASES = 300
COLUMN = "normexam"


def _errors(engine: Engine, parquet: Path, loss: Budget, releases: int,
            truth: tuple[int, float]) -> tuple[list[float], list[float]]:
    policy = load_policy(ROOT / "policies" / "exam.yaml")
    query = QuerySpec(dataset="exam", select=(Aggregate("count"), Aggregate("mean", COLUMN)))
    validate(query, policy)
    counts, means = [], []
    for _ in range(releases):
        plan = engine.plan(query, policy, parquet=parquet, version="bench", loss=loss)
        count, mean = plan.release().rows[0]
        counts.append(abs(float(count) - truth[0]))  # type: ignore[arg-type]
        means.append(abs(float(mean) - truth[1]) if mean is not None else math.inf)  # type: ignore[arg-type]
    return counts, means


def main() -> None:
    engine = Engine()
    with tempfile.TemporaryDirectory() as tmp:
        parquet = export_demo_data(Path(tmp))["exam"]
        frame = pl.read_parquet(parquet)
        values = frame[COLUMN].drop_nulls().clip(-4, 4)
        truth = (frame.height, float(values.mean()))  # type: ignore[arg-type]
        rho = rho_units_for_epsilon(GRANT_EPSILON, GRANT_DELTA) / RHO_SCALE
        rows: list[dict[str, Any]] = []
        started = time.perf_counter()
        for k in KS:
            releases = max(k, MIN_RELEASES)
            losses = {"pure": Budget.of(GRANT_EPSILON / k), "zcdp": Budget.zcdp(rho / k)}
            row: dict[str, Any] = {"k": k, "releases": releases}
            for name, loss in losses.items():
                counts, means = _errors(engine, parquet, loss, releases, truth)
                row[f"{name}_count"] = statistics.median(counts)
                row[f"{name}_mean"] = statistics.median(means)
            rows.append(row)
        seconds = time.perf_counter() - started
    _report(rows, rho, seconds)


def _crossover(rows: list[dict[str, Any]], what: str) -> float | None:
    """First k where zCDP's error drops to pure's or below, log-log interpolated."""
    points = [(r["k"], r[f"pure_{what}"] / r[f"zcdp_{what}"]) for r in rows]
    for (k0, r0), (k1, r1) in zip(points, points[1:], strict=False):
        if r0 < 1 <= r1:
            t = -math.log(r0) / (math.log(r1) - math.log(r0))
            return float(math.exp(math.log(k0) + t * (math.log(k1) - math.log(k0))))
    return None


def _report(rows: list[dict[str, Any]], rho: float, seconds: float) -> None:
    print(f"grant (epsilon {GRANT_EPSILON:g}, delta {GRANT_DELTA:g}) = rho {rho:.6f} "
          f"(OpenDP's conversion); exam data, count and mean({COLUMN}) per query")
    head = (f"{'k':>5} {'releases':>9}  {'count: pure':>12} {'zcdp':>9} {'ratio':>6}  "
            f"{'mean: pure':>11} {'zcdp':>9} {'ratio':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['k']:>5} {r['releases']:>9}  {r['pure_count']:>12.2f} {r['zcdp_count']:>9.2f} "
              f"{r['pure_count'] / r['zcdp_count']:>6.2f}  {r['pure_mean']:>11.4f} "
              f"{r['zcdp_mean']:>9.4f} {r['pure_mean'] / r['zcdp_mean']:>6.2f}")
    print("-" * len(head))
    at_100 = next(r for r in rows if r["k"] == 100)
    crossings = {
        "count": _crossover(rows, "count"),
        "mean": _crossover(rows, "mean"),
        "count_theory_from_k100": 100 / (at_100["pure_count"] / at_100["zcdp_count"]) ** 2,
    }
    print("median absolute error; ratio = pure / zcdp (> 1: zCDP is more accurate)")
    print("crossover (equal error): " + ", ".join(
        f"{name.replace('_', ' ')} k = {'none' if value is None else f'{value:.1f}'}"
        for name, value in crossings.items()))
    print(f"({seconds:.0f} s)")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "zcdp.json").write_text(json.dumps(
        {"rho": rho, "rows": rows, "crossover": crossings}, indent=2))


if __name__ == "__main__":
    main()

"""``make bench``: the Spark engine (local mode) against the polars engine, through the gateway.

The same rows, generated once as a Parquet directory of 10M-row parts (what Spark reads in
place) and as one Parquet file (what the polars engine registers and copies), are queried
over HTTP with run.py's query (group-by count + mean(income), public keys and thresholded
keys, a filter that keeps every row and differs per query so the release cache never
answers). Each engine and size gets a gateway process of its own, so its peak memory is its
own: the gateway's peak RSS (VmHWM) plus, for Spark, that of the JVM it starts (local mode
runs Spark's executors inside that JVM). Sizes: 10M and 100M rows.

    .venv/bin/python bench/spark.py                 # what make bench runs
    .venv/bin/python bench/spark.py --rows 20000    # a quick check at one small size

Registering the 100M-row file for the polars engine reads it into memory once (a CLI
process, several GB); the gateway then scans it streaming. The numbers also land in
bench/out/spark.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import (  # noqa: E402
    REPEATS,
    SHAPES,
    Gateway,
    make_data,
    peak_mb,
    write_policy,
)
from sandbox.hub.isolation import descendants_of  # noqa: E402

OUT = ROOT / "bench" / "out"
SIZES = {"10M": 10_000_000, "100M": 100_000_000}
PART_ROWS = 10_000_000


def make_parts(rows: int, directory: Path, seed: int) -> None:
    """``rows`` rows as Parquet parts of at most PART_ROWS rows (reused when complete)."""
    if directory.exists():
        if pl.scan_parquet(directory / "*.parquet").select(pl.len()).collect().item() == rows:
            return
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    for index, start in enumerate(range(0, rows, PART_ROWS)):
        make_data(min(PART_ROWS, rows - start), directory / f"part-{index:04d}.parquet", seed + index)


def single_file(directory: Path, path: Path) -> None:
    if not path.exists():
        pl.scan_parquet(directory / "*.parquet").sink_parquet(path)


class Measured(Gateway):
    """run.py's gateway process, with the memory of its JVM child (Spark local mode) too."""

    def peak_mb(self) -> tuple[float, float]:
        assert self.process is not None
        pid = self.process.pid
        return peak_mb(pid), sum(peak_mb(child) for child in descendants_of(pid))


def measure(gw: Measured, name: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with httpx.Client() as client:
        for shape, by in SHAPES.items():
            gw.query(client, name, by)  # warm: the SparkSession, file cache, plan caches
            out[shape] = statistics.median(gw.query(client, name, by) for _ in range(REPEATS))
    out["gateway_mb"], out["jvm_mb"] = gw.peak_mb()
    return out


def run(sizes: dict[str, int]) -> list[dict[str, Any]]:
    OUT.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="dpsandbox-bench-spark-"))
    results = []
    try:
        setup = Gateway(home)
        setup.setup({}, {})  # run.py's users
        for label, rows in sizes.items():
            directory = OUT / f"spark_{label.lower()}"
            make_parts(rows, directory, seed=rows)
            single = OUT / f"spark_{label.lower()}.parquet"
            single_file(directory, single)
            for engine in ("polars", "spark"):
                name = f"{engine}_{label.lower()}"
                policy = write_policy(name, rows, OUT)
                if engine == "spark":
                    _to_spark(policy, directory)
                setup.add_dataset(name, policy, single if engine == "polars" else None)
                gw = Measured(home)
                try:
                    gw.start()
                    results.append({"rows": label, "engine": engine, **measure(gw, name)})
                finally:
                    gw.stop()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return results


def _to_spark(policy: Path, directory: Path) -> None:
    import yaml

    data = yaml.safe_load(policy.read_text())
    data.update(engine="spark", source=str(directory.resolve()))
    policy.write_text(yaml.safe_dump(data, sort_keys=False))


def print_table(results: list[dict[str, Any]]) -> None:
    load = os.getloadavg()[0]
    print(f"\ndp-sandbox bench: Spark local mode vs polars, through the gateway, median of "
          f"{REPEATS}; {os.cpu_count()} cores, load average {load:.1f}; "
          f"DPSANDBOX_SPARK_MASTER={os.environ.get('DPSANDBOX_SPARK_MASTER', 'local[*]')}")
    shapes = list(SHAPES)
    header = (f"{'rows':>5}  {'engine':<7}" + "".join(f"{s:>26}" for s in shapes)
              + f"{'gateway MB':>12}{'JVM MB':>9}")
    print(header)
    print("-" * len(header))
    for row in results:
        times = "".join(f"{row[s]:>24.0f}ms" for s in shapes)
        print(f"{row['rows']:>5}  {row['engine']:<7}{times}{row['gateway_mb']:>12.0f}"
              f"{row['jvm_mb']:>9.0f}")
    (OUT / "spark.json").write_text(json.dumps({"results": results, "load": load}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, help="one size of this many rows instead of 10M and 100M")
    args = parser.parse_args()
    sizes = {f"{args.rows}": args.rows} if args.rows else SIZES
    print_table(run(sizes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``make bench``: one table from one run on one set of generated data.

For a group-by count + mean over 1M and 10M rows, with public keys (30 categories) and
with thresholded keys (500 values, no public list), it times raw polars, the in-process
OpenDP engine (plan + release) and the real gateway over HTTP (token, JSON, ledger,
audit, release). On a 1,000-row dataset it measures the gateway's own overhead: p50 and
p95 latency, queries per second with 8 concurrent clients, and the gateway's peak RSS.

Every query the gateway answers differs by a filter that keeps every row (``age >= -i``),
so none is served from the release cache; the engine's noise-scale cache stays warm, as
it does for an analyst varying a filter. Raw polars and the engine read the gateway's own
registered copy of each file, so every column scans the same bytes. "raw polars" is a plain
``collect()``; "(streaming)" is polars' streaming engine, which the DP engine itself uses.
The numbers also land in bench/out/bench.json.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.adapters.dp import Engine  # noqa: E402
from gateway.domain.query import Aggregate, Filter, QuerySpec, resolve_loss, validate  # noqa: E402
from gateway.policy import load_policy  # noqa: E402

OUT = ROOT / "bench" / "out"
BIN = ROOT / ".venv" / "bin"
SIZES = {"1M": 1_000_000, "10M": 10_000_000}
REPEATS = 5
EPSILON = 0.1
DELTA = 1e-6
REGIONS = [f"region_{i:02d}" for i in range(30)]
UNITS = [f"unit_{i:03d}" for i in range(500)]
SHAPES = {"public keys (30)": "region", "thresholded keys (500)": "unit"}
SMALL_QUERIES, CLIENTS, PER_CLIENT = 200, 8, 40
PASSWORD = "bench-password-not-secret"
Row = tuple[str, str, float, float, float, float]  # size, keys, raw, streaming, engine, gateway


# -- data -------------------------------------------------------------------------------


def make_data(rows: int, path: Path, seed: int) -> None:
    if path.exists() and pl.scan_parquet(path).select(pl.len()).collect().item() == rows:
        return
    rng = np.random.default_rng(seed)
    pl.DataFrame(
        {
            "region": pl.Series(np.array(REGIONS)[rng.integers(0, len(REGIONS), rows)]),
            "unit": pl.Series(np.array(UNITS)[rng.integers(0, len(UNITS), rows)]),
            "income": rng.gamma(2.0, 20_000.0, rows),
            "age": rng.integers(0, 100, rows),
        }
    ).write_parquet(path)


def write_policy(name: str, rows: int, folder: Path) -> Path:
    policy = {
        "name": name,
        "title": f"benchmark data, {rows} rows",
        "source": f"{name}.parquet",
        "access": "open",
        "max_rows": rows,
        "budget": {
            "default_epsilon": 1.0,
            "max_epsilon_per_grant": 100_000.0,
            "delta": DELTA,
            "dataset_epsilon_cap": 1_000_000.0,
        },
        "columns": {
            "region": {"type": "str", "categories": REGIONS},
            "unit": {"type": "str"},
            "income": {"type": "float", "bounds": [0, 500_000]},
            "age": {"type": "int", "bounds": [0, 99]},
        },
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


# -- the three ways to answer ----------------------------------------------------------------


def body(dataset: str, by: str, tag: int) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "select": [{"agg": "count"}, {"agg": "mean", "column": "income"}],
        "where": [{"column": "age", "op": ">=", "value": -tag}],
        "group_by": [by],
        "epsilon": EPSILON,
        **({"delta": DELTA} if by == "unit" else {}),
    }


def spec_of(data: dict[str, Any]) -> QuerySpec:
    return QuerySpec(
        dataset=data["dataset"],
        select=tuple(Aggregate(**a) for a in data["select"]),
        where=tuple(Filter(**f) for f in data["where"]),
        group_by=tuple(data["group_by"]),
    )


def raw_polars(parquet: Path, by: str, engine: Any = "auto") -> Callable[[], object]:
    def run() -> object:
        frame = pl.scan_parquet(parquet).filter(pl.col("age") >= -1)
        return frame.group_by(by).agg(pl.len(), pl.col("income").mean()).collect(engine=engine)

    return run


def in_process(
    engine: Engine, parquet: Path, policy_file: Path, data: dict[str, Any]
) -> Callable[[], object]:
    policy, spec = load_policy(policy_file), spec_of(data)
    validate(spec, policy)
    loss = resolve_loss(spec, policy, epsilon=data["epsilon"], delta=data.get("delta"))
    return lambda: engine.plan(spec, policy, parquet=parquet, version="bench", loss=loss).release()


def median_ms(run: Callable[[], object], repeats: int = REPEATS) -> float:
    run()  # warm: file cache, engine cache, first-call costs
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


# -- the gateway, as a subprocess --------------------------------------------------------------


class Gateway:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {**os.environ, "DPSANDBOX_HOME": str(home), "RUST_BACKTRACE": "0"}
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.tag = 0
        self._lock = threading.Lock()

    def cli(self, *args: str) -> None:
        done = subprocess.run([str(BIN / "dpsandbox"), *args], env=self.env, capture_output=True)
        if done.returncode:
            raise SystemExit(f"dpsandbox {' '.join(args)} failed:\n{done.stderr.decode()[-2000:]}")

    def setup(self, datasets: dict[str, Path], policies: dict[str, Path]) -> None:
        secret = self.home / "password"
        secret.write_text(PASSWORD)
        self.cli("user", "add", "bench_admin", "--role", "admin", "--password-file", str(secret))
        self.cli("user", "add", "bench_analyst", "--role", "researcher", "--password-file", str(secret))
        for name, data in datasets.items():
            self.add_dataset(name, policies[name], data)

    def add_dataset(self, name: str, policy: Path, data: Path | None = None) -> None:
        """Register ``name`` (``data`` copied in, or read in place as the policy says) and
        grant it to bench_analyst."""
        self.cli("dataset", "add", name, "--policy", str(policy), *(["--data", str(data)] if data else []))
        self.cli("grant", "add", "--user", "bench_analyst", "--dataset", name,
                 "--epsilon", "50000", "--delta", "0.5")

    def registered(self, name: str) -> Path | None:
        return next(iter(sorted((self.home / "data").glob(f"{name}-*.parquet"))), None)

    def start(self) -> None:
        log = (self.home / "gateway.log").open("wb")
        self.process = subprocess.Popen(
            [str(BIN / "dpsandbox"), "gateway", "--port", str(self.port)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise SystemExit(f"gateway did not start; see {self.home / 'gateway.log'}")
        answer = httpx.post(f"{self.url}/v1/auth/token",
                            json={"username": "bench_analyst", "password": PASSWORD})
        answer.raise_for_status()
        self.token = answer.json()["access_token"]

    def query(self, client: httpx.Client, dataset: str, by: str) -> float:
        with self._lock:
            self.tag += 1
            tag = self.tag
        start = time.perf_counter()
        answer = client.post(f"{self.url}/v1/queries", json=body(dataset, by, tag),
                             headers={"Authorization": f"Bearer {self.token}"}, timeout=600)
        elapsed = time.perf_counter() - start
        if answer.status_code != 200 or answer.json().get("status") != "released":
            raise SystemExit(f"query failed: {answer.status_code} {answer.text[:500]}")
        return elapsed * 1000

    def peak_rss_mb(self) -> float:
        assert self.process is not None
        return peak_mb(self.process.pid)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def peak_mb(pid: int) -> float:
    """The peak resident memory (VmHWM) of process ``pid`` in MB; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    line = next((x for x in status.splitlines() if x.startswith("VmHWM:")), "VmHWM: 0 kB")
    return int(line.split()[1]) / 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def gateway(datasets: dict[str, Path], policies: dict[str, Path]) -> Iterator[Gateway]:
    home = Path(tempfile.mkdtemp(prefix="dpsandbox-bench-"))
    gw = Gateway(home)
    try:
        gw.setup(datasets, policies)
        gw.start()
        yield gw
    finally:
        gw.stop()
        shutil.rmtree(home, ignore_errors=True)


# -- measurements ----------------------------------------------------------------------------


def gateway_median(gw: Gateway, dataset: str, by: str) -> float:
    with httpx.Client() as client:
        gw.query(client, dataset, by)
        return statistics.median(gw.query(client, dataset, by) for _ in range(REPEATS))


def run_clients(client: Callable[[int], None], clients: int) -> float:
    """Run ``client(0)`` .. ``client(clients - 1)`` in as many threads at once: wall seconds."""
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def overhead(gw: Gateway) -> dict[str, float]:
    with httpx.Client() as client:
        for _ in range(10):
            gw.query(client, "bench_small", "region")
        latencies = sorted(gw.query(client, "bench_small", "region") for _ in range(SMALL_QUERIES))

    def client_run() -> None:
        with httpx.Client() as own:
            for _ in range(PER_CLIENT):
                gw.query(own, "bench_small", "region")

    wall = run_clients(lambda _client: client_run(), CLIENTS)
    return {
        "p50": latencies[len(latencies) // 2],
        "p95": latencies[int(len(latencies) * 0.95) - 1],
        "qps": CLIENTS * PER_CLIENT / wall,
        "rss": gw.peak_rss_mb(),
    }


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    sizes = {"bench_small": 1_000, **{f"bench_{label.lower()}": n for label, n in SIZES.items()}}
    datasets = {name: OUT / f"{name}.parquet" for name in sizes}
    policies = {name: write_policy(name, rows, OUT) for name, rows in sizes.items()}
    for name, rows in sizes.items():
        make_data(rows, datasets[name], seed=rows)
    engine = Engine()
    table: list[Row] = []
    with gateway(datasets, policies) as gw:
        for label in SIZES:
            name = f"bench_{label.lower()}"
            parquet = gw.registered(name) or datasets[name]
            for shape, by in SHAPES.items():
                raw = median_ms(raw_polars(parquet, by))
                streaming = median_ms(raw_polars(parquet, by, "streaming"))
                dp = median_ms(in_process(engine, parquet, policies[name], body(name, by, 1)))
                http = gateway_median(gw, name, by)
                table.append((label, shape, raw, streaming, dp, http))
        small = overhead(gw)
    print_table(table, small)
    return 0


def print_table(table: list[Row], small: dict[str, float]) -> None:
    load = os.getloadavg()[0]
    print(f"\ndp-sandbox bench: group-by count + mean(income), epsilon {EPSILON}, median of {REPEATS}; "
          f"{os.cpu_count()} cores, load average {load:.1f}")
    columns = ("raw polars", "(streaming)", "engine", "gateway", "engine/raw")
    header = f"{'rows':>5}  {'group keys':<24}" + "".join(f"{c:>12}" for c in columns)
    print(header)
    print("-" * len(header))
    for label, shape, raw, streaming, dp, http in table:
        times = "".join(f"{ms:>10.0f}ms" for ms in (raw, streaming, dp, http))
        print(f"{label:>5}  {shape:<24}{times}{dp / raw:>11.2f}x")
    print("-" * len(header))
    print(f"gateway, 1,000 rows, public keys: p50 {small['p50']:.1f} ms, p95 {small['p95']:.1f} ms "
          f"({SMALL_QUERIES} sequential); {small['qps']:.0f} queries/s with {CLIENTS} clients; "
          f"peak RSS {small['rss']:.0f} MB")
    (OUT / "bench.json").write_text(json.dumps({"rows": table, "small": small, "load": load}))


if __name__ == "__main__":
    raise SystemExit(main())

"""``make bench`` (replicas): 1, 2 and 4 gateway processes on one PostgreSQL.

The replicas share one fresh PostgreSQL schema (``DPSANDBOX_BENCH_PG``, default the tests'
``postgresql+psycopg://postgres@127.0.0.1:5432/test``; dropped afterwards), the datasets'
directory and the secrets; each has a home of its own. On the 1,000-row dataset of
``bench/run.py`` (group-by count + mean, public keys, epsilon 0.1) 8 clients send queries,
each client spreading its requests over the replicas in turn (round-robin on the client
side, no proxy), and the run reports queries per second and p50/p95 latency for

- **uncached** queries: each one different (a filter that keeps every row, ``age >= -i``),
  so each is charged, computed by OpenDP and released;
- **cached** queries: one query, released once, then asked again and again: the answer
  comes from the release cache (no charge, no computation), so this measures the gateway
  and the store.

Every write (a charge, a release, an audit entry) takes the store's one lock, whichever
replica makes it; more replicas add computation and HTTP capacity, not write capacity. On
a machine with fewer cores than replicas they share the same CPUs. The numbers also land in
bench/out/replicas.json. ``--per-client 3 --replicas 1,2`` is a quick check that it runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import OUT, Gateway, body, make_data, run_clients, write_policy  # noqa: E402
from gateway.adapters.secrets import new_signing_key_pem  # noqa: E402

PG = os.environ.get("DPSANDBOX_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DATASET = "bench_small"
CLIENTS = 8


@contextmanager
def fresh_schema() -> Iterator[str]:
    schema = f"dps_bench_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(PG)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def shared_settings(root: Path, url: str) -> dict[str, str]:
    secrets = root / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "signing_key.pem").write_bytes(new_signing_key_pem())
    for name in ("hub_secret", "console_secret"):
        (secrets / name).write_text(uuid.uuid4().hex)
    return {"DPSANDBOX_DATABASE_URL": url, "DPSANDBOX_SECRETS_DIR": str(secrets),
            "DPSANDBOX_DATA_DIR": str(root / "data")}


def replica(root: Path, name: str, settings: dict[str, str]) -> Gateway:
    home = root / name
    home.mkdir()
    gw = Gateway(home)
    gw.env.update(settings)
    return gw


class Load:
    """8 clients, each sending its queries to the replicas in turn."""

    def __init__(self, replicas: list[Gateway], token: str, tags: Iterator[int]) -> None:
        self.urls = [gw.url for gw in replicas]
        self.headers = {"Authorization": f"Bearer {token}"}
        self.tags = tags  # shared by every run on the store: a new tag is never cached

    def run(self, per_client: int, *, cached: bool) -> dict[str, float]:
        tag = next(self.tags)
        if cached:  # released once here, then replayed from the cache by every replica
            with httpx.Client() as first:
                self.one(first, 0, tag=tag, cached=False)
        latencies: list[float] = []

        def client(offset: int) -> None:
            with httpx.Client(timeout=600) as own:
                for i in range(per_client):
                    latencies.append(self.one(own, offset + i, cached=cached,
                                              tag=tag if cached else next(self.tags)))

        wall = run_clients(client, CLIENTS)
        if len(latencies) != CLIENTS * per_client:
            raise SystemExit("a client failed; see the gateways' logs")
        latencies.sort()
        return {"qps": len(latencies) / wall, "p50": statistics.median(latencies),
                "p95": latencies[max(0, int(len(latencies) * 0.95) - 1)]}

    def one(self, client: httpx.Client, turn: int, *, tag: int, cached: bool) -> float:
        url = self.urls[turn % len(self.urls)]
        start = time.perf_counter()
        answer = client.post(f"{url}/v1/queries", json=body(DATASET, "region", tag),
                             headers=self.headers, timeout=600)
        elapsed = (time.perf_counter() - start) * 1000
        if answer.status_code != 200 or answer.json().get("status") != "released":
            raise SystemExit(f"query failed: {answer.status_code} {answer.text[:500]}")
        if answer.json()["cached"] is not cached:
            raise SystemExit(f"expected cached={cached}: {answer.text[:300]}")
        return elapsed


def measure(root: Path, count: int, settings: dict[str, str], per_client: int,
            tags: Iterator[int]) -> dict[str, Any]:
    replicas = [replica(root, f"r{count}-{i}", settings) for i in range(count)]
    try:
        run_clients(lambda i: replicas[i].start(), count)
        if any(not gw.token for gw in replicas):
            raise SystemExit("a replica did not start; see its gateway.log")
        load = Load(replicas, replicas[0].token, tags)
        load.run(2, cached=False)  # warm: connections, the engine's caches
        return {"replicas": count, "uncached": load.run(per_client, cached=False),
                "cached": load.run(per_client, cached=True)}
    finally:
        for gw in replicas:
            gw.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-client", type=int, default=50, help="queries per client (8 clients)")
    parser.add_argument("--replicas", default="1,2,4", help="replica counts to measure")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    data, policy = OUT / f"{DATASET}.parquet", write_policy(DATASET, 1_000, OUT)
    make_data(1_000, data, seed=1_000)
    root = Path(tempfile.mkdtemp(prefix="dpsandbox-bench-replicas-"))
    results = []
    try:
        with fresh_schema() as url:
            settings = shared_settings(root, url)
            admin = replica(root, "admin", settings)
            admin.setup({DATASET: data}, {DATASET: policy})
            tags = itertools.count(1)
            for count in (int(n) for n in args.replicas.split(",")):
                results.append(measure(root, count, settings, args.per_client, tags))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_table(results, args.per_client)
    return 0


def print_table(results: list[dict[str, Any]], per_client: int) -> None:
    load = os.getloadavg()[0]
    print(f"\ndp-sandbox bench, replicas on one PostgreSQL: {DATASET} (1,000 rows), group-by "
          f"count + mean, {CLIENTS} clients x {per_client} queries, round-robin; "
          f"{os.cpu_count()} cores, load average {load:.1f}")
    header = f"{'replicas':>8}  {'uncached q/s':>12} {'p50':>8} {'p95':>8}   " \
             f"{'cached q/s':>10} {'p50':>8} {'p95':>8}"
    print(header)
    print("-" * len(header))
    for row in results:
        u, c = row["uncached"], row["cached"]
        print(f"{row['replicas']:>8}  {u['qps']:>12.0f} {u['p50']:>6.1f}ms {u['p95']:>6.1f}ms   "
              f"{c['qps']:>10.0f} {c['p50']:>6.1f}ms {c['p95']:>6.1f}ms")
    (OUT / "replicas.json").write_text(json.dumps({"results": results, "load": load,
                                                   "per_client": per_client}))


if __name__ == "__main__":
    raise SystemExit(main())

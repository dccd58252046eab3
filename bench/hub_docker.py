"""``make bench``, third part: the notebook sandbox's targets under Docker isolation.

Targets (issue 9): an analyst's container is ready at most 3 s (median) after the spawn
request, the image build excluded; a DP query from a notebook cell comes back in at most
60 ms (p50).

The same procedure as ``bench/hub.py`` (whose helpers it uses): the real gateway with the
demo dataset ``exam``, the real hub with ``DPSANDBOX_ISOLATION=docker``, five researchers
spawned one after another, re-spawned after a stop, then 30 cells with one DP count each
in one kernel.  The image is built first if it is not there (untimed).  At the end no
container, network, home mount or nftables table of the run may be left.  Without root or
without a Docker engine it says so and exits 0.  Numbers also land in
bench/out/hub_docker.json.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import hub as common  # noqa: E402  (bench/hub.py)

from sandbox.hub.docker_network import network_names  # noqa: E402
from sandbox.hub.image import build_image  # noqa: E402
from sandbox.hub.modes import docker_engine_answers  # noqa: E402
from tests.e2e.docker_support import DOCKER_ENV, docker_client  # noqa: E402
from tests.e2e.hubclient import HubBrowser, KernelSession  # noqa: E402
from tests.e2e.support import PASSWORD, add_exam_dataset, run_directory, running_gateway, running_hub  # noqa: E402

OUT = ROOT / "bench" / "out"
SPAWN_TARGET_S = 3.0
QUERY_TARGET_MS = 60.0


def docker_leftovers(hub_state_dir: Path) -> list[str]:
    names = network_names(str(hub_state_dir))
    client = docker_client()
    found = [
        f"container {c.name}"
        for c in client.containers.list(all=True, filters={"name": names.container_prefix})
    ]
    found += [f"network {n.name}" for n in client.networks.list(names=[names.network])]
    if str(hub_state_dir / "docker-homes" / "mnt") in Path("/proc/mounts").read_text():
        found.append("a mounted home")
    if common.table_exists(names.table):
        found.append(f"nftables table inet {names.table}")
    return found


def measure() -> dict[str, Any]:
    tag = build_image()  # untimed; a no-op once built
    load_at_start = os.getloadavg()
    suffix = secrets.token_hex(2)
    keep = bool(os.environ.get("DPSANDBOX_BENCH_KEEP"))
    env = {**DOCKER_ENV, "DPSANDBOX_SANDBOX_MEM_LIMIT": "2G", "DPSANDBOX_SANDBOX_HOME_SIZE": "5G",
           "DPSANDBOX_SANDBOX_PIDS_LIMIT": "1024"}  # fmt: skip
    with run_directory("bench-docker-", keep=keep) as run_dir, running_gateway(run_dir) as gateway:
        add_exam_dataset(gateway, run_dir)
        names = [gateway.add_user(f"bdk{suffix}n{i}", "researcher") for i in range(common.ACCOUNTS)]
        with running_hub(gateway, run_dir, env=env) as hub:
            browsers = [HubBrowser(hub.url) for _ in names]
            try:
                for browser, name in zip(browsers, names, strict=True):
                    if browser.login(name, PASSWORD).status_code != 302:
                        raise SystemExit(f"login of {name} through the hub's form failed")
                first = [common.spawn_seconds(browser) for browser in browsers]
                again = []
                for browser in browsers:
                    browser.stop_server()
                    again.append(common.spawn_seconds(browser))
                kernel = KernelSession(hub.url, names[0], browsers[0].server_token())
                try:
                    kernel.execute(common.SETUP_CELL)
                    grant_ms = common.run_query(kernel, -3.5)
                    cells = [common.run_query(kernel, -3 + i / 100) for i in range(common.QUERIES)]
                    empty = [common.empty_cell_ms(kernel) for _ in range(common.QUERIES)]
                finally:
                    kernel.close()
                for browser in browsers:
                    browser.stop_server()
            finally:
                for browser in browsers:
                    browser.close()
        time.sleep(1)
        left = docker_leftovers(gateway.home / "hub")
    return {"image": tag, "first_spawn_s": first, "respawn_s": again, "first_query_ms": grant_ms,
            "query_ms": cells, "empty_cell_ms": empty, "load_at_start": load_at_start,
            "leftovers": left}  # fmt: skip


def print_table(raw: dict[str, Any]) -> None:
    first, again, cells = raw["first_spawn_s"], raw["respawn_s"], raw["query_ms"]
    p50, p95 = common.percentile(cells, 50), common.percentile(cells, 95)
    empty50, empty95 = (
        common.percentile(raw["empty_cell_ms"], 50),
        common.percentile(raw["empty_cell_ms"], 95),
    )
    rows = [
        (f"first spawn -> ready ({common.ACCOUNTS} analysts, new home)", statistics.median(first),
         max(first), "s", SPAWN_TARGET_S),
        (f"re-spawn after stop -> ready ({common.ACCOUNTS} analysts)", statistics.median(again),
         max(again), "s", SPAWN_TARGET_S),
        (f"cell with one DP count on exam ({common.QUERIES} cells)", p50, p95, "ms", QUERY_TARGET_MS),
        (f"empty cell, for comparison ({common.QUERIES} cells)", empty50, empty95, "ms", None),
    ]  # fmt: skip
    start, end = (", ".join(f"{x:.2f}" for x in load) for load in (raw["load_at_start"], os.getloadavg()))
    print(
        f"\ndp-sandbox bench: notebook sandboxes in Docker ({raw['image']}); {os.cpu_count()} cores, "
        f"load average {start} at start, {end} at end"
    )
    header = f"{'measurement':<52}{'median/p50':>12}{'max/p95':>12}{'target':>11}"
    print(header)
    print("-" * (len(header) + 8))
    for label, middle, high, unit, target in rows:
        fmt = (lambda v: f"{v:.2f} s") if unit == "s" else (lambda v: f"{v:.0f} ms")
        verdict = "" if target is None else "ok" if middle <= target else "MISSED"
        goal = "" if target is None else f"<= {target:g} {unit}"
        print(f"{label:<52}{fmt(middle):>12}{fmt(high):>12}{goal:>11}  {verdict}")
    print("-" * (len(header) + 8))
    print(f"first cell (grants access to exam): {raw['first_query_ms']:.0f} ms")


def main() -> int:
    why_not = docker_engine_answers()
    if why_not is not None:
        print(f"bench/hub_docker.py skipped: {why_not}")
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    raw = measure()
    print_table(raw)
    (OUT / "hub_docker.json").write_text(json.dumps(raw, indent=2) + "\n")
    if raw["leftovers"]:
        print("left behind after cleanup: " + "; ".join(raw["leftovers"]), file=sys.stderr)
        return 1
    print("cleanup: containers, network, home mounts and nftables table all gone")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

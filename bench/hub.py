"""``make bench``, second part: the notebook sandbox's two targets, measured for real.

Targets (issue 9): an analyst's server is ready at most 3 s (median) after the spawn
request; a DP query from a notebook cell on a demo dataset comes back within 60 ms (p50).

It starts the real gateway (``dpsandbox gateway``, fresh ``DPSANDBOX_HOME``) with the
demo dataset ``exam`` and a few researcher accounts, then the real hub with its real
configuration (one system user per analyst, bubblewrap with its own network namespace
and the hub's relay, seccomp, cgroups), using
the end-to-end tests' helpers (``tests/e2e/support.py``, ``tests/e2e/hubclient.py``):

- spawn: each researcher logs in through the hub's form; the time runs from the spawn
  request (``POST /hub/api/users/<name>/server``) until the hub reports the server
  ``ready`` (which it does once the server answers through the proxy). The first spawn
  also creates the analyst's system user; the re-spawn comes after a stop.
- query: in one kernel, ``connect()`` and ``gw.dataset('exam')`` run once, one query
  grants access to the open dataset (untimed), then a cell with one DP count (a different
  filter each time, so never served from the release cache) runs QUERIES times; the time
  is execute_request -> execute_reply on the kernel's websocket, as JupyterLab sees it.

Everything is removed at the end: servers, hub, gateway, the system users and their
homes; the script checks that no nftables table, cgroup or account of the run is left.
Needs root, bubblewrap and the sandbox environment (``make sandbox-env``); without root
it says so and exits 0. The numbers also land in bench/out/hub.json; with
DPSANDBOX_BENCH_KEEP=1 the gateway's and the hub's logs are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sandbox.hub.build_env import build_sandbox_env  # noqa: E402
from sandbox.hub.isolation import system_username  # noqa: E402
from tests.e2e.hubclient import HubBrowser, KernelSession  # noqa: E402
from tests.e2e.support import (  # noqa: E402
    PASSWORD,
    add_exam_dataset,
    processes_of,
    run_directory,
    running_gateway,
    running_hub,
    sandbox_host_missing,
    system_users_removed,
)

OUT = ROOT / "bench" / "out"
ACCOUNTS = 5
QUERIES = 30
EPSILON = 0.01
SPAWN_TARGET_S = 3.0
QUERY_TARGET_MS = 60.0
CGROUP_ROOT = Path("/sys/fs/cgroup")

SETUP_CELL = "from sandbox import connect\ngw = connect()\nds = gw.dataset('exam')"


def query_cell(threshold: float) -> str:
    return (
        f"df = ds.count(by=['sex'], where='normexam >= {threshold:.2f}', epsilon={EPSILON})\n"
        "print('RESULT', sorted(df['sex']), bool(df.attrs.get('cached')), df.attrs['epsilon_charged'])"
    )


def spawn_seconds(browser: HubBrowser) -> float:
    """Spawn request -> server ready (the hub's API call itself waits up to 10 s for it)."""
    start = time.perf_counter()
    browser.request_server()
    browser.wait_ready(interval=0.02)
    return time.perf_counter() - start


def run_query(kernel: KernelSession, threshold: float) -> float:
    """One notebook cell with one DP query; its round trip in milliseconds."""
    out = kernel.execute(query_cell(threshold))
    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), "")
    if not line.startswith("RESULT ['F', 'M'] False"):
        raise SystemExit(f"the cell's query was not released fresh: {out!r}")
    assert kernel.last_round_trip is not None
    return kernel.last_round_trip * 1000


def empty_cell_ms(kernel: KernelSession) -> float:
    """A cell that does nothing: the kernel's own round trip, for comparison."""
    kernel.execute("pass")
    assert kernel.last_round_trip is not None
    return kernel.last_round_trip * 1000


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return ordered[int(rank) - 1]


_STAMP = re.compile(r"^\[\w (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})")


def spawn_phases(hub_log: str, names: list[str]) -> list[dict[str, float]]:
    """Where each spawn's time went, from the hub's log (seconds; empty if not found).

    prep: the spawner's work before the server starts (account, token, cgroups, filter);
    server: the sandboxed Jupyter server starting until it serves;
    notice: until the hub's readiness check (exponential backoff) sees it answer.
    """
    phases = []
    for name in names:
        account = system_username(name)
        started = re.compile(rf"User {re.escape(name)} took ([\d.]+) seconds to start")
        marks: dict[str, datetime] = {}
        for line in hub_log.splitlines():
            stamp = _STAMP.match(line)
            if stamp is None:
                continue
            when = datetime.fromisoformat(stamp.group(1))
            if f"Spawning sandbox of {name} as " in line:
                marks = {"spawning": when}
            elif line.endswith(f"Serving notebooks from local directory: /home/{account}"):
                marks["serving"] = when
            elif (took := started.search(line)) and {"spawning", "serving"} <= marks.keys():
                server = (marks["serving"] - marks["spawning"]).total_seconds()
                notice = (when - marks["serving"]).total_seconds()
                prep = float(took.group(1)) - server - notice
                phases.append({"prep": prep, "server": server, "notice": notice})
                marks = {}
    return phases


def firewall_table(hub_state_dir: Path) -> str:
    """The nftables table of the hub with this state directory (as the spawner names it)."""
    return f"dpsandbox_{hashlib.sha256(str(hub_state_dir.absolute()).encode()).hexdigest()[:10]}"


def table_exists(table: str) -> bool:
    nft = shutil.which("nft")
    if nft is None:
        return False
    listed = subprocess.run([nft, "list", "table", "inet", table], capture_output=True, check=False)
    return listed.returncode == 0


def leftovers(names: list[str], table: str) -> list[str]:
    """What the run left behind: accounts, homes, processes, cgroups, its nftables table."""
    found = []
    for name in names:
        account = system_username(name)
        try:
            entry = pwd.getpwnam(account)
        except KeyError:
            pass
        else:
            found.append(f"system user {account}")
            if processes_of(entry.pw_uid):
                found.append(f"processes of {account}")
        for controller in ("memory", "cpu", "pids"):
            group = CGROUP_ROOT / controller / "dpsandbox" / account
            if group.exists():
                found.append(f"cgroup {group}")
        home = Path("/home") / account
        if home.exists():
            found.append(f"home {home}")
    if table_exists(table):
        found.append(f"nftables table inet {table}")
    return found


def measure() -> dict[str, Any]:
    build_sandbox_env()  # up to date after `make sandbox-env`: about 0.1 s
    load_at_start = os.getloadavg()
    suffix = secrets.token_hex(2)
    names: list[str] = []
    result: dict[str, Any] = {}
    table = ""
    keep = bool(os.environ.get("DPSANDBOX_BENCH_KEEP"))  # the logs, to look into a run
    with run_directory("bench-", keep=keep) as run_dir, running_gateway(run_dir) as gateway:
        add_exam_dataset(gateway, run_dir)
        table = firewall_table(gateway.home / "hub")
        names = [gateway.add_user(f"bench{suffix}n{i}", "researcher") for i in range(ACCOUNTS)]
        with system_users_removed(names), running_hub(gateway, run_dir) as hub:
            browsers = [HubBrowser(hub.url) for _ in names]
            try:
                for browser, name in zip(browsers, names, strict=True):
                    if browser.login(name, PASSWORD).status_code != 302:
                        raise SystemExit(f"login of {name} through the hub's form failed")
                # One after the other; the earlier servers keep running meanwhile.
                first = [spawn_seconds(browser) for browser in browsers]
                again = []
                for browser in browsers:
                    browser.stop_server()
                    again.append(spawn_seconds(browser))

                kernel = KernelSession(hub.url, names[0], browsers[0].server_token())
                try:
                    kernel.execute(SETUP_CELL)
                    grant_ms = run_query(kernel, -3.5)  # the open dataset grants itself here
                    cells = [run_query(kernel, -3 + i / 100) for i in range(QUERIES)]
                    empty = [empty_cell_ms(kernel) for _ in range(QUERIES)]
                finally:
                    kernel.close()
                for browser in browsers:
                    browser.stop_server()
                phases = spawn_phases(hub.log(), names)
            finally:
                for browser in browsers:
                    browser.close()
        result = {"first_spawn_s": first, "respawn_s": again, "spawn_phases_s": phases,
                  "first_query_ms": grant_ms, "query_ms": cells, "empty_cell_ms": empty,
                  "load_at_start": load_at_start}  # fmt: skip
    result["leftovers"] = leftovers(names, table)
    return result


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    first, again, cells = raw["first_spawn_s"], raw["respawn_s"], raw["query_ms"]
    return {
        "accounts": ACCOUNTS,
        "queries": QUERIES,
        "epsilon": EPSILON,
        "first_spawn": {"median_s": statistics.median(first), "max_s": max(first)},
        "respawn": {"median_s": statistics.median(again), "max_s": max(again)},
        "spawn_phases_median_s": {
            key: statistics.median(p[key] for p in raw["spawn_phases_s"])
            for key in ("prep", "server", "notice")
        } if raw["spawn_phases_s"] else {},
        "query": {
            "p50_ms": percentile(cells, 50),
            "p95_ms": percentile(cells, 95),
            "max_ms": max(cells),
            "first_with_grant_ms": raw["first_query_ms"],
        },
        "empty_cell": {
            "p50_ms": percentile(raw["empty_cell_ms"], 50),
            "p95_ms": percentile(raw["empty_cell_ms"], 95),
        },
        "targets": {"spawn_median_s": SPAWN_TARGET_S, "query_ms": QUERY_TARGET_MS},
        "cores": os.cpu_count(),
        "load_at_start": raw["load_at_start"],
        "load_at_end": os.getloadavg(),
        "raw": raw,
    }


def print_table(summary: dict[str, Any]) -> None:
    first, again, query = summary["first_spawn"], summary["respawn"], summary["query"]
    rows = [
        (f"first spawn -> ready ({ACCOUNTS} analysts, creates user)",
         f"{first['median_s']:.2f} s", f"{first['max_s']:.2f} s", "<= 3 s",
         first["median_s"] <= SPAWN_TARGET_S),
        (f"re-spawn after stop -> ready ({ACCOUNTS} analysts)",
         f"{again['median_s']:.2f} s", f"{again['max_s']:.2f} s", "<= 3 s",
         again["median_s"] <= SPAWN_TARGET_S),
        (f"cell with one DP count on exam ({QUERIES} cells)",
         f"{query['p50_ms']:.0f} ms", f"{query['p95_ms']:.0f} ms", "<= 60 ms",
         query["p50_ms"] <= QUERY_TARGET_MS),
        (f"empty cell, for comparison ({QUERIES} cells)",
         f"{summary['empty_cell']['p50_ms']:.0f} ms", f"{summary['empty_cell']['p95_ms']:.0f} ms", "", None),
    ]  # fmt: skip
    start, end = (", ".join(f"{x:.2f}" for x in summary[k]) for k in ("load_at_start", "load_at_end"))
    print(f"\ndp-sandbox bench: notebook sandboxes (real hub, bubblewrap, per-analyst users); "
          f"{summary['cores']} cores, load average {start} at start, {end} at end")
    header = f"{'measurement':<48}{'median/p50':>12}{'max/p95':>12}{'target':>11}"
    print(header)
    print("-" * (len(header) + 8))
    for label, middle, high, target, ok in rows:
        verdict = "" if ok is None else "ok" if ok else "MISSED"
        print(f"{label:<48}{middle:>12}{high:>12}{target:>11}  {verdict}")
    print("-" * (len(header) + 8))
    phases = summary["spawn_phases_median_s"]
    if phases:
        print(f"spawn, median of {len(summary['raw']['spawn_phases_s'])} from the hub's log: "
              f"spawner prep {phases['prep']:.2f} s, Jupyter server start {phases['server']:.2f} s, "
              f"until the hub's readiness check sees it {phases['notice']:.2f} s")
    print(f"spawn: max over analysts; cell: p50 and p95 of execute_request -> execute_reply, "
          f"epsilon {EPSILON} each;\nfirst cell (grants access to exam): "
          f"{query['first_with_grant_ms']:.0f} ms")


def main() -> int:
    if os.geteuid() != 0:
        print("bench/hub.py skipped: spawning sandboxes creates system users, run it as root")
        return 0
    missing = sandbox_host_missing()
    if missing:
        raise SystemExit("bench/hub.py needs: " + "; ".join(missing))
    OUT.mkdir(parents=True, exist_ok=True)
    summary = summarize(measure())
    print_table(summary)
    (OUT / "hub.json").write_text(json.dumps(summary, indent=2) + "\n")
    left = summary["raw"]["leftovers"]
    if left:
        print("left behind after cleanup: " + "; ".join(left), file=sys.stderr)
        return 1
    print("cleanup: servers, hub, gateway, system users, cgroups and nftables table all gone")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The console's audit page on a long log: how long one load takes.

Builds a store (SQLite in a temporary home, or ``--database-url``) whose audit log holds
``--entries`` hash-chained entries (synthetic ``catalog.list`` entries, linked exactly as
the gateway links them), signs an auditor in through the console's own login form and
loads /console/audit ``--rounds`` times through the app (Starlette's test client, no
network), then asks for the verification of the entire chain once (when the console has
that action). Prints the first load, the best and the median of the later ones.

    .venv/bin/python bench/audit_page.py --entries 100000
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from gateway.adapters.db import tables as t  # noqa: E402
from gateway.app import create_app  # noqa: E402
from gateway.bootstrap import bootstrap  # noqa: E402
from gateway.domain.audit import GENESIS, canonical_json, entry_hash  # noqa: E402
from gateway.services.common import Principal  # noqa: E402
from gateway.settings import Settings  # noqa: E402

PASSWORD = "correct-horse-battery"
BATCH = 5_000


def fill(services: object, entries: int) -> None:
    """Append synthetic entries after the log's head until it holds ``entries``."""
    store = services.store  # type: ignore[attr-defined]
    with store.reading() as tx:
        head = tx.audit.head()
    seq, prev = head if head else (0, GENESIS)
    while seq < entries:
        batch = []
        for _ in range(min(BATCH, entries - seq)):
            seq += 1
            entry = {"seq": seq, "at": "2026-01-01T00:00:00+00:00", "actor": "rita",
                     "role": "researcher", "action": "catalog.list", "dataset": None,
                     "request_id": None, "grant_id": None, "query_id": None, "epsilon": None,
                     "delta": None, "outcome": "ok", "detail": canonical_json({"n": seq}),
                     "prev_hash": prev}
            entry["hash"] = prev = entry_hash(entry)
            batch.append(entry)
        with store.write() as conn:
            conn.execute(insert(t.audit), batch)


def signed_in(client: TestClient, username: str) -> None:
    page = client.get("/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    done = client.post("/console/login", follow_redirects=False, data={
        "username": username, "password": PASSWORD, "csrf_token": token.group(1)})
    assert done.status_code == 303, done.text


def timed(client: TestClient, method: str, path: str, **kw: object) -> tuple[float, int]:
    start = time.perf_counter()
    response = client.request(method, path, **kw)  # type: ignore[arg-type]
    return time.perf_counter() - start, response.status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        services = bootstrap(Settings(home=Path(home), database_url=args.database_url))
        services.users.create(Principal("cli:bench", "admin"), username="audrey",
                              role="auditor", password=PASSWORD)
        fill(services, args.entries)
        with TestClient(create_app(services=services)) as client:
            signed_in(client, "audrey")
            first, status = timed(client, "GET", "/console/audit")
            assert status == 200, status
            later = [timed(client, "GET", "/console/audit")[0] for _ in range(args.rounds)]
            print(f"audit page, {args.entries:,} entries ({services.store.engine.dialect.name}):"
                  f" first load {first * 1000:.0f} ms; next {args.rounds}: best"
                  f" {min(later) * 1000:.0f} ms, median {statistics.median(later) * 1000:.0f} ms")
            page = client.get("/console/audit").text
            token = re.search(r'name="csrf_token" value="([^"]+)"', page)
            if token and "/console/audit/verify" in page:
                took, status = timed(client, "POST", "/console/audit/verify",
                                     data={"csrf_token": token.group(1)}, follow_redirects=False)
                print(f"verify the entire chain: {took * 1000:.0f} ms (status {status})")
        services.store.dispose()


if __name__ == "__main__":
    main()

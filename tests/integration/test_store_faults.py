"""A full disk (a small tmpfs as DPSANDBOX_HOME, root only) and a read-only store
(PostgreSQL sessions made read-only under a live gateway), for real.

While the fault lasts the gateway answers 503 ``unavailable`` with ``Retry-After`` and a
clear message, ``/readyz`` names the fault, and nothing is released; once it is cleared the
same gateway serves again, and every charge has its one release or audited error.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.bootstrap import Services
from tests.conftest import ADMIN, PASSWORD, PG_BASE, make_services
from tests.gateway_process import GatewayProcess

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root"),
    pytest.mark.xdist_group("crash"),
]
QUERY = {"dataset": "exam", "select": [{"agg": "count"}], "epsilon": 0.05}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", str(mount)],
                   check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def gateway(small_disk: Path, demo_files: dict[str, Path]) -> Iterator[tuple[GatewayProcess,
                                                                              Services]]:
    svc = make_services(small_disk, demo_files, datasets=("exam",))
    svc.ledger.give(ADMIN, user="rita", org=None, dataset="exam", epsilon=4.0, delta=None,
                    days=None)
    process = GatewayProcess(small_disk, None).start()
    try:
        yield process, svc
    finally:
        process.stop()
        svc.store.dispose()


def _query(process: GatewayProcess, headers: dict[str, str], i: int) -> httpx.Response:
    body = {**QUERY, "where": [{"column": "normexam", "op": ">=", "value": -3 + i / 1000}]}
    return httpx.post(f"{process.url}/v1/queries", json=body, headers=headers, timeout=60)


def _assert_unavailable(resp: httpx.Response) -> None:
    assert resp.status_code == 503, resp.text
    error = resp.json()["error"]
    assert error["code"] == "unavailable" and "unavailable" in error["message"], error
    assert int(resp.headers["Retry-After"]) > 0


def _released(svc: Services) -> int:
    return len(svc.queries.list(ADMIN, status="released", limit=1000))


def _fill(disk: Path) -> Path:
    """Fill the disk to the last byte."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def _assert_consistent(svc: Services) -> None:
    queries = svc.queries.list(ADMIN, limit=1000)
    assert all(q["status"] in ("released", "error") for q in queries), queries
    assert svc.audit.verify().ok


def test_disk_full_answers_503_releases_nothing_and_recovers(
        gateway: tuple[GatewayProcess, Services], small_disk: Path) -> None:
    process, svc = gateway
    headers = {"Authorization": f"Bearer {process.token('rita', PASSWORD)}"}
    assert _query(process, headers, 0).status_code == 200
    released = _released(svc)

    filler = _fill(small_disk)
    outcomes: list[Any] = [_query(process, headers, i) for i in range(1, 6)]
    for resp in outcomes:
        _assert_unavailable(resp)
    _assert_unavailable(httpx.post(f"{process.url}/v1/auth/token", timeout=30,
                                   json={"username": "ron", "password": PASSWORD}))
    ready = httpx.get(f"{process.url}/readyz", timeout=30)
    assert ready.status_code == 503 and "full" in ready.json()["error"]["message"]
    assert _released(svc) == released

    filler.unlink()
    assert httpx.get(f"{process.url}/readyz", timeout=30).status_code == 200
    resp = _query(process, headers, 7)
    assert resp.status_code == 200, resp.text
    assert _released(svc) == released + 1
    _assert_consistent(svc)


@pytest.fixture
def pg_role(pg_url: str) -> Iterator[tuple[str, str]]:
    """A PostgreSQL role and schema of its own: the gateway's store, to be made read-only."""
    import sqlalchemy as sa

    name = f"dps_ro_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_BASE, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE {name} LOGIN"))
        conn.execute(sa.text(f'CREATE SCHEMA "{name}" AUTHORIZATION {name}'))
    host = PG_BASE.split("@", 1)[1]
    try:
        yield name, f"postgresql+psycopg://{name}@{host}?options=-csearch_path%3D{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE usename = :n"), {"n": name})
            conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
            conn.execute(sa.text(f"DROP ROLE {name}"))
        admin.dispose()


def _read_only(role: str, on: bool) -> None:
    """Make the role's sessions read-only (or not), and end its current ones."""
    import sqlalchemy as sa

    admin = sa.create_engine(PG_BASE, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"ALTER ROLE {role} SET default_transaction_read_only = "
                             f"{'on' if on else 'off'}"))
        conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE usename = :n"), {"n": role})
    admin.dispose()


def test_read_only_store_answers_503_releases_nothing_and_recovers(
        tmp_path: Path, pg_role: tuple[str, str], demo_files: dict[str, Path]) -> None:
    role, url = pg_role
    svc = make_services(tmp_path, demo_files, db_url=url, datasets=("exam",))
    svc.ledger.give(ADMIN, user="rita", org=None, dataset="exam", epsilon=4.0, delta=None,
                    days=None)
    process = GatewayProcess(tmp_path, url).start()
    try:
        headers = {"Authorization": f"Bearer {process.token('rita', PASSWORD)}"}
        assert _query(process, headers, 0).status_code == 200
        released = _released(svc)
        _read_only(role, True)
        try:
            for i in range(1, 4):
                _assert_unavailable(_query(process, headers, i))
            ready = httpx.get(f"{process.url}/readyz", timeout=30)
            assert ready.status_code == 503 and "no writes" in ready.json()["error"]["message"]
        finally:
            _read_only(role, False)
        assert _released(svc) == released
        resp = _query(process, headers, 5)
        assert resp.status_code == 200, resp.text
        assert _released(svc) == released + 1
        _assert_consistent(svc)
    finally:
        process.stop()
        svc.store.dispose()

"""Recovery of orphaned queries, step by step (SQLite and PostgreSQL).

An orphan is made as a crash leaves it: admitted (charged, audited, ``running``) by a
process that then stops beating. The crash itself, with a real SIGKILL, is in
test_crash_recovery.py.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

from gateway.bootstrap import Services
from gateway.domain.query import Aggregate, Filter, QuerySpec
from gateway.services.audit import AuditFilter
from gateway.services.common import Principal
from gateway.services.queries import QueryRequest
from gateway.services.recovery import Instance, Recovery
from tests.conftest import ADMIN, make_services

RITA = Principal("rita", "researcher")


def orphan(svc: Services, i: int) -> str:
    """A query charged by a process that died before computing it."""
    spec = QuerySpec(dataset="exam", select=(Aggregate("count"),),
                     where=(Filter("normexam", ">=", -3 + i / 100),))
    prepared = svc.queries.prepare(QueryRequest(spec=spec, epsilon=0.1))
    admitted = svc.queries.releases.admit(RITA, prepared.ticket, review=False)
    svc.queries.releases.done(admitted.record.id)  # ... and the process is gone
    with svc.store.writing() as tx:
        tx.queries.claim(admitted.record.id, runner_was=admitted.record.runner,
                         runner="dead-process")
    return admitted.record.id


def replica(svc: Services) -> Recovery:
    """Another gateway process on the same store."""
    assert svc.recovery is not None
    other = Recovery(svc.store, Instance(), stale_seconds=0.0, in_flight=lambda _: False)
    other._recompute = svc.recovery._recompute
    return other


def releases_of(svc: Services, query_id: str) -> list[dict[str, object]]:
    return svc.audit.page(AuditFilter(action="query.release", query_id=query_id),
                          page=1, size=50)[0]


def test_an_orphan_is_released_once_with_fresh_noise(tmp_path: Path, store_url: str,
                                                      demo_files: dict[str, Path]) -> None:
    svc = make_services(tmp_path, demo_files, db_url=store_url, datasets=("exam",))
    svc.ledger.give(ADMIN, user="rita", org=None, dataset="exam", epsilon=1.0, delta=None,
                    days=None)
    query_id = orphan(svc, 0)
    spent = svc.ledger.list(ADMIN)[0]["epsilon_spent"]

    round_ = replica(svc).run_once()
    assert (round_.found, round_.released) == (1, 1)
    view = svc.queries.get(RITA, query_id)
    assert view["status"] == "released" and view["recovered"] and view["rows"]
    (release,) = releases_of(svc, query_id)
    assert release["outcome"] == "ok" and release["detail"]["recovered"] is True
    assert svc.ledger.list(ADMIN)[0]["epsilon_spent"] == spent  # the one charge covers it
    assert replica(svc).run_once().found == 0  # nothing left
    assert svc.audit.verify().ok
    svc.store.dispose()


def test_changed_data_marks_the_orphan_error_and_the_charge_stands(
        tmp_path: Path, store_url: str, demo_files: dict[str, Path]) -> None:
    svc = make_services(tmp_path, demo_files, db_url=store_url, datasets=("exam",))
    svc.ledger.give(ADMIN, user="rita", org=None, dataset="exam", epsilon=1.0, delta=None,
                    days=None)
    query_id = orphan(svc, 0)
    _register_changed(svc, demo_files["exam"], tmp_path / "exam-fewer.csv")

    round_ = replica(svc).run_once()
    assert (round_.found, round_.failed) == (1, 1)
    view = svc.queries.get(RITA, query_id)
    assert view["status"] == "error" and view["recovered"]
    assert "changed since the charge" in view["error"] and "charge stands" in view["error"]
    (entry,) = releases_of(svc, query_id)
    assert entry["outcome"] == "error" and "changed" in entry["detail"]["reason"]
    assert svc.ledger.list(ADMIN)[0]["epsilon_spent"] == 0.1
    assert svc.audit.verify().ok
    svc.store.dispose()


def _register_changed(svc: Services, original: Path, target: Path) -> None:
    """The same dataset registered again with one row fewer (a new version)."""
    import polars as pl

    frame = pl.read_parquet(original) if original.suffix == ".parquet" else pl.read_csv(original)
    frame.head(frame.height - 1).write_csv(target)
    svc.catalog.register(ADMIN, name="exam", data=target)


def test_two_replicas_never_finish_the_same_orphan(tmp_path: Path, store_url: str,
                                                   demo_files: dict[str, Path]) -> None:
    svc = make_services(tmp_path, demo_files, db_url=store_url, datasets=("exam",))
    svc.ledger.give(ADMIN, user="rita", org=None, dataset="exam", epsilon=4.0, delta=None,
                    days=None)
    orphans = {orphan(svc, i) for i in range(12)}
    replicas = [replica(svc) for _ in range(3)]
    start = threading.Barrier(len(replicas))
    rounds = []

    def recover(r: Recovery) -> None:
        start.wait()
        rounds.append(r.run_once())

    threads = [threading.Thread(target=recover, args=(r,)) for r in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.released for r in rounds) == len(orphans)
    finished = Counter(e["query_id"] for e in svc.audit.page(
        AuditFilter(action="query.release"), page=1, size=500)[0])
    assert set(finished) == orphans and set(finished.values()) == {1}
    assert svc.audit.verify().ok
    svc.store.dispose()


def test_an_orphaned_synthetic_release_is_recovered_too(tmp_path: Path, store_url: str,
                                                         demo_files: dict[str, Path]) -> None:
    """Fits (synthetic data, models) go through the same unit of work and the same recovery."""
    from gateway.services.fits import FitRequest

    svc = make_services(tmp_path, demo_files, db_url=store_url, datasets=("exam",))
    svc.ledger.give(ADMIN, user="rita", org=None, dataset="exam", epsilon=2.0, delta=None,
                    days=None)
    body = {"dataset": "exam", "columns": ["schgend", "sex"], "rows": 50}
    prepared = svc.fits.prepare(FitRequest("synthetic", body, 0.5))
    admitted = svc.fits.releases.admit(RITA, prepared.ticket, review=False)
    svc.fits.releases.done(admitted.record.id)
    with svc.store.writing() as tx:
        tx.queries.claim(admitted.record.id, runner_was=admitted.record.runner,
                         runner="dead-process")
    round_ = replica(svc).run_once()
    assert (round_.found, round_.released) == (1, 1)
    view = svc.queries.get(RITA, admitted.record.id)
    assert view["status"] == "released" and view["recovered"] and len(view["rows"]) == 50
    assert svc.audit.verify().ok
    svc.store.dispose()


def test_an_orphan_whose_recovery_broke_is_tried_again(tmp_path: Path, store_url: str,
                                                        demo_files: dict[str, Path]) -> None:
    """A recompute that fails outside the audited paths (here a bug in prepare) leaves the
    query to a later round of this very process, not "in flight" for ever."""
    svc = make_services(tmp_path, demo_files, db_url=store_url, datasets=("exam",))
    svc.ledger.give(ADMIN, user="rita", org=None, dataset="exam", epsilon=1.0, delta=None,
                    days=None)
    query_id = orphan(svc, 0)
    prepare = svc.queries.prepare

    def broken(_request: QueryRequest) -> None:
        raise RuntimeError("a bug")

    svc.queries.prepare = broken  # type: ignore[method-assign,assignment]
    first = replica(svc).run_once()  # the bug is logged, the round goes on
    svc.queries.prepare = prepare  # type: ignore[method-assign]
    assert (first.found, first.skipped) == (1, 1)
    assert not svc.queries.releases.computing(query_id)
    assert replica(svc).run_once().released == 1
    assert svc.queries.get(RITA, query_id)["status"] == "released"
    svc.store.dispose()

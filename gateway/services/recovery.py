"""Finishing what a crash left half done: queries charged but never released.

Every gateway process has an id (:class:`Instance`) and beats in the store
(``gateway_instances``) every ``heartbeat_seconds``; a running query records the process
computing it (``queries.runner``). A query is an **orphan** when it is ``running`` and its
runner has been silent for ``instance_stale_seconds`` (a SIGKILL, a lost machine, a replica
scaled away), or it has none. At start-up, and every ``recovery_interval_seconds``, each
process:

1. **claims** an orphan: one write transaction moves ``runner`` from the silent process to
   itself, only if it is still the silent one (compare and set), so two replicas never
   finish the same orphan; a claimant that dies in turn leaves it to the next round;
2. **recomputes** it under its existing charge, with fresh OpenDP noise, and releases it
   through the same finish step as any query (``running -> released`` happens once);
3. or, when the dataset's data or policy, or the grant, changed since the charge, marks
   it ``error`` with the reason. The charge stands, as for any failure after a charge:
   data may have been read (README, Notes).

Both outcomes are audited (``query.release`` with ``recovered: true`` in the detail) and
visible through ``GET /v1/queries/{id}`` (``recovered: true``). Other kinds of release
(synthetic data, models) register their own recompute step with :meth:`Recovery.register`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from gateway.adapters.db import Store
from gateway.domain.errors import DomainError
from gateway.domain.records import QueryRecord
from gateway.services.common import iso, new_id, now

log = logging.getLogger(__name__)
FORGET_AFTER = timedelta(days=1)
Recompute = Callable[[QueryRecord], str]  # returns "released" or "error"


@dataclass(frozen=True)
class Instance:
    """This gateway process, as its peers see it in the store."""

    id: str = field(default_factory=new_id)
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: str = field(default_factory=lambda: iso(now()))


@dataclass(frozen=True)
class RecoveryRound:
    found: int = 0
    released: int = 0
    failed: int = 0
    skipped: int = 0  # claimed by another process first


class Recovery:
    def __init__(self, store: Store, instance: Instance, *, stale_seconds: float,
                 in_flight: Callable[[str], bool]) -> None:
        self.store, self.instance = store, instance
        self.stale = timedelta(seconds=stale_seconds)
        self.in_flight = in_flight  # is this process computing that query right now?
        self._recompute: dict[str, Recompute] = {}
        self._round = threading.Lock()

    def register(self, kind: str, recompute: Recompute) -> None:
        """How to recompute an orphan of ``kind`` (``QueryRecord.kind``) under its charge."""
        self._recompute[kind] = recompute

    def beat(self) -> None:
        moment = now()
        with self.store.writing() as tx:
            tx.instances.beat(self.instance.id, host=self.instance.host, pid=self.instance.pid,
                              started_at=self.instance.started_at, at=iso(moment))
            tx.instances.forget(before=iso(moment - FORGET_AFTER))

    def leave(self) -> None:
        with self.store.writing() as tx:
            tx.instances.leave(self.instance.id)

    def orphans(self) -> list[QueryRecord]:
        """Running queries whose runner is silent, or is this process but not computing
        them any more (its store failed at the release: they wait for a later round)."""
        cutoff = iso(now() - self.stale)
        with self.store.reading() as tx:
            live = tx.instances.live(since=cutoff) | {self.instance.id}
            silent = tx.queries.running_without(live=live, charged_before=cutoff)
            mine = tx.queries.running_by(self.instance.id)
        return [*silent, *(r for r in mine if not self.in_flight(r.id))]

    def run_once(self) -> RecoveryRound:
        """One round: claim and finish every orphan found now (one round at a time here)."""
        with self._round:
            return self._run_once()

    def _run_once(self) -> RecoveryRound:
        orphans = self.orphans()
        released = failed = skipped = 0
        for record in orphans:
            with self.store.writing() as tx:
                claimed = tx.queries.claim(record.id, runner_was=record.runner,
                                           runner=self.instance.id)
            if not claimed:
                skipped += 1
                continue
            recompute = self._recompute.get(record.kind)
            if recompute is None:
                log.error("no recovery for query %s of kind %s", record.id, record.kind)
                skipped += 1
                continue
            try:
                outcome = recompute(record)
            except Exception:  # one bad orphan must not stop the others behind it
                log.exception("recovering query %s failed; a later round tries again",
                              record.id)
                skipped += 1
                continue
            released += outcome == "released"
            failed += outcome == "error"
        if orphans:
            log.warning("recovery: %d orphaned queries, %d released, %d marked error, %d left",
                        len(orphans), released, failed, skipped)
        return RecoveryRound(len(orphans), released, failed, skipped)


class RecoveryLoop:
    """A daemon thread: a heartbeat every ``heartbeat`` seconds, a recovery round at start
    and every ``interval`` seconds. Store failures are logged and retried next time."""

    def __init__(self, recovery: Recovery, *, heartbeat: float, interval: float) -> None:
        self.recovery, self.heartbeat, self.interval = recovery, heartbeat, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dpsandbox-recovery",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        try:
            self.recovery.leave()
        except DomainError:
            log.warning("could not unregister this gateway from the store")

    def _run(self) -> None:
        next_round = 0.0
        clock = 0.0
        while not self._stop.is_set():
            try:
                self.recovery.beat()
                if clock >= next_round:
                    self.recovery.run_once()
                    next_round = clock + self.interval
            except Exception:  # the loop must outlive a bad moment of the store
                log.exception("recovery round failed; trying again later")
            self._stop.wait(self.heartbeat)
            clock += self.heartbeat

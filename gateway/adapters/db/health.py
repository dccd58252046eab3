"""The store's state for readiness probes: reachable, migrations current, writable.

A probe never writes: writability is read from what the store itself reports (the
filesystem under a SQLite file: read-only mount, free space; PostgreSQL: a standby, or
``default_transaction_read_only``). Every failure becomes a plain ``problem`` sentence.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from gateway.adapters.db.store import MIGRATIONS, Store
from gateway.i18n import Text, _l

MIN_FREE_BYTES = 1 << 20  # below this a SQLite write (journal, WAL) is likely to fail


@dataclass(frozen=True)
class StoreState:
    backend: str
    reachable: bool
    revision: str | None = None
    head: str | None = None
    writable: bool | None = None
    disk_free_bytes: int | None = None
    problem: Text | None = None  # shown in the reader's language

    @property
    def ready(self) -> bool:
        return self.problem is None

    def to_json(self) -> dict[str, object]:
        problem = None if self.problem is None else str(self.problem)
        return {**asdict(self), "problem": problem, "ready": self.ready}


@lru_cache(maxsize=1)
def migration_head() -> str | None:
    """The newest revision among the migration scripts this process ships."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def _sqlite_disk(store: Store) -> tuple[bool, int, Text | None]:
    database = make_url(store.url).database or ""
    folder = Path(database).resolve().parent
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    if stat.f_flag & os.ST_RDONLY:
        return False, free, _l("the store's filesystem (%(folder)s) is mounted read-only",
                               folder=str(folder))
    if free < MIN_FREE_BYTES:
        return False, free, _l("the store's disk (%(folder)s) is full: %(free)s bytes free",
                               folder=str(folder), free=free)
    return True, free, None


def store_state(store: Store) -> StoreState:
    backend = "sqlite" if store.is_sqlite else "postgresql"
    head = migration_head()
    try:
        with store.engine.connect() as conn:
            from alembic.runtime.migration import MigrationContext

            revision = MigrationContext.configure(conn).get_current_revision()
            read_only = False
            if not store.is_sqlite:
                read_only = bool(conn.execute(text(
                    "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'"
                )).scalar())
            conn.rollback()
    except (SQLAlchemyError, OSError) as exc:
        return StoreState(backend, reachable=False, head=head,
                          problem=_l("the store is unreachable (%(error)s)",
                                     error=type(exc).__name__))
    state = StoreState(backend, reachable=True, revision=revision, head=head,
                       writable=not read_only)
    if store.is_sqlite:
        writable, free, problem = _sqlite_disk(store)
        state = StoreState(backend, True, revision, head, writable, free, problem)
    elif read_only:
        state = StoreState(backend, True, revision, head, False,
                           problem=_l("the store accepts no writes (read-only or a standby)"))
    if state.problem is None and revision != head:
        return StoreState(backend, True, revision, head, state.writable, state.disk_free_bytes,
                          problem=_l("migrations are not current: the store is at "
                                     "%(revision)s, this gateway needs %(head)s",
                                     revision=str(revision), head=str(head)))
    return state

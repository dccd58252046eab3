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

MIN_FREE_BYTES = 1 << 20  # below this a SQLite write (journal, WAL) is likely to fail


@dataclass(frozen=True)
class StoreState:
    backend: str
    reachable: bool
    revision: str | None = None
    head: str | None = None
    writable: bool | None = None
    disk_free_bytes: int | None = None
    problem: str | None = None

    @property
    def ready(self) -> bool:
        return self.problem is None

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "ready": self.ready}


@lru_cache(maxsize=1)
def migration_head() -> str | None:
    """The newest revision among the migration scripts this process ships."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def _sqlite_disk(store: Store) -> tuple[bool, int, str | None]:
    database = make_url(store.url).database or ""
    folder = Path(database).resolve().parent
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    if stat.f_flag & os.ST_RDONLY:
        return False, free, f"the store's filesystem ({folder}) is mounted read-only"
    if free < MIN_FREE_BYTES:
        return False, free, f"the store's disk ({folder}) is full: {free} bytes free"
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
                          problem=f"the store is unreachable ({type(exc).__name__})")
    state = StoreState(backend, reachable=True, revision=revision, head=head,
                       writable=not read_only)
    if store.is_sqlite:
        writable, free, problem = _sqlite_disk(store)
        state = StoreState(backend, True, revision, head, writable, free, problem)
    elif read_only:
        state = StoreState(backend, True, revision, head, False,
                           problem="the store accepts no writes (read-only or a standby)")
    if state.problem is None and revision != head:
        return StoreState(backend, True, revision, head, state.writable, state.disk_free_bytes,
                          problem=f"migrations are not current: the store is at {revision}, "
                                  f"this gateway needs {head}")
    return state

"""The store: SQLAlchemy engine, serialised write transactions, migrations.

SQLite (embedded default) runs in WAL mode and takes ``BEGIN IMMEDIATE`` for every
write transaction; PostgreSQL takes a transaction-scoped advisory lock. Either way
write transactions (budget charges and audit appends) are serialised, which keeps the
audit chain linear and every check-then-charge race-free.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import QueuePool

from gateway.domain.errors import InternalError

log = logging.getLogger(__name__)
WRITE_LOCK_KEY = 735_210_001
MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


class StoreUnavailable(InternalError):
    """The database refused or failed a transaction; nothing was released."""


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(
        url,
        connect_args={"timeout": 30, "check_same_thread": False},
        poolclass=QueuePool,
        pool_size=8,
        max_overflow=8,
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.info.pop("write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = _sqlite_engine(url)
        else:
            self.engine = create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A serialised read-write transaction; commits on success, rolls back on error."""
        with self.engine.connect() as conn:
            if self.is_sqlite:
                conn.info["write"] = True
            with conn.begin():
                if not self.is_sqlite:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_KEY})
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def dispose(self) -> None:
        self.engine.dispose()


def translate(exc: SQLAlchemyError) -> StoreUnavailable:
    log.exception("store failure")
    return StoreUnavailable(f"the store failed ({type(exc).__name__})")

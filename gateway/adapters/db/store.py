"""The store: SQLAlchemy engine, serialised write transactions, migrations, one error map.

SQLite (embedded default) runs in WAL mode and takes ``BEGIN IMMEDIATE`` for every
write transaction; PostgreSQL takes a transaction-scoped advisory lock. Either way
write transactions (budget charges and audit appends) are serialised, which keeps the
audit chain linear and every check-then-charge race-free.

SQLAlchemy's errors are translated here, once, the way httpx maps transport errors::

    SQLAlchemyError
     ├── an operational fault (OperationalError, InterfaceError, a dropped connection:
     │   disk full, read-only file, server down, lock timeout)  -> StoreUnavailable (503)
     ├── the unique index on a query's (username, Idempotency-Key): another request with
     │   the same key committed first                           -> IdempotencyKeyTaken (409)
     └── anything else (a constraint, bad SQL: a bug)           -> StoreError (500)

Errors raised by the caller inside a transaction (refusals) roll it back and pass unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.pool import QueuePool

from gateway.adapters.db.unit import Tx
from gateway.domain.errors import Conflict, InternalError, Unavailable
from gateway.domain.text import _l

log = logging.getLogger(__name__)
WRITE_LOCK_KEY = 735_210_001
MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


class StoreUnavailable(Unavailable):
    """The database cannot be used right now; the failed transaction charged and released
    nothing (after an earlier charge, the release unit of work says ReleasePending)."""


class IdempotencyKeyTaken(Conflict):
    """A query record was refused by the unique index on (username, idempotency_key): a
    concurrent request with the same Idempotency-Key committed its own first. This
    transaction was rolled back (nothing charged); the release unit of work answers with
    that first request's query, as for any retry."""

    def __init__(self) -> None:
        super().__init__(_l("another request with this Idempotency-Key is being processed; "
                            "send it again with the same key to get its answer"))


class StoreError(InternalError):
    """The database refused a statement the code should never have sent (a bug)."""


# PostgreSQL's SQLSTATEs of operational faults, whatever DB-API class the driver gives them:
# connection exceptions, a read-only transaction (a standby, default_transaction_read_only),
# insufficient resources (disk full, out of memory, too many connections), a server
# shutting down or not accepting connections yet, I/O errors.
OPERATIONAL_SQLSTATES = ("08", "25006", "53", "57P", "58")


def _map(exc: SQLAlchemyError) -> Exception:
    if isinstance(exc, IntegrityError) and _names_idempotency_index(exc):
        return IdempotencyKeyTaken()
    sqlstate = str(getattr(getattr(exc, "orig", None), "sqlstate", None) or "")
    operational = isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated) or (
        sqlstate.startswith(OPERATIONAL_SQLSTATES))
    if operational:
        log.warning("store unavailable: %s", str(exc).splitlines()[0][:300])
        return StoreUnavailable()
    log.exception("store failure")
    return StoreError(f"the store failed ({type(exc).__name__})")


IDEMPOTENCY_INDEX = "ux_queries_idempotency"  # gateway/adapters/db/tables.py
IDEMPOTENCY_COLUMNS = "queries.username, queries.idempotency_key"


def _names_idempotency_index(exc: IntegrityError) -> bool:
    """Whether a violation is the idempotency index's: PostgreSQL names the constraint,
    SQLite its columns ("UNIQUE constraint failed: queries.username, ...")."""
    constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
    if constraint is not None:
        return bool(constraint == IDEMPOTENCY_INDEX)
    return str(exc.orig).strip() == f"UNIQUE constraint failed: {IDEMPOTENCY_COLUMNS}"


@contextmanager
def translated() -> Iterator[None]:
    """Map SQLAlchemy's errors raised inside to the store's own (see the module docstring)."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise _map(exc) from exc


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
    def __init__(self, url: str, *, connect_timeout: int = 10) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = _sqlite_engine(url)
        else:
            self.engine = create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True,
                                        connect_args={"connect_timeout": connect_timeout})

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A serialised read-write transaction; commits on success, rolls back on error."""
        with translated(), self.engine.connect() as conn:
            if self.is_sqlite:
                conn.info["write"] = True
            with conn.begin():
                if not self.is_sqlite:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_KEY})
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with translated(), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def writing(self) -> Iterator[Tx]:
        """A serialised write transaction, seen through the repositories."""
        with self.write() as conn:
            yield Tx(conn)

    @contextmanager
    def reading(self) -> Iterator[Tx]:
        with self.read() as conn:
            yield Tx(conn)

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision, in a write transaction: processes
        starting together migrate one after the other (the later ones find the schema at
        its head), and no write runs on a half-migrated schema."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with self.write() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def dispose(self) -> None:
        self.engine.dispose()

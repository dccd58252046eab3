"""Alembic migrations build exactly the schema the code declares, on both stores."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway.adapters.db import Store
from gateway.adapters.db.tables import metadata


def test_migrated_schema_matches_the_tables(store_url: str) -> None:
    store = Store(store_url)
    store.migrate()
    store.migrate()  # a second run is a no-op
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    store.dispose()

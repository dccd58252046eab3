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


def test_revoke_reasons_are_copied_from_the_audit_log(store_url: str) -> None:
    """r16: a grant revoked before the column existed takes its reason from its audit entry."""
    import json

    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from gateway.adapters.db.store import MIGRATIONS

    store = Store(store_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))

    def upgrade(to: str) -> None:
        with store.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, to)

    upgrade("r15_recovery")
    grant = {"username": "rita", "dataset": "flights", "epsilon_total_units": 1,
             "epsilon_spent_units": 0, "delta_total_units": 0, "delta_spent_units": 0,
             "created_at": "2026-01-01T00:00:00+00:00", "expires_at": "2027-01-01T00:00:00+00:00",
             "created_by": "root_admin"}
    entry = {"at": "2026-01-02T00:00:00+00:00", "actor": "root_admin", "action": "grant.revoke",
             "prev_hash": "0" * 64, "hash": "1" * 64}
    with store.engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO grants (id, username, dataset, epsilon_total_units, epsilon_spent_units,"
            " delta_total_units, delta_spent_units, status, created_at, expires_at, created_by)"
            " VALUES (:id, :username, :dataset, :epsilon_total_units, :epsilon_spent_units,"
            " :delta_total_units, :delta_spent_units, :status, :created_at, :expires_at,"
            " :created_by)"),
            [{**grant, "id": "g1", "status": "revoked"}, {**grant, "id": "g2", "status": "revoked"},
             {**grant, "id": "g3", "status": "active"}])
        conn.execute(sa.text(
            "INSERT INTO audit (seq, at, actor, action, grant_id, outcome, detail, prev_hash, hash)"
            " VALUES (:seq, :at, :actor, :action, :grant_id, :outcome, :detail, :prev_hash, :hash)"),
            [{**entry, "seq": 1, "grant_id": "g1", "outcome": "denied",
              "detail": json.dumps({"reason": "revoking a grant needs a reason"})},
             {**entry, "seq": 2, "grant_id": "g1", "outcome": "ok",
              "detail": json.dumps({"note": "project ended"})},
             {**entry, "seq": 3, "grant_id": "g2", "outcome": "ok", "detail": json.dumps({})}])
    upgrade("head")
    with store.engine.connect() as conn:
        reasons = dict(conn.execute(sa.text("SELECT id, revoke_reason FROM grants")).all())
    assert reasons == {"g1": "project ended", "g2": None, "g3": None}
    store.dispose()



def test_replicas_starting_together_migrate_the_store_once(store_url: str) -> None:
    """Three processes migrating one empty database at once (replicas started together):
    each takes the store's write lock, so one migrates and the others find it current."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = "import sys; from gateway.adapters.db import Store; Store(sys.argv[1]).migrate()"
    procs = [subprocess.Popen([sys.executable, "-c", code, store_url], cwd=root,
                              env={**os.environ, "PYTHONPATH": str(root)},
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    failures = [err for proc in procs if (err := proc.communicate(timeout=120)[1])
                and proc.returncode]
    assert not failures, failures[0][-2000:]
    store = Store(store_url)
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    store.dispose()

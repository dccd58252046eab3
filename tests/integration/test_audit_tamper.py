"""Editing, deleting or reordering audit rows in the database is detected, with the right seq."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from gateway.adapters.db import tables as t
from gateway.bootstrap import Services, bootstrap
from gateway.services.audit import verify_export
from gateway.services.common import Principal
from gateway.settings import Settings

ADMIN = Principal("cli:test", "admin")


def _services(home: Path, url: str) -> Services:
    svc = bootstrap(Settings(home=home, database_url=url))
    for i in range(8):
        svc.users.create(ADMIN, username=f"user{i}", role="researcher", password="x" * 12)
    return svc


@pytest.mark.parametrize("damage", ["edit", "delete", "reorder", "edit-hash-too"])
def test_verify_detects_damage(tmp_path: Path, store_url: str, damage: str) -> None:
    svc = _services(tmp_path, store_url)
    assert svc.audit.verify().ok and svc.audit.verify().entries == 8
    with svc.store.engine.begin() as conn:
        if damage == "edit":
            conn.execute(update(t.audit).where(t.audit.c.seq == 4).values(actor="someone-else"))
        elif damage == "edit-hash-too":
            # A forger who also recomputes the row's own hash still breaks the next link.
            from gateway.domain.audit import entry_hash

            row = dict(conn.execute(select(t.audit).where(t.audit.c.seq == 4)).mappings().one())
            row["outcome"] = "denied"
            conn.execute(update(t.audit).where(t.audit.c.seq == 4).values(
                outcome="denied", hash=entry_hash(row)))
        elif damage == "delete":
            conn.execute(delete(t.audit).where(t.audit.c.seq == 5))
        else:
            a = conn.execute(select(t.audit).where(t.audit.c.seq == 3)).mappings().one()
            b = conn.execute(select(t.audit).where(t.audit.c.seq == 6)).mappings().one()
            keep = [c for c in a if c != "seq"]
            conn.execute(update(t.audit).where(t.audit.c.seq == 3).values(
                **{c: b[c] for c in keep}))
            conn.execute(update(t.audit).where(t.audit.c.seq == 6).values(
                **{c: a[c] for c in keep}))
    report = svc.audit.verify()
    expected = {"edit": 4, "edit-hash-too": 5, "delete": 5, "reorder": 3}[damage]
    assert not report.ok
    assert report.first_bad_seq == expected, report
    svc.store.dispose()


def test_cli_verify_exit_code_names_the_seq(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    svc = _services(tmp_path, url)
    env = {**os.environ, "DPSANDBOX_HOME": str(tmp_path), "DPSANDBOX_DATABASE_URL": url}
    cli = [sys.executable, "-m", "gateway.cli", "audit", "verify"]
    ok = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    with svc.store.engine.begin() as conn:
        conn.execute(update(t.audit).where(t.audit.c.seq == 2).values(detail='{"x":1}'))
    bad = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "seq 2" in bad.stderr


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_exports_verify_offline(tmp_path: Path, fmt: str) -> None:
    svc = _services(tmp_path, f"sqlite:///{tmp_path / 'store.sqlite'}")
    text = svc.audit.export(fmt)
    assert verify_export(text, fmt).ok
    lines = text.splitlines()
    lines[3] = lines[3].replace("user", "resu", 1)
    assert not verify_export("\n".join(lines) + "\n", fmt).ok

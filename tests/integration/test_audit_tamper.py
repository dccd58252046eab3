"""Editing, deleting or reordering audit rows in the database is detected, with the right seq."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
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


def test_cli_verify_finds_a_truncated_log(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    svc = _services(tmp_path, url)
    assert svc.audit.check().report.ok  # the checkpoint is at entry 8
    with svc.store.engine.begin() as conn:
        conn.execute(delete(t.audit).where(t.audit.c.seq > 6))
    env = {**os.environ, "DPSANDBOX_HOME": str(tmp_path), "DPSANDBOX_DATABASE_URL": url,
           "DPSANDBOX_LANG": "zh_CN"}
    for _ in range(2):  # and again: the checkpoint stays at 8
        bad = subprocess.run([sys.executable, "-m", "gateway.cli", "audit", "verify"], env=env,
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 1, bad.stderr
        assert "7" in bad.stderr and "最新的记录被删除了" in bad.stderr, bad.stderr
    svc.store.dispose()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_exports_verify_offline(tmp_path: Path, fmt: str) -> None:
    svc = _services(tmp_path, f"sqlite:///{tmp_path / 'store.sqlite'}")
    text = svc.audit.export(fmt)
    assert verify_export(text, fmt).ok
    lines = text.splitlines()
    lines[3] = lines[3].replace("user", "resu", 1)
    assert not verify_export("\n".join(lines) + "\n", fmt).ok


# -- the checkpoint: the audit page recomputes only what was appended since -------------

def _add_users(svc: Services, names: range) -> None:
    for i in names:
        svc.users.create(ADMIN, username=f"user{i}", role="researcher", password="x" * 12)


def _damage(conn: Any, damage: str, seq: int) -> None:
    """Edit, delete or swap entries the way a forger with the database would."""
    from gateway.domain.audit import entry_hash

    row = conn.execute(select(t.audit).where(t.audit.c.seq == seq)).mappings().one()
    if damage == "edit":
        conn.execute(update(t.audit).where(t.audit.c.seq == seq).values(actor="someone-else"))
    elif damage == "edit-hash-too":
        conn.execute(update(t.audit).where(t.audit.c.seq == seq).values(
            outcome="denied", hash=entry_hash({**row, "outcome": "denied"})))
    elif damage == "delete":
        conn.execute(delete(t.audit).where(t.audit.c.seq == seq))
    else:
        other = conn.execute(select(t.audit).where(t.audit.c.seq == seq + 3)).mappings().one()
        keep = [c for c in row if c != "seq"]
        conn.execute(update(t.audit).where(t.audit.c.seq == seq).values(
            **{c: other[c] for c in keep}))
        conn.execute(update(t.audit).where(t.audit.c.seq == seq + 3).values(
            **{c: row[c] for c in keep}))


def test_a_check_recomputes_only_the_entries_after_the_checkpoint(
        tmp_path: Path, store_url: str) -> None:
    svc = _services(tmp_path, store_url)
    first = svc.audit.check()  # no checkpoint yet: the entire chain
    assert first.report.ok and first.report.entries == 8 and first.checked_after == 0
    assert first.full_at is not None and first.full_seq == 8 and first.full_bad_seq is None
    _add_users(svc, range(8, 11))
    later = svc.audit.check()
    assert later.report.ok and later.report.entries == 11 and later.checked_after == 8
    assert later.report.head == svc.audit.verify().head
    assert svc.audit.check().checked_after == 11

    with svc.store.engine.begin() as conn:  # an entry verified before is edited
        _damage(conn, "edit", 4)
    assert svc.audit.check().report.ok  # not recomputed on a page load: only in full
    full = svc.audit.verify()
    assert not full.ok and full.first_bad_seq == 4
    after = svc.audit.check()  # the full run recorded damage below the checkpoint: every
    assert not after.report.ok and after.report.first_bad_seq == 4  # load recomputes it all
    assert after.checked_after == 0 and after.full_bad_seq == 4 and after.full_seq == 3
    assert _kept(svc).seq == 11  # the anchor stays where it was
    svc.store.dispose()


@pytest.mark.parametrize(("damage", "expected"),
                         [("edit", 12), ("edit-hash-too", 13), ("delete", 12), ("reorder", 12)])
def test_damage_after_the_checkpoint_is_found_by_the_next_check(
        tmp_path: Path, store_url: str, damage: str, expected: int) -> None:
    svc = _services(tmp_path, store_url)
    assert svc.audit.check().report.ok  # the checkpoint is at entry 8
    _add_users(svc, range(8, 16))
    with svc.store.engine.begin() as conn:
        _damage(conn, damage, 12)
    check = svc.audit.check()
    assert not check.report.ok and check.checked_after == 8
    assert check.report.first_bad_seq == expected, check
    assert not svc.audit.check().report.ok  # a failed check keeps the checkpoint
    svc.store.dispose()


@pytest.mark.parametrize("forgery", ["moved", "hash", "deleted", "entry-rehashed"])
def test_a_tampered_checkpoint_does_not_make_a_broken_chain_look_valid(
        tmp_path: Path, store_url: str, forgery: str) -> None:
    """Whatever is done to the checkpoint (moved past the damage, its hash changed, deleted,
    its own entry rewritten with a new hash), the next check finds the damage."""
    svc = _services(tmp_path, store_url)
    assert svc.audit.check().report.ok  # the checkpoint is at entry 8
    _add_users(svc, range(8, 16))
    expected = 8 if forgery == "entry-rehashed" else 12  # 8: no longer the hash it had
    with svc.store.engine.begin() as conn:
        if forgery == "entry-rehashed":
            _damage(conn, "edit-hash-too", 8)
        else:
            _damage(conn, "edit", 12)
        head = conn.execute(select(t.audit.c.seq, t.audit.c.hash)
                            .where(t.audit.c.seq == 16)).one()
        cp = t.audit_checkpoint
        if forgery == "moved":  # past the damage, to an entry's real hash
            conn.execute(update(cp).values(seq=head.seq, hash=head.hash))
        elif forgery == "hash":
            conn.execute(update(cp).values(hash=head.hash))
        elif forgery == "deleted":
            conn.execute(delete(cp))
    check = svc.audit.check()
    assert not check.report.ok and check.report.first_bad_seq == expected, check
    assert check.checked_after == 0  # the entire chain was recomputed
    assert check.checkpoint_altered == (forgery in ("moved", "hash"))  # its MAC fails
    again = svc.audit.check()
    assert not again.report.ok and again.checkpoint_altered == check.checkpoint_altered
    svc.store.dispose()


def test_an_altered_checkpoint_is_reported_until_a_full_verification_replaces_it(
        tmp_path: Path, store_url: str) -> None:
    svc = _services(tmp_path, store_url)
    assert svc.audit.check().report.ok
    with svc.store.engine.begin() as conn:  # moved back to the genesis by a forger
        conn.execute(update(t.audit_checkpoint).values(seq=0, hash="0" * 64))
    for _ in range(2):  # the page says so on every load, and keeps what was stored
        check = svc.audit.check()
        assert check.checkpoint_altered and check.report.ok and check.full_at is None
    page = _audit_page(svc)  # the console shows it
    assert "The verification checkpoint was altered" in page and "Chain verified" in page
    assert svc.audit.verify().ok
    check = svc.audit.check()
    assert not check.checkpoint_altered and check.checked_after == _head(svc)[0]
    assert "checkpoint was altered" not in _audit_page(svc)
    svc.store.dispose()


def _audit_page(svc: Services, lang: str = "en") -> str:
    """The console's audit page as the auditor audrey sees it (created on first use)."""
    from gateway.app import create_app

    with svc.store.reading() as tx:
        new = tx.users.get("audrey") is None
    if new:
        svc.users.create(ADMIN, username="audrey", role="auditor", password="x" * 12)
    with TestClient(create_app(services=svc)) as client:
        login = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/console/login").text)
        assert login is not None
        signed = client.post("/console/login", follow_redirects=False, data={
            "username": "audrey", "password": "x" * 12, "csrf_token": login.group(1),
            "next": "/console/audit"})
        assert signed.status_code == 303, signed.text
        shown = client.get("/console/audit", headers={"Accept-Language": lang})
    assert shown.status_code == 200, shown.text
    return str(shown.text)


# -- the checkpoint is a keyed anchor: the chain must still reach it, with its hash --------

def _kept(svc: Services) -> Any:
    with svc.store.reading() as tx:
        kept = tx.audit.checkpoint()
    assert kept is not None
    return kept[0]


def _head(svc: Services) -> tuple[int, str]:
    with svc.store.reading() as tx:
        head = tx.audit.head()
    assert head is not None
    return head


def _rewrite_from(conn: Any, seq: int) -> None:
    """Edit entry ``seq`` and recompute its hash and every later entry's link and hash: the
    chain recomputes without a flaw, only the checkpoint remembers the old hash."""
    from gateway.domain.audit import entry_hash

    rows = conn.execute(select(t.audit).where(t.audit.c.seq >= seq)
                        .order_by(t.audit.c.seq)).mappings().all()
    prev = rows[0]["prev_hash"]
    for i, row in enumerate(rows):
        new = {**row, "prev_hash": prev, **({"outcome": "denied"} if i == 0 else {})}
        new["hash"] = entry_hash(new)
        conn.execute(update(t.audit).where(t.audit.c.seq == row["seq"]).values(
            outcome=new["outcome"], prev_hash=new["prev_hash"], hash=new["hash"]))
        prev = new["hash"]


def _checkpoint_at_16(svc: Services) -> tuple[int, str]:
    """Appends move the checkpoint to the head, on a load and on a full verification."""
    assert svc.audit.check().report.ok and _kept(svc).seq == 8
    _add_users(svc, range(8, 12))
    assert svc.audit.check().checked_after == 8
    assert (_kept(svc).seq, _kept(svc).hash) == _head(svc) and _head(svc)[0] == 12
    _add_users(svc, range(12, 16))
    assert svc.audit.verify().ok
    assert (_kept(svc).seq, _kept(svc).hash) == _head(svc) and _head(svc)[0] == 16
    return _head(svc)


@pytest.mark.parametrize("first", ["page", "full"])
def test_a_truncated_log_is_found_by_every_load_and_every_full_verification(
        tmp_path: Path, store_url: str, first: str) -> None:
    from gateway.app import create_app
    from gateway.domain.text import use_locale

    svc = _services(tmp_path, store_url)
    anchor = _checkpoint_at_16(svc)
    with svc.store.engine.begin() as conn:  # the newest entries deleted: the rest links up
        conn.execute(delete(t.audit).where(t.audit.c.seq > 12))
    reports = [svc.audit.check().report, svc.audit.verify()]
    reports += [svc.audit.check().report, svc.audit.verify(), svc.audit.check().report]
    if first == "full":
        reports = reports[1:]
    for report in reports:
        assert not report.ok and report.first_bad_seq == 13 and report.entries == 12, report
        assert "the newest entries were deleted" in str(report.problem)
    assert (_kept(svc).seq, _kept(svc).hash) == anchor  # never moved back
    assert _kept(svc).full_bad_seq == 13
    with use_locale("zh_CN"):
        assert "最新的记录被删除了" in str(reports[0].problem)
    page = _audit_page(svc, "zh-CN")  # creates the auditor audrey: appended as 13, 14
    assert "哈希链校验失败" in page and "最新的记录被删除了" in page
    with TestClient(create_app(services=svc)) as client:  # GET /v1/audit/verify
        token = client.post("/v1/auth/token", json={"username": "audrey",
                                                    "password": "x" * 12}).json()
        answer = client.get("/v1/audit/verify", headers={
            "Authorization": f"Bearer {token['access_token']}", "Accept-Language": "zh-CN"})
    assert answer.status_code == 200, answer.text
    body = answer.json()  # the entries appended since fill the gap: its first missing seq
    assert not body["ok"] and body["first_bad_seq"] == body["entries"] + 1 <= 16, body
    assert "最新的记录被删除了" in body["problem"]
    _add_users(svc, range(16, 20))  # appends past the anchor: its entry has another hash
    assert _head(svc)[0] > 16 and _kept(svc).seq == 16
    for report in (svc.audit.check().report, svc.audit.verify(), svc.audit.check().report):
        assert not report.ok and report.first_bad_seq == 16, report
    svc.store.dispose()


@pytest.mark.parametrize("seq", [16, 10])
def test_an_entry_rewritten_with_every_later_hash_is_found(
        tmp_path: Path, store_url: str, seq: int) -> None:
    """At the checkpoint or before it: the chain recomputes cleanly, but the entry at the
    checkpoint no longer has the hash it was verified with."""
    svc = _services(tmp_path, store_url)
    anchor = _checkpoint_at_16(svc)
    with svc.store.engine.begin() as conn:
        _rewrite_from(conn, seq)
    for report in (svc.audit.check().report, svc.audit.verify(), svc.audit.check().report):
        assert not report.ok and report.first_bad_seq == 16 and report.entries == 15, report
        assert "no longer has the hash it was verified with" in str(report.problem)
    assert (_kept(svc).seq, _kept(svc).hash) == anchor
    svc.store.dispose()


def test_damage_found_before_a_rewrite_names_the_earlier_entry(
        tmp_path: Path, store_url: str) -> None:
    svc = _services(tmp_path, store_url)
    _checkpoint_at_16(svc)
    with svc.store.engine.begin() as conn:
        _rewrite_from(conn, 10)
        _damage(conn, "edit", 4)
    for report in (svc.audit.check().report, svc.audit.verify()):
        assert not report.ok and report.first_bad_seq == 4, report
    svc.store.dispose()


def test_checks_from_two_gateways_keep_one_exact_checkpoint(
        tmp_path: Path, store_url: str) -> None:
    """Two gateways (replicas) on one store: a check on one moves the checkpoint both
    trust; a check that started from an older one does not move it back over a full run's."""
    from gateway.domain.audit import Checkpoint

    svc = _services(tmp_path, store_url)
    other = bootstrap(Settings(home=tmp_path, database_url=store_url))
    assert svc.audit.check().report.ok
    _add_users(svc, range(8, 12))
    assert other.audit.check().checked_after == 8
    assert svc.audit.check().checked_after == 12
    key = svc.audit.checkpoint_key
    assert key is not None
    with svc.store.reading() as tx:
        kept = tx.audit.checkpoint()
    assert kept is not None and kept[0].seq == 12
    stale = Checkpoint(8, "0" * 64)  # what a check that read the checkpoint at 8 would pass
    with svc.store.writing() as tx:
        assert not tx.audit.keep_checkpoint(Checkpoint(20, "1" * 64), "x" * 64,
                                            was=stale.mac(key))
    with svc.store.reading() as tx:
        assert tx.audit.checkpoint() == kept
    other.store.dispose()
    svc.store.dispose()

"""The lockout is exact under concurrency: 50 wrong passwords at once evaluate at most
``login_max_failures`` of them (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gateway.domain.errors import Unauthenticated
from gateway.services import users as users_module
from gateway.services.audit import AuditFilter
from tests.conftest import PASSWORD, make_services

ATTEMPTS = 50


def test_concurrent_wrong_passwords_evaluate_at_most_the_limit(
        tmp_path: Path, store_url: str, demo_files: dict[str, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    svc = make_services(tmp_path, demo_files, db_url=store_url, datasets=())
    svc.settings = svc.settings.model_copy(update={"login_lockout_seconds": 300})
    svc.users.settings = svc.settings
    limit = svc.settings.login_max_failures
    evaluated: list[str] = []
    lock = threading.Lock()
    real_check = users_module.check_password

    def counting_check(password: str, hashed: Any) -> bool:  # a spy: the real check runs
        with lock:
            evaluated.append(password)
        return real_check(password, hashed)

    monkeypatch.setattr(users_module, "check_password", counting_check)
    start = threading.Barrier(ATTEMPTS)

    def guess(i: int) -> str:
        start.wait()
        try:
            svc.users.login("ron", f"wrong-guess-{i}")
        except Unauthenticated as exc:
            return "locked" if "locked" in exc.message else "wrong"
        return "signed in"

    with ThreadPoolExecutor(max_workers=ATTEMPTS) as pool:
        outcomes = list(pool.map(guess, range(ATTEMPTS)))

    assert "signed in" not in outcomes
    assert len(evaluated) <= limit, f"{len(evaluated)} passwords evaluated, limit {limit}"
    assert outcomes.count("wrong") <= limit
    assert outcomes.count("locked") >= ATTEMPTS - limit
    # Locked now: even the right password is refused without being evaluated.
    with pytest.raises(Unauthenticated, match="locked"):
        svc.users.login("ron", PASSWORD)
    assert len(evaluated) <= limit
    denied, total = svc.audit.page(AuditFilter(action="auth.login", outcome="denied",
                                               actor="ron"), page=1, size=100)
    assert total == ATTEMPTS + 1  # every attempt is audited, evaluated or not
    assert sum(1 for d in denied if d["detail"]["reason"].startswith("bad credentials")) \
        == len(evaluated)
    assert svc.audit.verify().ok
    svc.store.dispose()


def test_lock_expires_and_the_right_password_works_again(
        tmp_path: Path, store_url: str, demo_files: dict[str, Path]) -> None:
    svc = make_services(tmp_path, demo_files, db_url=store_url, datasets=())
    limit = svc.settings.login_max_failures  # lockout: 2 s in the test settings
    for i in range(limit):
        with pytest.raises(Unauthenticated, match="wrong"):
            svc.users.login("ron", f"nope-{i}")
    with pytest.raises(Unauthenticated, match="locked"):
        svc.users.login("ron", PASSWORD)
    import time

    time.sleep(svc.settings.login_lockout_seconds + 0.5)
    assert svc.users.login("ron", PASSWORD)["access_token"]
    svc.store.dispose()

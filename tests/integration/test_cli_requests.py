"""``dpsandbox requests``: an admin lists, shows, approves and rejects from the shell."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.services.common import Principal
from tests.conftest import make_services

PURPOSE = "credit risk by age band for a consumer-protection report"


def test_requests_commands(tmp_path: Path, demo_files: dict[str, Path],
                           monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    svc = make_services(tmp_path, demo_files, datasets=("credit",))
    monkeypatch.setenv("DPSANDBOX_HOME", str(tmp_path))
    monkeypatch.delenv("DPSANDBOX_DATABASE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    rita, erin = Principal("rita", "researcher"), Principal("erin", "enterprise", "acme")
    first = svc.access.apply(rita, dataset="credit", purpose=PURPOSE, epsilon=2.0, days=30)
    second = svc.access.apply(erin, dataset="credit", purpose=PURPOSE, epsilon=1.0, days=30,
                              org_grant=True)
    capsys.readouterr()

    assert main(["requests", "list", "--status", "pending"]) == 0
    listed = capsys.readouterr().out
    assert first["id"] in listed and second["id"] in listed and "pending" in listed

    assert main(["requests", "show", second["id"]]) == 0
    shown = capsys.readouterr().out
    assert PURPOSE in shown and "enterprise of acme" in shown and "past applications" in shown

    assert main(["requests", "approve", first["id"], "--epsilon", "3", "--note", "more"]) == 2
    assert "never raise" in capsys.readouterr().err
    assert main(["requests", "approve", first["id"], "--epsilon", "1.5", "--days", "10",
                 "--note", "a pilot first"]) == 0
    assert "approved" in capsys.readouterr().out
    assert main(["requests", "reject", second["id"], "--note", "apply per person"]) == 0
    assert "rejected" in capsys.readouterr().out
    assert main(["requests", "reject", second["id"], "--note", "again"]) == 2
    assert "conflict" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["requests", "reject", first["id"]])  # --note is required

    admin = Principal("root_admin", "admin")
    approved, rejected = (svc.access.get(admin, first["id"]),
                          svc.access.get(admin, second["id"]))
    assert approved["status"] == "approved" and approved["decided_by"].startswith("cli:")
    assert approved["grant"]["epsilon_total"] == 1.5 and approved["note"] == "a pilot first"
    assert rejected["status"] == "rejected" and rejected["note"] == "apply per person"
    assert svc.audit.verify().ok
    svc.store.dispose()

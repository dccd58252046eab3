"""``dpsandbox requests``: an admin lists, shows, approves and rejects from the shell."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.services.common import Principal
from tests.conftest import make_services

PURPOSE = "credit risk by age band for a consumer-protection report"


def cli_store(tmp_path: Path, demo_files: dict[str, Path],
              monkeypatch: pytest.MonkeyPatch) -> Any:
    """A store with the credit dataset that ``dpsandbox`` commands in this process act on."""
    svc = make_services(tmp_path, demo_files, datasets=("credit",))
    monkeypatch.setenv("DPSANDBOX_HOME", str(tmp_path))
    monkeypatch.delenv("DPSANDBOX_DATABASE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    return svc


def test_requests_commands(tmp_path: Path, demo_files: dict[str, Path],
                           monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    svc = cli_store(tmp_path, demo_files, monkeypatch)
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


def test_the_cli_speaks_chinese_with_dpsandbox_lang(tmp_path: Path, demo_files: dict[str, Path],
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """DPSANDBOX_LANG=zh_CN: the commands' own lines, their help and refusals in Chinese."""
    svc = cli_store(tmp_path, demo_files, monkeypatch)
    monkeypatch.setenv("DPSANDBOX_LANG", "zh_CN")
    erin = Principal("erin", "enterprise", "acme")
    app = svc.access.apply(erin, dataset="credit", purpose=PURPOSE, epsilon=1.0, days=30)
    capsys.readouterr()

    assert main(["requests", "show", app["id"]]) == 0
    shown = capsys.readouterr().out
    assert f"申请 {app['id']}" in shown and "申请人 erin：acme 的企业分析人员" in shown
    assert "以往的申请" in shown and "数据集 credit（受限）" in shown
    assert main(["requests", "approve", app["id"], "--epsilon", "3", "--note", "x"]) == 2
    assert "错误（invalid_request）" in capsys.readouterr().err
    assert main(["grant", "add", "--user", "rita", "--dataset", "credit", "--epsilon", "1"]) == 0
    assert "授权 " in (out := capsys.readouterr().out) and "授予 rita" in out
    assert main(["audit", "verify"]) == 0
    assert "审计日志完整" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "运行网关（FastAPI）" in capsys.readouterr().out
    svc.store.dispose()


def test_dataset_list_shows_a_zcdp_datasets_rho(tmp_path: Path, demo_files: dict[str, Path],
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    svc = cli_store(tmp_path, demo_files, monkeypatch)
    policies = Path(__file__).resolve().parents[2] / "policies"
    assert main(["dataset", "add", "exam_zcdp", "--data", str(demo_files["exam"]),
                 "--policy", str(policies / "variants" / "exam_zcdp.yaml")]) == 0
    capsys.readouterr()
    assert main(["dataset", "list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "exam_zcdp" in line)
    cap = svc.catalog.summary(svc.catalog.record("exam_zcdp"), for_admin=True)["dataset_rho_cap"]
    assert "zcdp" in row and f"{cap}"[:6] in row
    svc.store.dispose()

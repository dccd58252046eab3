"""The budget charts count each dataset in its own unit: a zCDP dataset's charges (epsilon 0
in the audit log, rho in the detail) are charted in rho with its rho cap and the rho
granted, labelled as rho; a pure dataset's in epsilon."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.services.audit import AuditFilter
from tests.api.test_zcdp_api import count_body, mixed_services
from tests.browser.test_console_http import sign_in
from tests.conftest import ADMIN, GatewayEnv, serve


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory,
        demo_files: dict[str, Path]) -> Iterator[GatewayEnv]:
    yield from serve(mixed_services(tmp_path_factory.mktemp("home"), demo_files))


@pytest.fixture(scope="module")
def charged(env: GatewayEnv) -> dict[str, float]:
    """Two queries on each dataset; what each dataset was charged, in its own unit."""
    for dataset in ("exam", "exam_zcdp"):
        env.grant("rita", dataset, 1.0)
    spent = {"exam": 0.0, "exam_zcdp": 0.0}
    for i in range(2):
        pure = env.post("rita", "/v1/queries", count_body("exam", i, epsilon=0.2)).json()
        spent["exam"] += pure["epsilon_charged"]
        zcdp = env.post("rita", "/v1/queries", count_body("exam_zcdp", i, epsilon=0.2)).json()
        assert zcdp["accounting"] == "zcdp" and zcdp["rho_charged"] > 0
        spent["exam_zcdp"] += zcdp["rho_charged"]
    return spent


def section(html: str, title: str) -> str:
    found = re.search(r'<section aria-labelledby="h-[a-z-]+" class="chart">\s*<h2[^>]*>'
                      + re.escape(title) + r"</h2>(.*?)</section>", html, re.S)
    assert found, f"no chart {title!r}"
    return found.group(1)


def totals(chart: str) -> dict[str, tuple[str, str]]:
    """name -> (charged, limit) from the chart's table."""
    body = re.search(r"<tbody>(.*?)</tbody>", chart, re.S)
    assert body
    return {m[0]: (m[1], m[2]) for m in re.findall(
        r'<tr><td>([^<]+)</td><td class="num">([^<]+)</td><td class="num">([^<]+)</td>',
        body.group(1))}


def test_the_audit_entry_of_a_zcdp_charge_holds_epsilon_zero(env: GatewayEnv,
                                                             charged: dict[str, float]) -> None:
    """Why the charts cannot sum the epsilon column."""
    entries, _total = env.services.audit.page(
        AuditFilter(action="query.charge", dataset="exam_zcdp"), page=1, size=10)
    assert entries and all(Decimal(e["epsilon"]) == 0 for e in entries)
    assert all(e["detail"]["accounting"] == "zcdp" for e in entries)


def test_charts_in_each_datasets_unit(env: GatewayEnv, charged: dict[str, float]) -> None:
    client = TestClient(env.client.app)
    assert sign_in(client, "audrey").status_code == 303
    html = client.get("/console/audit/charts").text
    rho_caps = {d["name"]: d.get("dataset_rho_cap") for d in env.services.catalog.list(ADMIN)}

    pure = section(html, "Epsilon spent per dataset")
    assert "exam_zcdp" not in totals(pure)
    assert Decimal(totals(pure)["exam"][0]) == pytest.approx(Decimal(str(charged["exam"])))

    rho = section(html, "Rho spent per dataset (zCDP)")
    shown, cap = totals(rho)["exam_zcdp"]
    assert Decimal(shown) > 0 and float(shown) == pytest.approx(charged["exam_zcdp"], rel=1e-6)
    assert float(cap.replace(",", "")) == pytest.approx(rho_caps["exam_zcdp"], rel=1e-4)
    assert 'text-anchor="middle">rho</text>' in rho and "<th scope=\"col\">Rho charged</th>" in rho
    assert set(totals(rho)) == {"exam_zcdp"}

    by_analyst = section(html, "Rho spent per analyst (zCDP datasets)")
    granted = next(g for g in env.get("rita", "/v1/grants").json()
                   if g["dataset"] == "exam_zcdp")
    spent, limit = totals(by_analyst)["rita"]
    assert float(spent) == pytest.approx(charged["exam_zcdp"], rel=1e-6)
    assert float(limit) == pytest.approx(granted["rho_total"], rel=1e-4)
    epsilon_by_analyst = totals(section(html, "Epsilon spent per analyst"))
    assert float(epsilon_by_analyst["rita"][1]) == 1.0  # the pure grant only, not rho's epsilon

    chinese = client.get("/console/audit/charts", headers={"Accept-Language": "zh-CN"}).text
    assert "每个数据集花费的 rho（zCDP）" in chinese and "已扣除的 rho" in chinese


def test_without_a_zcdp_dataset_there_is_no_rho_chart(gateway_env: GatewayEnv) -> None:
    client = TestClient(gateway_env.client.app)
    assert sign_in(client, "audrey").status_code == 303
    html = client.get("/console/audit/charts").text
    assert "Epsilon spent per dataset" in html and "Rho spent" not in html


def test_dataset_pages_show_a_zcdp_datasets_spending_in_rho(env: GatewayEnv,
                                                           charged: dict[str, float]) -> None:
    client = TestClient(env.client.app)
    assert sign_in(client, "root_admin").status_code == 303
    for path in ("/console/admin/datasets", "/console/admin/datasets/exam_zcdp", "/console"):
        html = client.get(path).text
        label = re.search(r'aria-label="rho ([0-9.,]+) spent of ([0-9.,]+)', html)
        assert label, path
        assert float(label.group(1)) == pytest.approx(charged["exam_zcdp"], abs=1e-4)
        assert float(label.group(2).replace(",", "")) > 0

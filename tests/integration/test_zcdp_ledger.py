"""zCDP grants in the ledger, on SQLite and PostgreSQL: 40 concurrent queries each costing a
quarter of a grant's rho release exactly 4 and never exceed it; the dataset cap is in rho."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from gateway.domain.budget import Budget
from gateway.domain.errors import BudgetExhausted
from gateway.domain.query import Aggregate, Filter, QuerySpec
from gateway.services.audit import AuditFilter
from gateway.services.common import Principal
from gateway.services.queries import QueryRequest
from tests.conftest import ADMIN, make_services

POLICIES = Path(__file__).resolve().parents[2] / "policies"
RITA = Principal("rita", "researcher")


def zcdp_services(tmp_path: Path, store_url: str, demo_files: dict[str, Path]):  # type: ignore[no-untyped-def]
    svc = make_services(tmp_path, demo_files, db_url=store_url, datasets=())
    svc.catalog.register(ADMIN, name="exam_zcdp", data=demo_files["exam"],
                         policy_file=POLICIES / "variants" / "exam_zcdp.yaml")
    return svc


def count(i: int) -> QuerySpec:
    # distinct filters, so no answer can come from the cache
    return QuerySpec(dataset="exam_zcdp", select=(Aggregate("count"),),
                     where=(Filter("normexam", ">=", -3 + i / 100),))


def test_forty_concurrent_zcdp_queries_never_exceed_the_rho_budget(
    tmp_path: Path, store_url: str, demo_files: dict[str, Path]
) -> None:
    svc = zcdp_services(tmp_path, store_url, demo_files)
    grant = svc.ledger.give(ADMIN, user="rita", org=None, dataset="exam_zcdp", epsilon=1.0,
                            delta=None, days=None)
    total = Budget.zcdp(Decimal(str(grant["rho_total"])))
    quarter = Budget(rho_units=total.rho_units // 4)

    def one(i: int) -> str:
        try:
            svc.queries.run(RITA, QueryRequest(spec=count(i), epsilon=None, rho=quarter.rho))
        except BudgetExhausted:
            return "refused"
        return "released"

    with ThreadPoolExecutor(max_workers=40) as pool:
        outcomes = list(pool.map(one, range(40)))
    assert outcomes.count("released") == 4 and outcomes.count("refused") == 36

    after = svc.ledger.get(ADMIN, grant["id"])
    spent = Budget.zcdp(Decimal(str(after["rho_spent"])))
    assert spent.rho_units == 4 * quarter.rho_units <= total.rho_units
    assert after["epsilon_spent"] == 0 or after["accounting"] == "zcdp"
    charges, _ = svc.audit.page(AuditFilter(action="query.charge", outcome="ok",
                                            grant_id=grant["id"]), page=1, size=500)
    denied, _ = svc.audit.page(AuditFilter(action="query", outcome="denied"), page=1, size=500)
    assert len(charges) == 4 and len(denied) == 36
    assert sum(Decimal(c["detail"]["rho"]) for c in charges) == spent.rho
    assert all(c["detail"]["accounting"] == "zcdp" for c in charges)
    assert all(d["detail"]["code"] == "budget_exhausted" for d in denied)
    assert svc.audit.verify().ok
    svc.store.dispose()


def test_the_dataset_cap_is_in_rho(tmp_path: Path, store_url: str,
                                   demo_files: dict[str, Path]) -> None:
    policy = yaml.safe_load((POLICIES / "variants" / "exam_zcdp.yaml").read_text())
    policy["budget"]["dataset_rho_cap"] = 0.5  # a grant of epsilon 4 holds rho ~0.3
    policy_file = tmp_path / "exam_zcdp.yaml"
    policy_file.write_text(yaml.safe_dump(policy))
    svc = make_services(tmp_path / "home", demo_files, db_url=store_url, datasets=())
    svc.catalog.register(ADMIN, name="exam_zcdp", data=demo_files["exam"], policy_file=policy_file)
    grants = [svc.ledger.give(ADMIN, user=user, org=None, dataset="exam_zcdp", epsilon=4.0,
                              delta=None, days=None) for user in ("rita", "ron")]
    half = Budget(rho_units=Budget.zcdp(Decimal(str(grants[0]["rho_total"]))).rho_units // 2)
    users = [Principal("rita", "researcher"), Principal("ron", "researcher")]
    for i in range(3):  # 3 halves: within the cap of 0.5
        svc.queries.run(users[i % 2], QueryRequest(spec=count(i), epsilon=None, rho=half.rho))
    with pytest.raises(BudgetExhausted, match="cap"):  # ron's grant has a half left; the cap not
        svc.queries.run(users[1], QueryRequest(spec=count(9), epsilon=None, rho=half.rho))
    assert svc.ledger.get(ADMIN, grants[1]["id"])["rho_remaining"] >= half.rho_float
    svc.store.dispose()

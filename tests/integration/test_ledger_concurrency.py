"""40 concurrent queries each costing a quarter of a grant: exactly 4 are released."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from gateway.adapters.db import tables as t
from gateway.domain.errors import BudgetExhausted
from gateway.domain.query import Aggregate, Filter, QuerySpec
from gateway.services.audit import AuditFilter
from gateway.services.common import Principal
from gateway.services.queries import QueryRequest
from tests.conftest import ADMIN, make_services


def test_exactly_four_of_forty_are_released(tmp_path: Path, store_url: str,
                                            demo_files: dict[str, Path]) -> None:
    svc = make_services(tmp_path, demo_files, db_url=store_url, datasets=("exam",))
    grant = svc.ledger.give(ADMIN, user="rita", org=None, dataset="exam", epsilon=1.0,
                            delta=None, days=None)
    rita = Principal("rita", "researcher")

    def one(i: int) -> str:
        # Distinct filters, so no answer can come from the cache.
        spec = QuerySpec(dataset="exam", select=(Aggregate("count"),),
                         where=(Filter("normexam", ">=", -3 + i / 100),))
        try:
            svc.queries.run(rita, QueryRequest(spec=spec, epsilon=0.25))
        except BudgetExhausted:
            return "refused"
        return "released"

    with ThreadPoolExecutor(max_workers=40) as pool:
        outcomes = list(pool.map(one, range(40)))
    assert outcomes.count("released") == 4
    assert outcomes.count("refused") == 36

    with svc.store.read() as conn:
        spent = conn.execute(select(t.grants.c.epsilon_spent_units)
                             .where(t.grants.c.id == grant["id"])).scalar_one()
    charges, _ = svc.audit.page(AuditFilter(action="query.charge", outcome="ok",
                                            grant_id=grant["id"]), page=1, size=500)
    releases, _ = svc.audit.page(AuditFilter(action="query.release", outcome="ok",
                                             grant_id=grant["id"]), page=1, size=500)
    denied, _ = svc.audit.page(AuditFilter(action="query", outcome="denied"), page=1, size=500)
    assert len(charges) == 4 and len(releases) == 4 and len(denied) == 36
    assert Decimal(spent) / 10**9 == sum(Decimal(c["epsilon"]) for c in charges) == Decimal(1)
    assert all(d["detail"]["code"] == "budget_exhausted" for d in denied)
    assert svc.audit.verify().ok
    svc.store.dispose()

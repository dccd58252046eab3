"""An org grant: four members of one org query at once against one shared budget.

The grant comes from an enterprise member's application (``org_grant=True``) approved by
an admin. Its budget is charged in the serialised write transaction, so however the
members' queries interleave, the org never spends more than it was granted.
"""

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
from tests.conftest import ADMIN, PASSWORD, make_services

MEMBERS = ("erin", "eve", "emma", "ezra")
PER_MEMBER = 8
COST = 0.1


def test_org_members_never_overspend_a_shared_grant(
    tmp_path: Path, store_url: str, demo_files: dict[str, Path]
) -> None:
    svc = make_services(tmp_path, demo_files, db_url=store_url, datasets=("exam",))
    for name in MEMBERS[2:]:
        svc.users.create(ADMIN, username=name, role="enterprise", password=PASSWORD, org="acme")
    members = [Principal(name, "enterprise", "acme") for name in MEMBERS]
    app = svc.access.apply(members[0], dataset="exam", epsilon=1.0, days=30, org_grant=True,
                           purpose="pricing study shared by the whole acme analytics team")
    assert app["status"] == "pending"  # an org grant always goes to an admin
    approved = svc.access.approve(Principal("root_admin", "admin"), app["id"], note="")
    grant_id = approved["grant_id"]
    assert approved["grant"]["org"] == "acme" and approved["grant"]["user"] is None

    def one(job: int) -> tuple[str, str]:
        member = members[job % len(MEMBERS)]
        # Distinct filters, so no answer can come from the cache.
        spec = QuerySpec(dataset="exam", select=(Aggregate("count"),),
                         where=(Filter("standLRT", ">=", -3 + job / 100),))
        try:
            out = svc.queries.run(member, QueryRequest(spec=spec, epsilon=COST))
        except BudgetExhausted:
            return member.username, "refused"
        assert out["budget"]["grant_id"] == grant_id
        return member.username, "released"

    jobs = len(MEMBERS) * PER_MEMBER
    with ThreadPoolExecutor(max_workers=len(MEMBERS)) as pool:
        outcomes = list(pool.map(one, range(jobs)))
    released = [who for who, outcome in outcomes if outcome == "released"]
    assert len(released) == 10 and len(outcomes) - len(released) == jobs - 10

    with svc.store.read() as conn:
        grant = conn.execute(select(t.grants).where(t.grants.c.id == grant_id)).one()
        others = conn.execute(select(t.grants.c.id).where(t.grants.c.id != grant_id)).all()
        charged_to = conn.execute(select(t.queries.c.username, t.queries.c.grant_id)
                                  .where(t.queries.c.status == "released")).all()
    assert grant.epsilon_spent_units == grant.epsilon_total_units == 10**9
    assert others == []  # no member fell back to a grant of their own
    assert {g for _user, g in charged_to} == {grant_id}
    assert sorted(u for u, _g in charged_to) == sorted(released)

    charges, _ = svc.audit.page(AuditFilter(action="query.charge", outcome="ok",
                                            grant_id=grant_id), page=1, size=500)
    assert len(charges) == 10 and {c["request_id"] for c in charges} == {app["id"]}
    assert sum(Decimal(c["epsilon"]) for c in charges) == Decimal(1)
    denied, _ = svc.audit.page(AuditFilter(action="query", outcome="denied"), page=1, size=500)
    assert len(denied) == jobs - 10
    assert all(d["detail"]["code"] == "budget_exhausted" for d in denied)
    assert svc.audit.verify().ok
    svc.store.dispose()

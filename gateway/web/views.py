"""What a page shows when it needs more than one service call (read-only compositions)."""

from __future__ import annotations

import json
from dataclasses import asdict
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from gateway.bootstrap import Services
from gateway.services.audit import AuditFilter
from gateway.services.common import Principal
from gateway.web.words import action_groups


def admin_overview(svc: Services, actor: Principal) -> dict[str, Any]:
    """What waits for an administrator, and the state of each dataset's budget."""
    return {
        "applications": svc.access.list(actor, status="pending"),
        "reviews": svc.queries.list(actor, status="pending_review"),
        "datasets": svc.catalog.list(actor),
    }


def analyst_overview(svc: Services, actor: Principal) -> dict[str, Any]:
    grants = svc.ledger.list(actor)
    return {
        "applications": svc.access.list(actor),
        "grants": grants,
        "left": budget_left(grants),
        "queries": svc.queries.list(actor, limit=10),
        "datasets": svc.catalog.list(actor),
    }


def catalog_view(svc: Services, actor: Principal) -> dict[str, Any]:
    """The catalog with the reader's budget left and pending application on each dataset."""
    analyst = actor.role in ("researcher", "enterprise")
    grants = svc.ledger.list(actor) if analyst else []  # others would see everyone's
    pending = {a["dataset"]: a["id"] for a in svc.access.list(actor, status="pending")
               } if analyst else {}
    return {
        "datasets": svc.catalog.list(actor),
        "left_by_dataset": {r["dataset"]: r for r in budget_left(grants)},
        "pending": pending,
    }


def with_accuracy(svc: Services, actor: Principal,
                  queries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Held queries with the cost and accuracy their release would have (the query
    service's reviewer view: computed from the query, the policy and the loss alone)."""
    out = []
    for query in queries:
        review = svc.queries.get(actor, query["id"]).get("review") or {}
        accuracy = review.get("accuracy") or {"error": review.get("problem") or "not available"}
        out.append({**query, "expected_accuracy": accuracy,
                    "review_summary": review.get("summary"),
                    "spec_text": json.dumps(query["spec"], indent=2, sort_keys=True)})
    return out


def audit_log(svc: Services, flt: AuditFilter, *, page: int, size: int) -> dict[str, Any]:
    """One page of the log, the chain's check (the entries after the last verified one are
    recomputed; the entire chain on demand), and the filters as they were set."""
    entries, total = svc.audit.page(flt, page=page, size=size)
    check = svc.audit.check()
    pages = max(1, -(-total // size))
    filters = {k: v for k, v in asdict(flt).items() if v}
    return {
        "chain": check.report, "check": check, "entries": entries, "total": total, "page": page,
        "pages": pages, "filters": filters, "action_groups": action_groups(),
        "page_link": lambda n: "/console/audit?" + urlencode({**filters, "page": n}),
    }


Limits = dict[str, dict[str, Decimal]]  # unit ("epsilon", "rho") -> name -> limit


def chart_limits(svc: Services, actor: Principal) -> tuple[Limits, Limits]:
    """Each dataset's cap, and the budget granted to each analyst in total (their own grants
    and their org's, which they share), in the unit of each dataset's accounting: rho for
    zCDP, epsilon for pure DP."""
    caps: Limits = {"epsilon": {}, "rho": {}}
    for dataset in svc.catalog.list(actor):
        unit = "rho" if dataset.get("accounting") == "zcdp" else "epsilon"
        cap = dataset.get(f"dataset_{unit}_cap")
        if cap is not None:
            caps[unit][dataset["name"]] = Decimal(str(cap))
    orgs: dict[str, list[str]] = {}
    for user in svc.users.list(actor):
        if user.get("org"):
            orgs.setdefault(user["org"], []).append(user["username"])
    granted: Limits = {"epsilon": {}, "rho": {}}
    for grant in svc.ledger.list(actor):
        unit = "rho" if grant.get("accounting") == "zcdp" else "epsilon"
        holders = [grant["user"]] if grant["user"] else orgs.get(grant["org"] or "", [])
        for name in holders:
            total = granted[unit].get(name, Decimal(0))
            granted[unit][name] = total + Decimal(str(grant[f"{unit}_total"]))
    return caps, granted


def budget_left(grants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per dataset, the epsilon left across all of the analyst's active grants (own and org)."""
    totals: dict[str, dict[str, Any]] = {}
    for grant in grants:
        if grant["status"] != "active":
            continue
        row = totals.setdefault(grant["dataset"], {"dataset": grant["dataset"], "grants": 0,
                                                   "total": Decimal(0), "spent": Decimal(0)})
        row["grants"] += 1
        row["total"] += Decimal(str(grant["epsilon_total"]))
        row["spent"] += Decimal(str(grant["epsilon_spent"]))
    return [{**r, "left": r["total"] - r["spent"], "total": float(r["total"]),
             "spent": float(r["spent"])} for _name, r in sorted(totals.items())]


def active_grants_for(application: dict[str, Any]) -> list[dict[str, Any]]:
    """The applicant's active grants on the applied-for dataset (the same holder: the user,
    or the org for an org application): approving would add a second one."""
    grants = (application.get("context") or {}).get("grants") or []
    org = application.get("org")
    return [g for g in grants if g["dataset"] == application["dataset"]
            and g["status"] == "active"
            and ((g.get("org") == org and not g.get("user")) if org
                 else g.get("user") == application["applicant"])]

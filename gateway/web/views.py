"""What a page shows when it needs more than one service call (read-only compositions)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any
from urllib.parse import urlencode

from gateway.bootstrap import Services
from gateway.services.audit import AuditFilter
from gateway.services.common import Principal


def admin_overview(svc: Services, actor: Principal) -> dict[str, Any]:
    """What waits for an administrator, and the state of each dataset's budget."""
    return {
        "applications": svc.access.list(actor, status="pending"),
        "reviews": svc.queries.list(actor, status="pending_review"),
        "datasets": svc.catalog.list(actor),
    }


def analyst_overview(svc: Services, actor: Principal) -> dict[str, Any]:
    return {
        "applications": svc.access.list(actor),
        "grants": svc.ledger.list(actor),
        "queries": svc.queries.list(actor, limit=100),
        "datasets": svc.catalog.list(actor),
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
                    "spec_text": json.dumps(query["spec"], indent=2, sort_keys=True)})
    return out


def audit_log(svc: Services, flt: AuditFilter, *, page: int, size: int) -> dict[str, Any]:
    """One page of the log, the chain's verification, and the filters as they were set."""
    entries, total = svc.audit.page(flt, page=page, size=size)
    pages = max(1, -(-total // size))
    filters = {k: v for k, v in asdict(flt).items() if v}
    return {
        "chain": svc.audit.verify(), "entries": entries, "total": total, "page": page,
        "pages": pages, "filters": filters,
        "page_link": lambda n: "/console/audit?" + urlencode({**filters, "page": n}),
    }

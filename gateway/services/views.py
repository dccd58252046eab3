"""The JSON shapes the API, the console and the CLI show, made from the store's records."""

from __future__ import annotations

import json
from typing import Any

from gateway.adapters.db import Tx
from gateway.domain.records import Application, Grant, QueryRecord
from gateway.services.accounting import loss_fields, remaining_fields, total_fields


def grant_view(grant: Grant) -> dict[str, Any]:
    """A grant; a zCDP grant also shows its rho, and epsilon_* are then OpenDP's conversions
    of rho_* at its conversion_delta (docs/zcdp.md)."""
    total, spent, left = grant.total, grant.spent, grant.remaining
    return {
        "id": grant.id, "user": grant.username, "org": grant.org, "dataset": grant.dataset,
        "epsilon_total": total.epsilon_float, "epsilon_spent": spent.epsilon_float,
        "epsilon_remaining": left.epsilon_float,
        "delta_total": total.delta_float, "delta_spent": spent.delta_float,
        "delta_remaining": left.delta_float,
        "created_at": grant.created_at, "expires_at": grant.expires_at,
        "status": grant.shown_status, "created_by": grant.created_by,
        "request_id": grant.request_id,
        "revoked_at": grant.revoked_at, "revoke_reason": grant.revoke_reason,
        **total_fields(total, spent, grant.conversion_delta.delta_float),
    }


def budget_view(grant: Grant) -> dict[str, Any]:
    """What is left on the grant a query drew on (shown with every answer)."""
    left = grant.remaining
    return {"grant_id": grant.id, "epsilon_remaining": left.epsilon_float,
            "delta_remaining": left.delta_float,
            **remaining_fields(grant.total, grant.spent, grant.conversion_delta.delta_float)}


def application_view(app: Application, grant: Grant | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": app.id, "applicant": app.applicant, "dataset": app.dataset,
        "org_grant": app.org is not None, "org": app.org, "purpose": app.purpose,
        "epsilon": app.epsilon.epsilon_float, "days": app.days,
        "status": app.status, "auto_approved": app.auto_approved,
        "created_at": app.created_at, "decided_by": app.decided_by,
        "decided_at": app.decided_at, "note": app.note, "grant_id": app.grant_id,
    }
    if grant is not None:
        out["grant"] = grant_view(grant)
    return out


def query_summary(record: QueryRecord) -> dict[str, Any]:
    out = {"id": record.id, "user": record.username, "status": record.status,
           "epsilon": record.cost.epsilon_float, "grant_id": record.grant_id,
           "created_at": record.created_at}
    if record.cost.rho_units:
        out["rho"] = record.cost.rho_float
    return out


def query_view(record: QueryRecord, grant: Grant | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": record.id, "user": record.username, "dataset": record.dataset,
        "status": record.status, "spec": json.loads(record.spec_json), "sql": record.sql_text,
        "epsilon": record.cost.epsilon_float, "delta": record.cost.delta_float,
        "grant_id": record.grant_id, "request_id": grant.request_id if grant else None,
        "created_at": record.created_at, "finished_at": record.finished_at,
        "reviewed_by": record.reviewed_by, "review_note": record.review_note,
        "dataset_version": record.dataset_version, "error": record.error,
        "recovered": record.recovered,
    }
    if record.cost.rho_units:  # zCDP: rho, and its epsilon when the grant's delta is known
        out.update(accounting="zcdp", rho=record.cost.rho_float, conversion_delta=None)
        if grant is not None and grant.conversion_delta.delta_units:
            out.update(loss_fields(record.cost, grant.conversion_delta.delta_float))
    if record.status == "released" and record.result_json:
        result = json.loads(record.result_json)
        out.update(columns=result["columns"], rows=result["rows"],
                   accuracy=json.loads(record.accuracy_json or "{}"))
    return out


def trace(tx: Tx, grant: Grant | None) -> dict[str, Any]:
    """From a grant back to the application and the decision behind it (for auditors)."""
    if grant is None:
        return {"grant": None, "application": None}
    application = tx.applications.get(grant.request_id)
    return {
        "grant": {"id": grant.id, "user": grant.username, "org": grant.org,
                  "created_by": grant.created_by, "created_at": grant.created_at,
                  "status": grant.status, "revoked_by": grant.revoked_by,
                  "revoked_at": grant.revoked_at},
        "application": application_view(application) if application else None,
    }

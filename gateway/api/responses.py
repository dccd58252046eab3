"""What every ``/v1`` route answers, as pydantic models (``response_model``), so that
``/v1/openapi.json`` documents each response.

Routes of an :func:`answer_router` answer with ``response_model_exclude_unset``: a field the
service did not send (``rows`` of a held query, ``context`` for an analyst) stays absent
rather than ``null``.
Models allow extra fields, so a newer service may add one (e.g. zCDP's ``rho``) before its
model does; the client library reads these shapes the same way (sandbox/client/_shapes.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict


class AnswerRoute(APIRoute):
    """A route that leaves out of its answer what the service did not send."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **(kwargs | {"response_model_exclude_unset": True}))


def answer_router(tag: str) -> APIRouter:
    """The router of one ``/v1`` resource: its routes declare a model, absent stays absent."""
    return APIRouter(tags=[tag], route_class=AnswerRoute)


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(Answer):
    code: str
    message: str
    query_id: str | None = None  # release_pending: the charged query, to fetch by id later


class ErrorBody(Answer):
    """Every refusal: ``{"error": {"code", "message"}}`` (codes in README "Notes")."""

    error: ErrorDetail


class TokenAnswer(Answer):
    access_token: str
    token_type: str
    expires_in: int


class Me(Answer):
    username: str
    role: str
    org: str | None = None
    scope: str


class UserAnswer(Answer):
    username: str
    role: str
    org: str | None = None
    disabled: bool
    created_at: str


class ColumnInfo(Answer):
    type: str
    description: str = ""
    description_zh: str = ""


class DatasetAnswer(Answer):
    """A catalog entry; admins and auditors also see what was spent, and ``describe`` adds
    the public policy."""

    name: str
    title: str
    description: str = ""
    domain: str
    access: str
    columns: dict[str, ColumnInfo]
    version: str
    title_zh: str = ""
    description_zh: str = ""
    default_epsilon: float | None = None
    max_epsilon_per_grant: float | None = None
    epsilon_spent: float | None = None
    dataset_epsilon_cap: float | None = None
    registered_at: str | None = None
    policy: dict[str, Any] | None = None
    # "zcdp": charged in rho (docs/zcdp.md); admins and auditors see rho spent and the cap
    accounting: str = "pure"
    rho_spent: float | None = None
    dataset_rho_cap: float | None = None


class DummyAnswer(Answer):
    dataset: str
    synthetic: bool
    columns: list[str]
    rows: list[list[Any]]


class GrantAnswer(Answer):
    id: str
    user: str | None = None
    org: str | None = None
    dataset: str
    epsilon_total: float
    epsilon_spent: float
    epsilon_remaining: float
    delta_total: float
    delta_spent: float
    delta_remaining: float
    created_at: str
    expires_at: str
    status: str
    created_by: str
    request_id: str | None = None
    revoked_at: str | None = None
    revoke_reason: str | None = None  # why an admin revoked it (shown to the holder)
    # zCDP datasets (docs/zcdp.md): the grant holds rho; epsilon_* are then OpenDP's
    # conversions of rho_* at conversion_delta
    accounting: str = "pure"
    rho_total: float | None = None
    rho_spent: float | None = None
    rho_remaining: float | None = None
    conversion_delta: float | None = None


class ApplicationAnswer(Answer):
    id: str
    applicant: str
    dataset: str
    org_grant: bool
    org: str | None = None
    purpose: str
    epsilon: float
    days: int
    status: str
    auto_approved: bool
    created_at: str
    decided_by: str | None = None
    decided_at: str | None = None
    note: str | None = None
    grant_id: str | None = None
    grant: GrantAnswer | None = None
    context: dict[str, Any] | None = None  # admins and auditors: what a decision weighs


class BudgetLeft(Answer):
    grant_id: str
    epsilon_remaining: float
    delta_remaining: float
    accounting: str = "pure"
    rho_remaining: float | None = None  # zCDP; epsilon_remaining is then its conversion
    conversion_delta: float | None = None


class QueryAnswer(Answer):
    """A query: released (``columns``, ``rows``, ``accuracy``; when just run also
    ``cached``, ``epsilon_charged``, ``delta_charged``, ``budget``), or its record
    (``pending_review``, ``rejected``, ``error``, ...) with the spec and the review."""

    id: str
    status: str
    dataset: str
    cached: bool | None = None
    columns: list[str] | None = None
    rows: list[list[Any]] | None = None
    accuracy: dict[str, Any] | None = None
    epsilon_charged: float | None = None
    delta_charged: float | None = None
    budget: BudgetLeft | None = None
    user: str | None = None
    spec: dict[str, Any] | None = None
    sql: str | None = None
    epsilon: float | None = None
    delta: float | None = None
    grant_id: str | None = None
    request_id: str | None = None
    created_at: str | None = None
    finished_at: str | None = None
    reviewed_by: str | None = None
    review_note: str | None = None
    dataset_version: str | None = None
    trace: dict[str, Any] | None = None    # admins and auditors: grant and application
    review: dict[str, Any] | None = None   # admins, while held: cost, accuracy, purpose
    error: str | None = None       # why it ended in ``error`` (the charge stands)
    recovered: bool | None = None  # finished by recovery after its first process stopped
    accounting: str | None = None  # zCDP: rho charged / spent, epsilon its conversion
    rho_charged: float | None = None
    rho: float | None = None
    conversion_delta: float | None = None
    replayed: bool | None = None   # a retry with the same Idempotency-Key: the first attempt


class PreviewAnswer(Answer):
    dataset: str
    columns: list[str]
    epsilon: float
    delta: float
    accuracy: dict[str, Any]
    access: str
    budget: BudgetLeft | None = None
    accounting: str = "pure"
    rho: float | None = None  # zCDP: the loss in rho; epsilon is its conversion
    conversion_delta: float | None = None


class AuditEntry(Answer):
    seq: int
    at: str
    actor: str | None = None
    role: str | None = None
    action: str
    dataset: str | None = None
    request_id: str | None = None
    grant_id: str | None = None
    query_id: str | None = None
    epsilon: str | None = None
    delta: str | None = None
    outcome: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(Answer):
    entries: list[AuditEntry]
    total: int
    page: int
    page_size: int


class ChainAnswer(Answer):
    ok: bool
    entries: int
    head: str
    first_bad_seq: int | None = None
    problem: str | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": what} for status, what in (
        (401, "unauthenticated"), (403, "forbidden, grant_required, grant_expired"),
        (404, "not_found"), (409, "conflict, budget_exhausted"),
        (422, "invalid_request, unsupported_query"), (500, "internal (a bug)"),
        (503, "unavailable (the store; see Retry-After), release_pending (charged, the "
              "store failed before the release: GET the query by query_id later)"))
}

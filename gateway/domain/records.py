"""What the store holds, as frozen values (the repositories in gateway/adapters/db return these).

Budgets are :class:`~gateway.domain.budget.Budget` values, times are ISO 8601 text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gateway.domain.budget import Budget


@dataclass(frozen=True)
class User:
    username: str
    role: str
    org: str | None
    disabled: bool
    created_at: str
    password_hash: str = ""
    failed_logins: int = 0
    locked_until: str | None = None
    id: int | None = None


@dataclass(frozen=True)
class DatasetRow:
    """A registered dataset as stored (the catalog turns it into a DatasetRecord)."""

    name: str
    version: str
    policy_json: str
    file_name: str
    row_count: int
    spent: Budget  # epsilon and delta charged on this dataset, for its caps
    registered_at: str


@dataclass(frozen=True)
class Grant:
    id: str
    username: str | None
    org: str | None
    dataset: str
    total: Budget
    spent: Budget
    status: str
    created_at: str
    expires_at: str
    created_by: str
    request_id: str | None = None
    revoked_by: str | None = None
    revoked_at: str | None = None
    revoke_reason: str | None = None
    # zCDP grants (total.rho_units > 0): the delta at which their rho is shown as epsilon
    conversion_delta: Budget = field(default_factory=Budget)

    @property
    def zcdp(self) -> bool:
        return self.total.rho_units > 0

    @property
    def remaining(self) -> Budget:
        return self.total - self.spent

    def expired(self, moment: datetime | None = None) -> bool:
        return datetime.fromisoformat(self.expires_at) <= (moment or datetime.now(UTC))

    def usable(self, moment: datetime | None = None) -> bool:
        return self.status == "active" and not self.expired(moment)

    @property
    def shown_status(self) -> str:
        """``expired`` for an active grant past its end, else the stored status."""
        return "expired" if self.status == "active" and self.expired() else self.status


@dataclass(frozen=True)
class Application:
    """A data-use application (``org`` set: for a grant the whole org shares)."""

    id: str
    applicant: str
    org: str | None
    dataset: str
    purpose: str
    epsilon: Budget
    days: int
    status: str
    auto_approved: bool
    created_at: str
    decided_by: str | None = None
    decided_at: str | None = None
    note: str | None = None
    grant_id: str | None = None


@dataclass(frozen=True)
class QueryRecord:
    """One release (or attempt): its spec, cost, state and, once released, its result."""

    id: str
    username: str
    dataset: str
    dataset_version: str
    grant_id: str | None
    query_key: str
    spec_json: str
    sql_text: str | None
    status: str
    cost: Budget
    created_at: str
    result_json: str | None = None
    accuracy_json: str | None = None
    finished_at: str | None = None
    reviewed_by: str | None = None
    review_note: str | None = None
    error: str | None = None
    runner: str | None = None  # the gateway process computing it while ``running``
    idempotency_key: str | None = None
    recovered: bool = False  # finished by recovery after its first process stopped
    review_json: str | None = None  # held: the reviewers' preview, computed when it was held

    @property
    def kind(self) -> str:
        """What is released: ``query`` (a DP query) unless its spec names another kind."""
        spec = json.loads(self.spec_json)
        return str(spec.get("kind", "query")) if isinstance(spec, dict) else "query"

"""The gateway's answers as small typed values (design.md, "HTTP API").

Each shape is a frozen dataclass read from the JSON with :meth:`from_json`, which keeps
the fields it knows and ignores the others (a newer gateway may add some). Shapes are
also readable as ``shape["field"]`` and turn into a plain dict with ``as_dict()``, as the
plain answers of version 0.1 were.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sandbox.client._i18n import _

__all__ = ["Account", "Application", "BudgetLeft", "Grant", "GrantBudget", "QueryStatus"]

_S = TypeVar("_S", bound="_Shape")


def _number(value: Any) -> float:
    return 0.0 if value is None else float(value)


class _Shape:
    """Reading from JSON, ``shape["field"]`` and ``as_dict()`` for every shape."""

    _floats: tuple[str, ...] = ()

    @classmethod
    def from_json(cls: type[_S], data: Mapping[str, Any]) -> _S:
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        values = {k: v for k, v in data.items() if k in known}
        for name in cls._floats:
            if name in values:
                values[name] = _number(values[name])
        return cls(**values)

    def __getitem__(self, name: str) -> Any:
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name, default)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]


@dataclass(frozen=True)
class Account(_Shape):
    """``GET /v1/me``: who the token belongs to."""

    username: str
    role: str
    org: str | None = None
    scope: str | None = None


@dataclass(frozen=True)
class Application(_Shape):
    """A data-use application (``POST/GET /v1/requests``)."""

    id: str
    dataset: str = ""
    status: str = ""
    purpose: str = ""
    epsilon: float | None = None
    days: int | None = None
    applicant: str | None = None
    org: str | None = None
    org_grant: bool = False
    auto_approved: bool = False
    grant_id: str | None = None
    decided_by: str | None = None
    decided_at: str | None = None
    note: str | None = None
    created_at: str | None = None


@dataclass(frozen=True)
class Grant(_Shape):
    """A grant of budget on one dataset (``GET /v1/grants``)."""

    _floats = ("epsilon_total", "epsilon_spent", "epsilon_remaining", "delta_total",
               "delta_spent", "delta_remaining", "rho_total", "rho_spent", "rho_remaining")

    id: str
    dataset: str
    status: str
    epsilon_total: float = 0.0
    epsilon_spent: float = 0.0
    epsilon_remaining: float = 0.0
    delta_total: float = 0.0
    delta_spent: float = 0.0
    delta_remaining: float = 0.0
    # zCDP datasets (docs/zcdp.md): the grant holds rho; epsilon_* are OpenDP's conversions
    # of rho_* at conversion_delta
    accounting: str = "pure"
    rho_total: float = 0.0
    rho_spent: float = 0.0
    rho_remaining: float = 0.0
    conversion_delta: float | None = None
    created_at: str | None = None
    expires_at: str | None = None
    user: str | None = None
    org: str | None = None
    created_by: str | None = None
    request_id: str | None = None
    revoked_at: str | None = None
    revoke_reason: str | None = None  # why an admin revoked it

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True)
class GrantBudget(_Shape):
    """``budget`` of a released answer: what is left on the grant that paid."""

    _floats = ("epsilon_remaining", "delta_remaining", "rho_remaining")

    grant_id: str
    epsilon_remaining: float = 0.0
    delta_remaining: float = 0.0
    accounting: str = "pure"
    rho_remaining: float = 0.0


@dataclass(frozen=True)
class QueryStatus(_Shape):
    """A submitted query (``GET /v1/queries/{id}``); ``columns``/``rows`` once released."""

    id: str
    dataset: str = ""
    status: str = ""
    user: str | None = None
    epsilon: float | None = None
    delta: float | None = None
    grant_id: str | None = None
    request_id: str | None = None
    dataset_version: str | None = None
    sql: str | None = None
    spec: dict[str, Any] | None = None
    created_at: str | None = None
    finished_at: str | None = None
    reviewed_by: str | None = None
    review_note: str | None = None

    @property
    def group_by(self) -> list[str]:
        return list((self.spec or {}).get("group_by") or ())


@dataclass(frozen=True, repr=False)
class BudgetLeft(_Shape):
    """What the analyst can still spend on one dataset, summed over every active grant."""

    dataset: str
    epsilon: float
    delta: float
    grants: tuple[Grant, ...] = field(default=())
    rho: float = 0.0  # zCDP grants' rho left (epsilon: their conversions, added up)

    @classmethod
    def of(cls, dataset: str, grants: Iterable[Grant]) -> BudgetLeft:
        usable = tuple(g for g in grants if g.dataset == dataset and g.active)
        return cls(dataset=dataset, epsilon=sum(g.epsilon_remaining for g in usable),
                   delta=sum(g.delta_remaining for g in usable), grants=usable,
                   rho=sum(g.rho_remaining for g in usable))

    def __float__(self) -> float:
        return self.epsilon

    def __repr__(self) -> str:
        if not self.grants:
            return _("{dataset}: no active grant").format(dataset=self.dataset)
        if any(g.accounting == "zcdp" for g in self.grants):
            return _("{dataset}: rho left {rho} (epsilon {epsilon} at delta {conversion}), "
                     "delta left {delta}, over {count} active grant(s)").format(
                dataset=self.dataset, rho=f"{self.rho:.4g}", epsilon=f"{self.epsilon:.4g}",
                conversion=f"{self.grants[0].conversion_delta or 0:.2g}",
                delta=f"{self.delta:.2g}", count=len(self.grants))
        return _("{dataset}: epsilon left {epsilon}, delta left {delta}, over {count} active "
                 "grant(s)").format(dataset=self.dataset, epsilon=f"{self.epsilon:.4g}",
                                    delta=f"{self.delta:.2g}", count=len(self.grants))

"""How a dataset's grants are counted, in one place: pure (epsilon) or zCDP (rho).

A policy's ``accounting`` decides (docs/zcdp.md):

- ``pure``: queries and grants are (epsilon, delta); the ledger adds epsilons.
- ``zcdp``: queries and grants are (rho, delta); the ledger adds rhos, exact integers of
  1e-12. Analysts and admins may still speak epsilon: an epsilon is turned into the largest
  rho whose OpenDP conversion at the policy's delta is within it, and every rho is shown
  with the epsilon it implies at that delta (OpenDP's ``make_zCDP_to_approxDP``). The delta
  of a zCDP loss is what thresholded group keys spend, charged like a pure query's delta.

A grant is zCDP when it holds rho (``rho_units > 0``); a grant never holds both. A zCDP
grant keeps the delta at which its rho is shown as epsilon (its policy's delta when it was
given), so what it shows never changes under it.
"""

from __future__ import annotations

from typing import Any

from gateway.adapters.dp import epsilon_for_rho, rho_units_for_epsilon
from gateway.domain.budget import Budget
from gateway.domain.errors import InvalidRequest
from gateway.domain.query import QuerySpec, resolve_loss, resolve_zcdp_loss
from gateway.i18n import _l
from gateway.policy import Policy

__all__ = [
    "dataset_cap", "epsilon_at", "grant_budget", "is_zcdp", "loss_fields", "query_loss",
    "remaining_fields", "total_fields",
]


def is_zcdp(policy: Policy) -> bool:
    return policy.accounting == "zcdp"


def rho_of_epsilon(policy: Policy, epsilon: float) -> Budget:
    """The rho an epsilon buys on this dataset: never more than (epsilon, policy delta)."""
    units = rho_units_for_epsilon(epsilon, policy.delta)
    if units <= 0:
        raise InvalidRequest(_l("epsilon %(epsilon)s is too small to buy any rho (1e-12) on "
                                "dataset %(dataset)s", epsilon=epsilon, dataset=policy.name))
    return Budget(rho_units=units)


def query_loss(spec: QuerySpec, policy: Policy, *, epsilon: Any, delta: Any, rho: Any) -> Budget:
    """What a query spends: (epsilon, delta) on a pure dataset, (rho, delta) on a zCDP one,
    asked for in rho or in epsilon (converted)."""
    if not is_zcdp(policy):
        if rho is not None:
            raise InvalidRequest(_l("dataset %(dataset)s uses pure accounting: ask in epsilon, "
                                    "not rho", dataset=policy.name))
        return resolve_loss(spec, policy, epsilon=epsilon, delta=delta)
    if (rho is None) == (epsilon is None):
        raise InvalidRequest(_l("give either epsilon or rho (dataset %(dataset)s uses zCDP "
                                "accounting)", dataset=policy.name))
    if rho is None:
        asked = resolve_loss(spec, policy, epsilon=epsilon, delta=delta)
        rho = rho_of_epsilon(policy, asked.epsilon_float).rho
    return resolve_zcdp_loss(spec, policy, rho=rho, delta=delta)


def grant_budget(policy: Policy, *, epsilon: Budget, delta: Budget) -> Budget:
    """A grant's budget from an epsilon (already checked against the policy's limits) and
    its delta: rho on a zCDP dataset."""
    if not is_zcdp(policy):
        return epsilon + delta
    return rho_of_epsilon(policy, epsilon.epsilon_float) + delta


def dataset_cap(policy: Policy) -> Budget:
    """The dataset-wide cap, in the dataset's own unit (rho under zCDP)."""
    if not is_zcdp(policy):
        return Budget.of(policy.budget.dataset_epsilon_cap)
    if policy.budget.dataset_rho_cap is not None:
        return Budget.rho_at_most(policy.budget.dataset_rho_cap)
    return rho_of_epsilon(policy, policy.budget.dataset_epsilon_cap)


def loss_fields(loss: Budget, conversion_delta: float) -> dict[str, Any]:
    """A query's cost for a response: epsilon and delta, and rho under zCDP (with the
    epsilon it implies at ``conversion_delta``)."""
    if not loss.rho_units:
        return {"accounting": "pure", "epsilon": loss.epsilon_float, "delta": loss.delta_float}
    return {"accounting": "zcdp", "rho": loss.rho_float,
            "epsilon": epsilon_at(loss, conversion_delta), "delta": loss.delta_float,
            "conversion_delta": conversion_delta}


def epsilon_at(rho: Budget, delta: float) -> float:
    """The epsilon that ``rho`` implies at ``delta`` (OpenDP's conversion), rounded to the
    ledger's epsilon unit (1e-9) for display."""
    return round(epsilon_for_rho(rho.rho_float, delta), 9)


def total_fields(total: Budget, spent: Budget, conversion_delta: float) -> dict[str, Any]:
    """A grant's budget as shown: for a zCDP grant its rho and, in epsilon_*, OpenDP's
    conversions at the grant's conversion delta; for a pure grant only the accounting."""
    if not total.rho_units:
        return {"accounting": "pure"}
    left = Budget(rho_units=max(total.rho_units - spent.rho_units, 0))
    return {
        "accounting": "zcdp", "conversion_delta": conversion_delta,
        "rho_total": total.rho_float, "rho_spent": spent.rho_float, "rho_remaining": left.rho_float,
        "epsilon_total": epsilon_at(Budget(rho_units=total.rho_units), conversion_delta),
        "epsilon_spent": epsilon_at(Budget(rho_units=spent.rho_units), conversion_delta),
        "epsilon_remaining": epsilon_at(left, conversion_delta),
    }


def remaining_fields(total: Budget, spent: Budget, conversion_delta: float) -> dict[str, Any]:
    """What is left of a grant, in both forms under zCDP."""
    fields = total_fields(total, spent, conversion_delta)
    return {k: v for k, v in fields.items()
            if k in ("accounting", "rho_remaining", "epsilon_remaining", "conversion_delta")}

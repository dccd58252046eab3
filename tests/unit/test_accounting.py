"""Per-dataset accounting (gateway/services/accounting.py): losses, grant budgets, caps and
the (epsilon, delta) shown for rho, which must equal OpenDP's conversion."""

from __future__ import annotations

import math
from typing import Any

import opendp.prelude as dp
import pytest

from gateway.domain.budget import Budget
from gateway.domain.errors import InvalidRequest
from gateway.domain.query import Aggregate
from gateway.policy import Policy
from gateway.services import accounting
from tests.unit.test_engine import make_policy, spec

DELTA = 1e-7


def zpolicy(**budget: Any) -> Policy:
    values: dict[str, Any] = {"default_epsilon": 1.0, "max_epsilon_per_grant": 5.0,
                              "dataset_epsilon_cap": 100.0, "delta": DELTA, **budget}
    return make_policy(accounting="zcdp", budget=values)


def opendp_epsilon(rho: float, delta: float) -> float:
    """OpenDP's conversion of a real Gaussian mechanism whose privacy map is ``rho``."""
    scale = 1 / math.sqrt(2 * rho)
    gaussian = dp.m.make_gaussian(dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float),
                                  scale)
    assert gaussian.map(1.0) == pytest.approx(rho, rel=1e-12)
    return float(dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(gaussian), delta).map(1.0)[0])


def test_pure_datasets_are_unchanged() -> None:
    policy = make_policy()
    loss = accounting.query_loss(spec(Aggregate("count")), policy, epsilon=0.5, delta=None, rho=None)
    assert loss == Budget.of(0.5)
    with pytest.raises(InvalidRequest, match="pure accounting"):
        accounting.query_loss(spec(Aggregate("count")), policy, epsilon=None, delta=None, rho=0.1)
    assert accounting.dataset_cap(policy) == Budget.of(100)
    assert accounting.total_fields(Budget.of(1), Budget.of(0.5), 1e-7) == {"accounting": "pure"}


def test_a_zcdp_query_in_epsilon_costs_the_rho_opendp_converts_it_to() -> None:
    policy = zpolicy()
    loss = accounting.query_loss(spec(Aggregate("count")), policy, epsilon=0.1, delta=None, rho=None)
    assert loss.is_zcdp and loss.epsilon_units == 0 and loss.delta_units == 0
    assert opendp_epsilon(loss.rho_float, DELTA) <= 0.1
    assert opendp_epsilon(loss.rho_float * 1.000001, DELTA) > 0.1  # the largest such rho
    fields = accounting.loss_fields(loss, policy.delta)
    assert fields["rho"] == loss.rho_float and fields["epsilon"] == pytest.approx(0.1, abs=1e-9)


def test_a_zcdp_query_in_rho_and_thresholded_keys_delta() -> None:
    policy = zpolicy()
    loss = accounting.query_loss(spec(Aggregate("count"), group_by=("carrier",)), policy,
                                 epsilon=None, delta=None, rho=0.002)
    assert loss == Budget.zcdp(0.002, DELTA)  # the policy's per-query delta for the keys
    with pytest.raises(InvalidRequest, match="either epsilon or rho"):
        accounting.query_loss(spec(Aggregate("count")), policy, epsilon=0.1, delta=None, rho=0.1)
    with pytest.raises(InvalidRequest, match="either epsilon or rho"):
        accounting.query_loss(spec(Aggregate("count")), policy, epsilon=None, delta=None, rho=None)
    for bad in (True, "x", -1, 0, float("nan"), 1e400):
        with pytest.raises(InvalidRequest):
            accounting.query_loss(spec(Aggregate("count")), policy, epsilon=None, delta=None,
                                  rho=bad)


def test_grant_budget_and_its_epsilon_equal_opendps_conversion() -> None:
    policy = zpolicy()
    budget = accounting.grant_budget(policy, epsilon=Budget.of(1.0), delta=Budget.of(0, 1e-5))
    assert budget.epsilon_units == 0 and budget.delta == Budget.of(0, 1e-5).delta
    spent = Budget(rho_units=budget.rho_units // 3)
    fields = accounting.total_fields(budget, spent, policy.delta)
    assert fields["accounting"] == "zcdp" and fields["conversion_delta"] == DELTA
    assert fields["rho_total"] == budget.rho_float
    assert fields["rho_remaining"] == (budget.rho_units - spent.rho_units) / 10**12
    for name, rho in (("total", budget.rho_float), ("spent", spent.rho_float),
                      ("remaining", fields["rho_remaining"])):
        assert fields[f"epsilon_{name}"] == pytest.approx(opendp_epsilon(rho, DELTA), abs=1e-9)
    assert fields["epsilon_total"] == pytest.approx(1.0, abs=1e-9)


def test_the_dataset_cap_is_in_rho() -> None:
    assert accounting.dataset_cap(zpolicy(dataset_rho_cap=2.5)) == Budget.zcdp(2.5)
    converted = accounting.dataset_cap(zpolicy())
    assert converted.is_zcdp and opendp_epsilon(converted.rho_float, DELTA) <= 100

"""Zero-concentrated DP in (epsilon, delta) terms, converted by OpenDP.

A rho-zCDP guarantee (with an approximate part ``keys_delta``: what thresholded group keys
spend) implies (epsilon, keys_delta + delta)-DP for every delta > 0. The epsilon is OpenDP's
own: ``make_fix_delta(make_zCDP_to_approxDP(m), keys_delta + delta)`` of a measurement whose
privacy map is exactly (rho, keys_delta). The other way, the rho an epsilon buys is the
largest rho whose conversion stays within epsilon (OpenDP's binary search), rounded down to
the ledger's rho unit, so that the exact rho charged never implies more than the epsilon
asked for.

Both are pure functions of their arguments and cached.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from typing import Any

os.environ["RUST_BACKTRACE"] = "0"  # before opendp loads: a backtrace costs ~80 ms per error

import opendp.prelude as dp

from gateway.domain.budget import Budget
from gateway.domain.errors import InvalidRequest
from gateway.i18n import _l

dp.enable_features("contrib", "honest-but-curious")  # a user measurement with a fixed map

__all__ = ["epsilon_for_rho", "rho_for_epsilon", "rho_units_for_epsilon"]

MAX_RHO = 100.0  # (epsilon > 100): OpenDP's conversion overflows somewhere above 1e3


def _fixed_loss(rho: float, keys_delta: float) -> Any:
    """A measurement whose privacy map is exactly (rho, keys_delta) (or rho): the loss alone,
    so that OpenDP's conversion combinators can be applied to it."""
    approximate = keys_delta > 0
    measure = dp.zero_concentrated_divergence()
    return dp.m.make_user_measurement(
        dp.atom_domain(T=int),
        dp.absolute_distance(T=int),
        dp.approximate(measure) if approximate else measure,
        function=lambda _data: 0,
        privacy_map=(lambda _d: (rho, keys_delta)) if approximate else (lambda _d: rho),
        TO="ExtrinsicObject",
    )


@lru_cache(maxsize=4096)
def epsilon_for_rho(rho: float, delta: float, keys_delta: float = 0.0) -> float:
    """The epsilon of the (epsilon, keys_delta + delta)-DP guarantee that (rho, keys_delta)
    approximate zCDP implies, by OpenDP's conversion."""
    if not (math.isfinite(rho) and 0 <= rho <= MAX_RHO * 2):
        raise InvalidRequest(_l("rho must be a number from 0 to %(max)s, got %(rho)s",
                                max=MAX_RHO * 2, rho=str(rho)))
    if not 0 < delta < 1 or not 0 <= keys_delta < 1:
        raise InvalidRequest(_l("delta must be in (0, 1) to express rho as epsilon, got %(delta)s",
                                delta=str(delta)))
    if rho == 0:
        return 0.0
    converted = dp.c.make_fix_delta(
        dp.c.make_zCDP_to_approxDP(_fixed_loss(rho, keys_delta)), keys_delta + delta
    )
    return float(converted.map(1)[0])


@lru_cache(maxsize=4096)
def rho_for_epsilon(epsilon: float, delta: float) -> float:
    """The largest rho whose OpenDP conversion at ``delta`` is at most ``epsilon``."""
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise InvalidRequest(_l("epsilon must be a finite number > 0, got %(epsilon)s",
                                epsilon=str(epsilon)))
    if epsilon_for_rho(MAX_RHO, delta) <= epsilon:
        raise InvalidRequest(_l("epsilon %(epsilon)s is beyond what zCDP accounting converts "
                                "(rho at most %(max)s)", epsilon=epsilon, max=MAX_RHO))
    return float(
        dp.binary_search(
            lambda rho: epsilon_for_rho(rho, delta) <= epsilon, bounds=(0.0, MAX_RHO), T=float
        )
    )


def rho_units_for_epsilon(epsilon: float, delta: float) -> int:
    """:func:`rho_for_epsilon` in the ledger's exact units, rounded down (never more)."""
    units = Budget.rho_at_most(rho_for_epsilon(epsilon, delta)).rho_units
    while units > 0 and epsilon_for_rho(Budget(rho_units=units).rho_float, delta) > epsilon:
        units -= 1
    return units

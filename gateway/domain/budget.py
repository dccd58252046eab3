"""Privacy budget as exact integers: epsilon in units of 1e-9, delta in units of 1e-18,
rho (zero-concentrated DP) in units of 1e-12.

Budgets are money-like: they are added and compared many times, so they are never
accumulated as floats. A requested float is quantised once, and the quantised value is
the one both spent in the mechanism and charged to the ledger.

A budget is either pure / approximate DP (epsilon, delta) or zero-concentrated DP
(rho, delta): a zCDP loss has ``rho_units > 0`` and no epsilon; its delta is what
thresholded group keys spend (OpenDP's approximate zCDP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from gateway.domain.errors import InvalidRequest
from gateway.domain.text import _l

EPSILON_UNIT = Decimal("1e-9")
DELTA_UNIT = Decimal("1e-18")
EPSILON_SCALE = 10**9
DELTA_SCALE = 10**18
RHO_UNIT = Decimal("1e-12")
RHO_SCALE = 10**12
MAX_RHO = 100  # a zCDP loss above this is beyond any sensible (epsilon, delta)
MAX_EPSILON = 10**6  # far above any sensible loss; bigger values cannot even be floats


def _to_units(value: float | str | Decimal, unit: Decimal, what: str) -> int:
    if isinstance(value, bool):
        raise InvalidRequest(_l("%(what)s must be a number, not a boolean", what=what))
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequest(_l("%(what)s must be a finite number, got %(value)s", what=what, value=value))
    try:
        exact = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise InvalidRequest(_l("%(what)s must be a number, got %(value)s", what=what,
                                value=repr(value))) from exc
    if not exact.is_finite():
        raise InvalidRequest(_l("%(what)s must be a finite number, got %(value)s", what=what, value=value))
    return int((exact / unit).to_integral_value(rounding=ROUND_HALF_EVEN))


@dataclass(frozen=True, order=True)
class Budget:
    """An (epsilon, delta) pair, or a (rho, delta) pair under zCDP, held exactly."""

    epsilon_units: int = 0
    delta_units: int = 0
    rho_units: int = 0

    @classmethod
    def of(cls, epsilon: float | str | Decimal, delta: float | str | Decimal = 0) -> Budget:
        return cls(
            _to_units(epsilon, EPSILON_UNIT, "epsilon"),
            _to_units(delta, DELTA_UNIT, "delta"),
        )

    @classmethod
    def zcdp(cls, rho: float | str | Decimal, delta: float | str | Decimal = 0) -> Budget:
        return cls(0, _to_units(delta, DELTA_UNIT, "delta"), _to_units(rho, RHO_UNIT, "rho"))

    @classmethod
    def rho_at_most(cls, rho: float) -> Budget:
        """A zCDP budget of the largest whole number of rho units not above ``rho``."""
        return cls(0, 0, math.floor(Decimal(repr(float(rho))) / RHO_UNIT))

    @classmethod
    def zcdp_loss(cls, rho: object, delta: object = 0) -> Budget:
        """The loss a zCDP query asks to spend: rho > 0 and finite, delta in [0, 1)."""
        if isinstance(rho, bool) or not isinstance(rho, int | float | str | Decimal):
            raise InvalidRequest(_l("rho must be a number"))
        if isinstance(delta, bool) or not isinstance(delta, int | float | str | Decimal):
            raise InvalidRequest(_l("delta must be a number"))
        loss = cls.zcdp(rho, delta)
        if loss.rho_units <= 0:
            raise InvalidRequest(_l("rho must be greater than 0 (at least 1e-12), got %(rho)s",
                                    rho=str(rho)))
        if loss.rho_units > MAX_RHO * RHO_SCALE:
            raise InvalidRequest(_l("rho must be at most %(max)s", max=MAX_RHO))
        if loss.delta_units < 0 or loss.delta_units >= DELTA_SCALE:
            raise InvalidRequest(_l("delta must be in [0, 1), got %(delta)s", delta=str(delta)))
        return loss

    @classmethod
    def query_loss(cls, epsilon: object, delta: object = 0) -> Budget:
        """The loss a query asks to spend: epsilon > 0 and finite, delta in [0, 1)."""
        if not isinstance(epsilon, int | float | str | Decimal):
            raise InvalidRequest(_l("epsilon must be a number"))
        if not isinstance(delta, int | float | str | Decimal):
            raise InvalidRequest(_l("delta must be a number"))
        loss = cls.of(epsilon, delta)
        if loss.epsilon_units <= 0:
            raise InvalidRequest(_l(
                "epsilon must be greater than 0 (at least 1e-9), got %(epsilon)s",
                epsilon=epsilon))
        if loss.epsilon_units > MAX_EPSILON * EPSILON_SCALE:
            raise InvalidRequest(_l("epsilon must be at most %(max)s", max=MAX_EPSILON))
        if loss.delta_units < 0 or loss.delta_units >= DELTA_SCALE:
            raise InvalidRequest(_l("delta must be in [0, 1), got %(delta)s", delta=delta))
        return loss

    @property
    def epsilon(self) -> Decimal:
        return Decimal(self.epsilon_units) * EPSILON_UNIT

    @property
    def delta(self) -> Decimal:
        return Decimal(self.delta_units) * DELTA_UNIT

    @property
    def rho(self) -> Decimal:
        return Decimal(self.rho_units) * RHO_UNIT

    @property
    def rho_float(self) -> float:
        return self.rho_units / RHO_SCALE

    @property
    def is_zcdp(self) -> bool:
        """A zCDP loss (a query's); a grant says its accounting itself."""
        return self.rho_units > 0 and self.epsilon_units == 0

    @property
    def epsilon_text(self) -> str:
        """Exact decimal text (what the audit log stores), e.g. ``"0.25"``."""
        return _plain(Decimal(self.epsilon_units) * EPSILON_UNIT)

    @property
    def delta_text(self) -> str:
        return _plain(Decimal(self.delta_units) * DELTA_UNIT)

    @property
    def rho_text(self) -> str:
        return _plain(Decimal(self.rho_units) * RHO_UNIT)

    @property
    def epsilon_float(self) -> float:
        return self.epsilon_units / EPSILON_SCALE

    @property
    def delta_float(self) -> float:
        return self.delta_units / DELTA_SCALE

    def __add__(self, other: Budget) -> Budget:
        return Budget(self.epsilon_units + other.epsilon_units, self.delta_units + other.delta_units,
                      self.rho_units + other.rho_units)

    def __sub__(self, other: Budget) -> Budget:
        return Budget(self.epsilon_units - other.epsilon_units, self.delta_units - other.delta_units,
                      self.rho_units - other.rho_units)

    def covers(self, cost: Budget) -> bool:
        return (self.epsilon_units >= cost.epsilon_units and self.delta_units >= cost.delta_units
                and self.rho_units >= cost.rho_units)

    def within_bounds(self) -> bool:
        """Both parts are non-negative and delta is below 1."""
        return self.epsilon_units >= 0 and 0 <= self.delta_units < DELTA_SCALE

    def split(self, parts: int) -> Budget:
        """An even share; the remainder stays unspent, so shares never add up to more."""
        return Budget(self.epsilon_units // parts, self.delta_units // parts, self.rho_units // parts)


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"

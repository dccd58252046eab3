"""What every engine's query plan shares: the alpha check, the one release, the answer's shape.

    class Plan(StagedPlan):            # the polars engine; the Spark engine's SparkPlan alike
        def _accuracy_by_alias(self, alpha): ...   # OpenDP's half-widths; alpha checked
        def _noisy_frames(self): ...               # reads the data, draws the noise

:class:`StagedPlan` is the port's plan over a compiled :class:`~.compiler.Blueprint`:
``accuracy()`` spends nothing; ``release()`` claims the plan's one release first (a second
call, from any thread, is an :class:`InternalError`), then has the engine read the data and
draw the noise, one frame per stage, and assembles them with :mod:`.results`, so both
engines answer in the same shape. :class:`ReleaseOnce` is that claim on its own, for the
fit plans (synthetic data, models), which release something else.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import polars as pl

from gateway.adapters.dp.compiler import Blueprint
from gateway.adapters.dp.results import accuracy, assemble, collect_cells
from gateway.domain.errors import InternalError, InvalidRequest
from gateway.domain.query import QuerySpec
from gateway.domain.text import Text, _l

__all__ = ["Release", "ReleaseOnce", "StagedPlan", "checked_alpha"]


@dataclass(frozen=True)
class Release:
    columns: list[str]
    rows: list[list[object]]
    accuracy: dict[str, float | None]


class ReleaseOnce:
    """A plan's one release: the first :meth:`claim` wins, every later one is refused."""

    def __init__(self, refusal: Text | None = None) -> None:
        self._refusal = refusal or _l("a plan is released at most once")
        self._lock = threading.Lock()
        self._claimed = False

    def claim(self) -> None:
        with self._lock:
            if self._claimed:
                raise InternalError(self._refusal)
            self._claimed = True


def checked_alpha(alpha: float) -> float:
    if not 0 < alpha < 1:
        raise InvalidRequest(_l("alpha must be between 0 and 1, got %(alpha)s", alpha=alpha))
    return alpha


@dataclass
class StagedPlan(ABC):
    spec: QuerySpec
    blueprint: Blueprint
    output_columns: list[str] = field(init=False)
    _once: ReleaseOnce = field(default_factory=ReleaseOnce, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.output_columns = self.spec.output_columns

    @abstractmethod
    def _accuracy_by_alias(self, alpha: float) -> dict[str, float | None]:
        """OpenDP's (1 - alpha) noise half-width per internal alias; alpha is checked."""

    @abstractmethod
    def _noisy_frames(self) -> list[pl.DataFrame]:
        """Read the data and draw the noise: one frame per stage, as :mod:`.results` reads it."""

    def _by_alias(self, alpha: float) -> dict[str, float | None]:
        return self._accuracy_by_alias(checked_alpha(alpha))

    def accuracy(self, alpha: float = 0.05) -> dict[str, float | None]:
        """Half-width of the (1 - alpha) noise interval per output column, as OpenDP's
        summarize reports it (histograms: one per bin; quantiles and means: None)."""
        return accuracy(self.blueprint, self._by_alias(alpha), None)

    def release(self, *, alpha: float = 0.05) -> Release:
        """Read the data and draw the noise, once. The Release's mean accuracy is derived
        from the released counts (see :func:`gateway.adapters.dp.results.accuracy`)."""
        by_alias = self._by_alias(alpha)  # a bad alpha is refused before the claim
        self._once.claim()
        return self._answer(by_alias, self._noisy_frames())

    def _answer(self, by_alias: dict[str, float | None], frames: list[pl.DataFrame]) -> Release:
        """The stages' noisy frames as the answer: rows in the spec's order, and accuracy."""
        keyed = collect_cells(self.blueprint, frames)
        return Release(
            columns=list(self.output_columns),
            rows=assemble(self.blueprint, keyed),
            accuracy=accuracy(self.blueprint, by_alias, keyed),
        )

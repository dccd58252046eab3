"""What a query would cost and how accurate it would be, before anything is spent."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sandbox.client._i18n import _
from sandbox.client._shapes import GrantBudget


@dataclass(frozen=True)
class Preview:
    """``POST /v1/queries/preview``: cost, expected accuracy, the paying grant; nothing spent."""

    dataset: str
    epsilon: float
    delta: float
    alpha: float
    accuracy: dict[str, float | None]
    access: str
    budget: GrantBudget | None = field(default=None)

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> Preview:
        accuracy = dict(answer.get("accuracy") or {})
        alpha = float(accuracy.pop("alpha", 0.05))
        budget = answer.get("budget")
        return cls(dataset=str(answer.get("dataset")), epsilon=float(answer["epsilon"]),
                   delta=float(answer.get("delta") or 0.0), alpha=alpha,
                   accuracy={k: (None if v is None else float(v)) for k, v in accuracy.items()},
                   access=str(answer.get("access", "")),
                   budget=GrantBudget.from_json(budget) if budget else None)

    @property
    def epsilon_left(self) -> float | None:
        return None if not self.budget else self.budget.epsilon_remaining

    @property
    def affordable(self) -> bool | None:
        """Whether the current grant can pay for it (None: no grant yet)."""
        left = self.epsilon_left
        return None if left is None else left + 1e-12 >= self.epsilon

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"column": list(self.accuracy),
                             "accuracy": [self.accuracy[c] for c in self.accuracy]})

    def _left(self) -> str:
        if self.epsilon_left is None:
            return _("no grant yet")
        return _("epsilon left on your grant: {left}").format(left=f"{self.epsilon_left:.4g}")

    def __repr__(self) -> str:
        unknown = _("no estimate")
        acc = ", ".join(f"{k} ±{v:.4g}" if v is not None else f"{k} ({unknown})"
                        for k, v in self.accuracy.items())
        return _("Preview({dataset}: epsilon {epsilon}, delta {delta}; {accuracy} at "
                 "{level}; {left})").format(
            dataset=self.dataset, epsilon=f"{self.epsilon:g}", delta=f"{self.delta:g}",
            accuracy=acc, level=f"{1 - self.alpha:.0%}", left=self._left())

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{'-' if v is None else f'±{v:.4g}'}</td></tr>"
            for k, v in self.accuracy.items())
        title = _("preview of a query on {dataset}: would cost epsilon {epsilon}, delta "
                  "{delta}; nothing spent").format(dataset=self.dataset,
                                                   epsilon=f"{self.epsilon:g}",
                                                   delta=f"{self.delta:g}")
        header = _("{level} noise half-width").format(level=f"{1 - self.alpha:.0%}")
        column = _("column")
        return (f"<div><b>{html.escape(title)}</b><br><table><tr><th>"
                f"{html.escape(column)}</th><th>{html.escape(header)}</th></tr>{rows}"
                f"</table>{html.escape(self._left())}</div>")

"""One dataset of the catalog: its public schema, dummy rows and DP queries on it."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from sandbox.client._pending import PendingQuery
from sandbox.client._results import DPResult, histogram_long
from sandbox.client._spec import Columns, Histograms, Quantiles, as_list, build_select, query_body
from sandbox.client._where import Where

if TYPE_CHECKING:
    from sandbox.client._gateway import Gateway

DEFAULT_TIMEOUT = 300.0
_DTYPES = {"int": "Int64", "float": "Float64", "bool": "boolean", "str": "string"}


@dataclass(frozen=True)
class Preview:
    """What a query would cost and how accurate it would be; nothing was spent."""

    dataset: str
    epsilon: float
    delta: float
    alpha: float
    accuracy: dict[str, float | None]
    access: str
    budget: dict[str, Any] | None = field(default=None)

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> Preview:
        accuracy = dict(answer.get("accuracy") or {})
        alpha = float(accuracy.pop("alpha", 0.05))
        return cls(dataset=str(answer.get("dataset")), epsilon=float(answer["epsilon"]),
                   delta=float(answer.get("delta") or 0.0), alpha=alpha,
                   accuracy={k: (None if v is None else float(v)) for k, v in accuracy.items()},
                   access=str(answer.get("access", "")), budget=answer.get("budget"))

    @property
    def epsilon_left(self) -> float | None:
        return None if not self.budget else float(self.budget["epsilon_remaining"])

    @property
    def affordable(self) -> bool | None:
        """Whether the current grant can pay for it (None: no grant yet)."""
        left = self.epsilon_left
        return None if left is None else left + 1e-12 >= self.epsilon

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"column": list(self.accuracy),
                             "accuracy": [self.accuracy[c] for c in self.accuracy]})

    def __repr__(self) -> str:
        acc = ", ".join(f"{k} ±{v:.4g}" if v is not None else f"{k} (no estimate)"
                        for k, v in self.accuracy.items())
        left = "no grant yet" if self.epsilon_left is None else f"epsilon left {self.epsilon_left:.4g}"
        return (f"Preview({self.dataset}: epsilon {self.epsilon:g}, delta {self.delta:g}; "
                f"{acc} at {1 - self.alpha:.0%}; {left})")

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{'-' if v is None else f'±{v:.4g}'}</td></tr>"
            for k, v in self.accuracy.items())
        left = ("no grant yet" if self.epsilon_left is None
                else f"epsilon left on your grant: {self.epsilon_left:.4g}")
        return (f"<div><b>preview of a query on {html.escape(self.dataset)}</b> - would cost "
                f"epsilon {self.epsilon:g}, delta {self.delta:g}; nothing spent<br>"
                f"<table><tr><th>column</th><th>{1 - self.alpha:.0%} noise half-width</th></tr>"
                f"{rows}</table>{html.escape(left)}</div>")


class Dataset:
    """``gw.dataset("flights")``: schema, dummy rows, previews and DP queries."""

    def __init__(self, gateway: Gateway, info: dict[str, Any]) -> None:
        self._gw = gateway
        self.info = info
        self.name: str = info["name"]
        self.title: str = info.get("title", "")
        self.description: str = (info.get("description") or "").strip()
        self.access: str = info.get("access", "")
        self.domain: str = info.get("domain", "")
        self.version: str = info.get("version", "")
        self.policy: dict[str, Any] = info.get("policy") or {}

    # -- looking ---------------------------------------------------------------------

    @property
    def columns(self) -> list[str]:
        return list((self.policy.get("columns") or self.info.get("columns") or {}).keys())

    @property
    def schema(self) -> pd.DataFrame:
        """The public schema: type, bounds, categories, nullability, description."""
        cols = self.policy.get("columns") or self.info.get("columns") or {}
        return pd.DataFrame([
            {"column": name, "type": c.get("type"), "bounds": c.get("bounds"),
             "categories": c.get("categories"), "nullable": bool(c.get("nullable", False)),
             "description": c.get("description") or ""}
            for name, c in cols.items()
        ]).set_index("column")

    @property
    def budget_policy(self) -> dict[str, Any]:
        return dict(self.policy.get("budget") or {})

    def dummy(self, rows: int = 200) -> pd.DataFrame:
        """Synthetic rows drawn from the public policy only (free; NOT the real data)."""
        answer = self._gw._session.get(f"/v1/datasets/{self.name}/dummy", rows=rows)
        frame = pd.DataFrame(answer["rows"], columns=answer["columns"])
        cols = self.policy.get("columns") or {}
        for name in frame.columns:
            dtype = _DTYPES.get((cols.get(name) or {}).get("type", ""))
            if dtype:
                frame[name] = frame[name].astype(dtype)  # type: ignore[call-overload]
        frame.attrs.update(dataset=self.name, synthetic=True)
        return frame

    def request_access(self, *, purpose: str, epsilon: float | None = None,
                       days: int | None = None, org_grant: bool = False) -> dict[str, Any]:
        return self._gw.request_access(self.name, purpose=purpose, epsilon=epsilon, days=days,
                                       org_grant=org_grant)

    def preview(self, *, epsilon: float, delta: float | None = None, count: bool = False,
                sum: Columns = None, mean: Columns = None, quantile: Quantiles = None,
                histogram: Histograms = None, select: Sequence[Any] | None = None,
                by: Columns = None, where: Where = None) -> Preview:
        """Cost and expected accuracy of a query, without spending anything."""
        body = query_body(self.name, select=build_select(
            count=count, sum=sum, mean=mean, quantile=quantile, histogram=histogram,
            select=select), where=where, group_by=by, epsilon=epsilon, delta=delta)
        return Preview.from_answer(self._gw._session.post("/v1/queries/preview", body))

    # -- DP queries: each spends from your grant ---------------------------------------

    def query(self, *, epsilon: float, delta: float | None = None, count: bool = False,
              sum: Columns = None, mean: Columns = None, quantile: Quantiles = None,
              histogram: Histograms = None, select: Sequence[Any] | None = None,
              where: Where = None, group_by: Columns = None, by: Columns = None,
              order_by: Any = None, limit: int | None = None, wait: bool = True,
              timeout: float | None = DEFAULT_TIMEOUT) -> DPResult | PendingQuery:
        """The full structured form: select (or shorthands), where, group_by, order_by, limit."""
        keys = as_list(group_by) + as_list(by)
        body = query_body(self.name, select=build_select(
            count=count, sum=sum, mean=mean, quantile=quantile, histogram=histogram,
            select=select), where=where, group_by=keys, order_by=order_by, limit=limit,
            epsilon=epsilon, delta=delta)
        return self._gw._run(body, group_by=keys, wait=wait, timeout=timeout)

    def _shaped(self, body: dict[str, Any], shape: Callable[[DPResult], DPResult], *,
                wait: bool, timeout: float | None) -> DPResult | PendingQuery:
        return self._gw._run(body, group_by=body["group_by"], wait=wait, timeout=timeout,
                             shape=shape)

    def count(self, *, epsilon: float, by: Columns = None, where: Where = None,
              delta: float | None = None, wait: bool = True,
              timeout: float | None = DEFAULT_TIMEOUT) -> DPResult | PendingQuery:
        return self.query(count=True, by=by, where=where, epsilon=epsilon, delta=delta,
                          wait=wait, timeout=timeout)

    def sum(self, column: Columns, *, epsilon: float, by: Columns = None, where: Where = None,
            delta: float | None = None, wait: bool = True,
            timeout: float | None = DEFAULT_TIMEOUT) -> DPResult | PendingQuery:
        return self.query(sum=column, by=by, where=where, epsilon=epsilon, delta=delta,
                          wait=wait, timeout=timeout)

    def mean(self, column: Columns, *, epsilon: float, by: Columns = None, where: Where = None,
             delta: float | None = None, wait: bool = True,
             timeout: float | None = DEFAULT_TIMEOUT) -> DPResult | PendingQuery:
        return self.query(mean=column, by=by, where=where, epsilon=epsilon, delta=delta,
                          wait=wait, timeout=timeout)

    def quantile(self, column: str, q: float | Sequence[float], *, epsilon: float,
                 by: Columns = None, where: Where = None, delta: float | None = None,
                 wait: bool = True,
                 timeout: float | None = DEFAULT_TIMEOUT) -> DPResult | PendingQuery:
        return self.query(quantile={column: q}, by=by, where=where, epsilon=epsilon,
                          delta=delta, wait=wait, timeout=timeout)

    def histogram(self, column: str, bins: Sequence[float], *, epsilon: float,
                  by: Columns = None, where: Where = None, delta: float | None = None,
                  wait: bool = True,
                  timeout: float | None = DEFAULT_TIMEOUT) -> DPResult | PendingQuery:
        """Counts per public bin [lo, hi), one row per (group, bin)."""
        body = query_body(self.name, select=build_select(histogram={column: bins}),
                          where=where, group_by=by, epsilon=epsilon, delta=delta)
        keys = as_list(by)
        return self._shaped(body, lambda r: histogram_long(r, column=column, group_by=keys),
                            wait=wait, timeout=timeout)

    # -- display -------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"<Dataset {self.name} ({self.access}): {self.title}>"

    def _repr_html_(self) -> str:
        schema = self.schema.to_html(na_rep="", notebook=True)
        return (f"<div><h4>{html.escape(self.name)}: {html.escape(self.title)}</h4>"
                f"<p>{html.escape(self.description)}</p><p>domain <b>{html.escape(self.domain)}"
                f"</b>, access <b>{html.escape(self.access)}</b>, version "
                f"<code>{html.escape(self.version)}</code></p>{schema}</div>")

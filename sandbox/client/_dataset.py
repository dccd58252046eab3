"""One dataset of the catalog: its public schema, dummy rows and DP queries on it."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from sandbox.client._errors import DPSandboxError, InvalidRequest
from sandbox.client._i18n import _
from sandbox.client._models import DPPCA, DPLinearRegression, synthetic_frame, wait_for_release
from sandbox.client._pending import PendingQuery
from sandbox.client._preview import Preview
from sandbox.client._results import DPResult, histogram_long
from sandbox.client._shapes import Application, BudgetLeft
from sandbox.client._spec import Columns, Histograms, Quantiles, as_list, build_select, query_body
from sandbox.client._suggest import did_you_mean
from sandbox.client._where import Where

if TYPE_CHECKING:
    from sandbox.client._gateway import Gateway

__all__ = ["Dataset", "Preview"]

_DTYPES = {"int": "Int64", "float": "Float64", "bool": "boolean", "str": "string"}


def used_columns(body: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(column, where it is used) for every column a structured query body names."""
    used = [(str(item["column"]), str(item.get("agg", "select")))
            for item in body.get("select") or () if item.get("column")]
    used += [(str(name), "group_by") for name in body.get("group_by") or ()]
    used += [(str(f["column"]), "where") for f in body.get("where") or ()
             if isinstance(f, Mapping) and f.get("column")]
    return used


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
        answer = self._gw.runner.get(f"/v1/datasets/{self.name}/dummy", rows=rows)
        frame = pd.DataFrame(answer["rows"], columns=answer["columns"])
        cols = self.policy.get("columns") or {}
        for name in frame.columns:
            dtype = _DTYPES.get((cols.get(name) or {}).get("type", ""))
            if dtype:
                frame[name] = frame[name].astype(dtype)  # type: ignore[call-overload]
        frame.attrs.update(dataset=self.name, synthetic=True)
        return frame

    def budget_left(self) -> BudgetLeft:
        """Epsilon and delta you can still spend here, over all your active grants."""
        return self._gw.budget_left(self.name)

    @property
    def epsilon_left(self) -> float:
        """Epsilon left here over all your active grants (0 without a grant)."""
        return self.budget_left().epsilon

    def request_access(self, *, purpose: str, epsilon: float | None = None,
                       days: int | None = None, org_grant: bool = False) -> Application:
        return self._gw.request_access(self.name, purpose=purpose, epsilon=epsilon, days=days,
                                       org_grant=org_grant)

    def preview(self, *, epsilon: float | None = None, delta: float | None = None,
                count: bool = False, sum: Columns = None, mean: Columns = None,
                quantile: Quantiles = None, histogram: Histograms = None,
                select: Sequence[Any] | None = None, by: Columns = None, where: Where = None,
                rho: float | None = None) -> Preview:
        """Cost and expected accuracy of a query, without spending anything (``rho``
        instead of ``epsilon`` on zCDP datasets, docs/zcdp.md)."""
        body = query_body(self.name, select=build_select(
            count=count, sum=sum, mean=mean, quantile=quantile, histogram=histogram,
            select=select), where=where, group_by=by, epsilon=epsilon, delta=delta, rho=rho)
        return self._gw.runner.preview(self._checked(body))

    # -- DP queries: each spends from your grant ---------------------------------------

    def query(self, *, epsilon: float | None = None, delta: float | None = None,
              count: bool = False, sum: Columns = None, mean: Columns = None,
              quantile: Quantiles = None, histogram: Histograms = None,
              select: Sequence[Any] | None = None, where: Where = None,
              group_by: Columns = None, by: Columns = None, order_by: Any = None,
              limit: int | None = None, wait: bool = False, timeout: float | None = None,
              rho: float | None = None) -> DPResult | PendingQuery:
        """The full structured form: select (or shorthands), where, group_by, order_by, limit.
        On a zCDP dataset the loss may be given as ``rho`` instead of ``epsilon``.

        Each DP query spends from your grant. On restricted data it returns a
        :class:`PendingQuery` at once (``.result()`` waits for the review); ``wait=True``
        (up to 300 s) or ``timeout=seconds`` waits here instead.
        """
        keys = as_list(group_by) + as_list(by)
        body = query_body(self.name, select=build_select(
            count=count, sum=sum, mean=mean, quantile=quantile, histogram=histogram,
            select=select), where=where, group_by=keys, order_by=order_by, limit=limit,
            epsilon=epsilon, delta=delta, rho=rho)
        return self._gw.runner.run(self._checked(body), group_by=keys, wait=wait,
                                   timeout=timeout)

    def _shaped(self, body: dict[str, Any], shape: Callable[[DPResult], DPResult], *,
                wait: bool, timeout: float | None) -> DPResult | PendingQuery:
        return self._gw.runner.run(self._checked(body), group_by=body["group_by"], wait=wait,
                                   timeout=timeout, shape=shape)

    def _checked(self, body: dict[str, Any]) -> dict[str, Any]:
        """Refuse a column this dataset does not have, with the closest name, before sending."""
        known = self.columns
        for name, role in used_columns(body) if known else ():
            if name not in known:
                raise InvalidRequest(
                    _("dataset {dataset} has no column {name} ({role})").format(
                        dataset=self.name, name=name, role=role) + did_you_mean(name, known),
                    status=422)
        return body

    def count(self, *, epsilon: float, by: Columns = None, where: Where = None,
              delta: float | None = None, wait: bool = False,
              timeout: float | None = None) -> DPResult | PendingQuery:
        return self.query(count=True, by=by, where=where, epsilon=epsilon, delta=delta,
                          wait=wait, timeout=timeout)

    def sum(self, column: Columns, *, epsilon: float, by: Columns = None, where: Where = None,
            delta: float | None = None, wait: bool = False,
            timeout: float | None = None) -> DPResult | PendingQuery:
        return self.query(sum=column, by=by, where=where, epsilon=epsilon, delta=delta,
                          wait=wait, timeout=timeout)

    def mean(self, column: Columns, *, epsilon: float, by: Columns = None, where: Where = None,
             delta: float | None = None, wait: bool = False,
             timeout: float | None = None) -> DPResult | PendingQuery:
        return self.query(mean=column, by=by, where=where, epsilon=epsilon, delta=delta,
                          wait=wait, timeout=timeout)

    def quantile(self, column: str, q: float | Sequence[float], *, epsilon: float,
                 by: Columns = None, where: Where = None, delta: float | None = None,
                 wait: bool = False,
                 timeout: float | None = None) -> DPResult | PendingQuery:
        return self.query(quantile={column: q}, by=by, where=where, epsilon=epsilon,
                          delta=delta, wait=wait, timeout=timeout)

    def histogram(self, column: str, bins: Sequence[float], *, epsilon: float,
                  by: Columns = None, where: Where = None, delta: float | None = None,
                  wait: bool = False,
                  timeout: float | None = None) -> DPResult | PendingQuery:
        """Counts per public bin [lo, hi), one row per (group, bin)."""
        body = query_body(self.name, select=build_select(histogram={column: bins}),
                          where=where, group_by=by, epsilon=epsilon, delta=delta)
        keys = as_list(by)
        return self._shaped(body, lambda r: histogram_long(r, column=column, group_by=keys),
                            wait=wait, timeout=timeout)

    # -- DP synthetic rows and DP models: each spends from your grant ---------------------

    def _synthetic_body(self, rows: int, columns: Columns, epsilon: float, delta: float | None,
                        method: str, bins: int) -> dict[str, Any]:
        names = as_list(columns)
        self._checked_names(names, "synthetic")
        body: dict[str, Any] = {"dataset": self.name, "columns": names, "rows": rows,
                                "epsilon": epsilon, "method": method, "bins": bins}
        if delta is not None:
            body["delta"] = delta
        return body

    def synthetic(self, *, rows: int, columns: Columns, epsilon: float,
                  delta: float | None = None, method: str = "aim", bins: int = 10,
                  timeout: float | None = None) -> pd.DataFrame:
        """DP synthetic rows (AIM or MST, fitted by the gateway with OpenDP): realistic rows
        to build and debug a pipeline on. Numeric values are bin midpoints (``attrs["note"]``);
        ``attrs["marginals"]`` lists what was measured. Spends ``epsilon`` from your grant."""
        body = self._synthetic_body(rows, columns, epsilon, delta, method, bins)
        answer = wait_for_release(self._gw.runner.session,
                                  self._gw.runner.post("/v1/synthetic", body), timeout=timeout)
        return synthetic_frame(answer, self.policy.get("columns") or {})

    def preview_synthetic(self, *, rows: int, columns: Columns, epsilon: float,
                          delta: float | None = None, method: str = "aim",
                          bins: int = 10) -> Preview:
        """Cost of :meth:`synthetic`, and the accuracy of its one-way counts; spends nothing."""
        body = self._synthetic_body(rows, columns, epsilon, delta, method, bins)
        return Preview.from_answer(self._gw.runner.post("/v1/synthetic/preview", body))

    def _model_body(self, kind: str, epsilon: float, **fields: Any) -> dict[str, Any]:
        names = [*as_list(fields.get("x")), *as_list(fields.get("y")),
                 *as_list(fields.get("columns"))]
        self._checked_names(names, kind)
        return {"dataset": self.name, "kind": kind, "epsilon": epsilon,
                **{k: v for k, v in fields.items() if v is not None}}

    def linear_regression(self, *, y: str, x: Columns, epsilon: float,
                          timeout: float | None = None) -> DPLinearRegression:
        """A DP linear regression of ``y`` on ``x`` (one column: OpenDP's DP Theil-Sen),
        fitted on the real data; ``predict`` runs here. Spends ``epsilon``."""
        body = self._model_body("linear_regression", epsilon, x=as_list(x), y=y)
        answer = wait_for_release(self._gw.runner.session,
                                  self._gw.runner.post("/v1/models", body), timeout=timeout)
        return DPLinearRegression.from_answer(answer)

    def pca(self, *, columns: Columns, n_components: int, epsilon: float,
            timeout: float | None = None) -> DPPCA:
        """A DP PCA of numeric ``columns`` (OpenDP), fitted on the real data; ``transform``
        runs here. Spends ``epsilon``."""
        body = self._model_body("pca", epsilon, columns=as_list(columns),
                                components=n_components)
        answer = wait_for_release(self._gw.runner.session,
                                  self._gw.runner.post("/v1/models", body), timeout=timeout)
        return DPPCA.from_answer(answer)

    def preview_linear_regression(self, *, y: str, x: Columns, epsilon: float) -> Preview:
        body = self._model_body("linear_regression", epsilon, x=as_list(x), y=y)
        return Preview.from_answer(self._gw.runner.post("/v1/models/preview", body))

    def preview_pca(self, *, columns: Columns, n_components: int, epsilon: float) -> Preview:
        body = self._model_body("pca", epsilon, columns=as_list(columns),
                                components=n_components)
        return Preview.from_answer(self._gw.runner.post("/v1/models/preview", body))

    def _checked_names(self, names: Sequence[str], role: str) -> None:
        known = self.columns
        for name in names if known else ():
            if name not in known:
                raise InvalidRequest(
                    _("dataset {dataset} has no column {name} ({role})").format(
                        dataset=self.name, name=name, role=role) + did_you_mean(name, known),
                    status=422)

    # -- display -------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"<Dataset {self.name} ({self.access}): {self.title}>"

    def _access_text(self) -> str:
        texts = {"open": _("open: a grant is issued on first use"),
                 "conditional": _("conditional: an admin approves your application first"),
                 "restricted": _("restricted: approval, and an admin reviews each query")}
        return texts.get(self.access, self.access)

    def _budget_text(self) -> str:
        try:
            left = self.budget_left()
        except DPSandboxError:
            return ""
        if not left.grants:
            return _("no active grant yet")
        return _("epsilon left on your {count} active grant(s): {epsilon}").format(
            count=len(left.grants), epsilon=f"{left.epsilon:.4g}")

    def _repr_html_(self) -> str:
        schema = self.schema.to_html(na_rep="", notebook=True)
        facts = _("domain {domain}, access {access}, version {version}").format(
            domain=self.domain, access=self._access_text(), version=self.version)
        return (f"<div><h4>{html.escape(self.name)}: {html.escape(self.title)}</h4>"
                f"<p>{html.escape(self.description)}</p><p>{html.escape(facts)}</p>"
                f"<p><b>{html.escape(self._budget_text())}</b></p>{schema}</div>")

"""Released answers as pandas DataFrames, and the one-line budget note after each call.

A result is a :class:`DPResult`: a DataFrame whose aggregate columns are followed by
``<column>_accuracy`` (the half-width of the 95% noise interval, as the gateway reports
it; empty for quantiles) and whose ``attrs`` hold ``query_id``, ``dataset``,
``epsilon_charged``, ``delta_charged``, ``cached``, ``budget`` and ``alpha``. Frames
derived from it (``df.head()``, ``df[...]``) are plain DataFrames.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from sandbox.client._i18n import _

ACCURACY_SUFFIX = "_accuracy"


class DPResult(pd.DataFrame):
    """A released answer: a DataFrame that shows its cost and budget in Jupyter."""

    @property
    def _constructor(self) -> Any:
        return pd.DataFrame

    def _repr_html_(self) -> str | None:
        table = super()._repr_html_()
        return f"{table or ''}<div style='font-size:90%;color:#555'>{html.escape(note(self))}</div>"


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def budget_note(*, dataset: str, epsilon_charged: float, cached: bool,
                budget: Mapping[str, Any] | None, status: str | None = None,
                total_left: float | None = None) -> str:
    """One line: what the call cost and what is left (on this grant, and on all of them)."""
    if cached:
        cost = _("cached answer, nothing charged")
    else:
        cost = _("charged epsilon {epsilon}").format(epsilon=_fmt(epsilon_charged))
    parts = [f"{dataset}: " + (status or _("released")), cost]
    if budget:
        left = budget.get("epsilon_remaining")
        parts.append(_("epsilon left {left}").format(left=_fmt(left)))
        if total_left is not None and left is not None and abs(total_left - float(left)) > 1e-9:
            parts.append(_("all your grants on {dataset}: {total}").format(
                dataset=dataset, total=_fmt(total_left)))
        delta = budget.get("delta_remaining")
        if delta:
            parts.append(_("delta left {left}").format(left=f"{delta:.2g}"))
    return " | ".join(parts)


def note(frame: pd.DataFrame) -> str:
    attrs = frame.attrs
    if "query_id" not in attrs:
        return ""
    return budget_note(dataset=attrs.get("dataset", "?"),
                       epsilon_charged=attrs.get("epsilon_charged", 0.0),
                       cached=bool(attrs.get("cached")), budget=attrs.get("budget"),
                       total_left=attrs.get("epsilon_left_total"))


def _accuracy_for(column: str, accuracy: Mapping[str, Any]) -> Any:
    if column in accuracy:
        return accuracy[column]
    # a histogram's bin columns "histogram_x [0, 5)" may share one entry "histogram_x"
    head = column.split(" [", 1)[0]
    return accuracy.get(head)


def _has_accuracy(column: str, accuracy: Mapping[str, Any]) -> bool:
    return column in accuracy or column.split(" [", 1)[0] in accuracy


def result_frame(answer: Mapping[str, Any], *, group_by: Iterable[str] = (),
                 budget: Mapping[str, Any] | None = None) -> DPResult:
    """The gateway's released answer -> a DPResult with accuracy columns and attrs."""
    columns = list(answer["columns"])
    frame = pd.DataFrame(answer.get("rows") or [], columns=columns)
    accuracy = dict(answer.get("accuracy") or {})
    keys = set(group_by) | {c for c in columns if not _has_accuracy(c, accuracy)}
    ordered: dict[str, Any] = {}
    for column in columns:
        ordered[column] = frame[column]
        if column in keys:
            continue
        value = _accuracy_for(column, accuracy)
        ordered[column + ACCURACY_SUFFIX] = [math.nan if value is None else float(value)] * len(
            frame)
    result = DPResult(ordered, index=frame.index)
    result.attrs.update(
        query_id=answer.get("id"), dataset=answer.get("dataset"),
        epsilon_charged=float(answer.get("epsilon_charged", answer.get("epsilon", 0.0)) or 0.0),
        delta_charged=float(answer.get("delta_charged", answer.get("delta", 0.0)) or 0.0),
        cached=bool(answer.get("cached", False)),
        budget=dict(budget if budget is not None else answer.get("budget") or {}) or None,
        alpha=accuracy.get("alpha"),
    )
    return result


def histogram_long(frame: DPResult, *, column: str, group_by: list[str]) -> DPResult:
    """Wide histogram columns ``histogram_x [lo, hi)`` -> rows (groups..., bin, count)."""
    prefix = f"histogram_{column} "
    bins = [c for c in frame.columns if c.startswith(prefix) and not c.endswith(ACCURACY_SUFFIX)]
    rows = []
    for position, bin_column in enumerate(bins):
        part = pd.DataFrame({**{g: frame[g] for g in group_by},
                             "bin": bin_column[len(prefix):], "count": frame[bin_column],
                             "count" + ACCURACY_SUFFIX: frame.get(bin_column + ACCURACY_SUFFIX,
                                                                  math.nan)})
        part["_row"], part["_bin"] = range(len(frame)), position
        rows.append(part)
    long = pd.concat(rows) if rows else pd.DataFrame(
        columns=[*group_by, "bin", "count", "count" + ACCURACY_SUFFIX, "_row", "_bin"])
    long = long.sort_values(["_row", "_bin"]).drop(columns=["_row", "_bin"])
    result = DPResult(long.reset_index(drop=True))
    result.attrs.update(frame.attrs)
    return result


def records_frame(items: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """A listing (grants, requests, queries) with the interesting columns first."""
    frame = pd.DataFrame(items)
    if frame.empty:
        return pd.DataFrame(columns=columns)
    first = [c for c in columns if c in frame.columns]
    return frame[first + [c for c in frame.columns if c not in first]]

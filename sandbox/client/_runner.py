"""The one place that sends queries and turns the gateway's answers into results.

:class:`QueryRunner` is public: :class:`~sandbox.client.Gateway` and
:class:`~sandbox.client.Dataset` both go through it (``gw.runner``), and so can other
front ends. A query on restricted data is held for review: :meth:`QueryRunner.run`
returns a :class:`PendingQuery` at once unless told to wait.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sandbox.client._errors import DPSandboxError
from sandbox.client._i18n import _
from sandbox.client._pending import REVIEW_TIMEOUT, PendingQuery
from sandbox.client._preview import Preview
from sandbox.client._results import DPResult, budget_note, result_frame
from sandbox.client._session import Session
from sandbox.client._shapes import BudgetLeft, Grant

Shape = Callable[[DPResult], DPResult]

__all__ = ["QueryRunner"]


class QueryRunner:
    """Sends query bodies (structured or SQL) for one analyst and shapes the answers."""

    def __init__(self, session: Session, *, say: Callable[[str], None]) -> None:
        self.session = session
        self._say = say

    # -- plain calls -----------------------------------------------------------------------

    def get(self, path: str, **params: Any) -> Any:
        return self.session.get(path, **params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.session.post(path, body)

    # -- budgets ---------------------------------------------------------------------------

    def grants(self) -> list[Grant]:
        """Every grant the caller can see (own and their org's)."""
        return [Grant.from_json(g) for g in self.session.get("/v1/grants")]

    def budget_left(self, dataset: str, *, username: str | None = None,
                    org: str | None = None) -> BudgetLeft:
        """Epsilon and delta left on ``dataset``, summed over the analyst's active grants.

        An admin's listing holds everyone's grants: ``username``/``org`` keep the caller's.
        """
        mine = [g for g in self.grants()
                if username is None or g.user == username or (org is not None and g.org == org)]
        return BudgetLeft.of(dataset, mine)

    # -- queries ---------------------------------------------------------------------------

    def preview(self, body: Mapping[str, Any]) -> Preview:
        """Cost and expected accuracy of a query body; spends nothing."""
        return Preview.from_answer(self.session.post("/v1/queries/preview", dict(body)))

    def run(self, body: Mapping[str, Any], *, group_by: Iterable[str] = (), wait: bool = False,
            timeout: float | None = None, shape: Shape | None = None) -> DPResult | PendingQuery:
        """Run a query. Released at once: the DataFrame. Held for review: a PendingQuery,
        or its result when ``wait`` is true or a ``timeout`` is given (seconds to wait)."""
        # One key per query asked: a retry (connection lost, gateway restarting) returns
        # the first attempt's query and result, and is never charged again.
        answer = self.session.post("/v1/queries", dict(body), idempotency_key=uuid.uuid4().hex)
        keys = list(group_by) or list((answer.get("spec") or {}).get("group_by") or ())
        if answer.get("status") == "released":
            return self._shaped(self._released(answer, keys, cached=None), shape)
        pending = self.pending(answer, group_by=keys, shape=shape)
        if answer.get("status") == "running":  # a retry met its first attempt still computing
            return pending.result(timeout=REVIEW_TIMEOUT if timeout is None else timeout)
        self._say(_("{dataset}: query {id} is held for review by an admin (restricted data); "
                    "nothing is charged until it is released").format(
            dataset=pending.dataset, id=pending.id))
        if wait or timeout is not None:
            return pending.result(timeout=REVIEW_TIMEOUT if timeout is None else timeout)
        return pending

    def pending(self, view: Mapping[str, Any], *, group_by: Iterable[str] = (),
                shape: Shape | None = None) -> PendingQuery:
        """A handle on a submitted query; its result is shaped like a direct answer."""
        keys = list(group_by)
        return PendingQuery(self.session, view, finish=lambda v: self._shaped(
            self._released(v, keys, cached=False), shape))

    # -- answers -> results ----------------------------------------------------------------

    @staticmethod
    def _shaped(result: DPResult, shape: Shape | None) -> DPResult:
        return shape(result) if shape else result

    def _released(self, answer: Mapping[str, Any], keys: list[str], *,
                  cached: bool | None) -> DPResult:
        """A released answer (direct, or a reviewed query's view) as a DPResult."""
        budget = answer.get("budget")
        reviewed = cached is False  # a view after review: the budget is the grant's now
        if reviewed and answer.get("grant_id"):
            grant = Grant.from_json(self.session.get(f"/v1/grants/{answer['grant_id']}"))
            budget = {"grant_id": grant.id, "epsilon_remaining": grant.epsilon_remaining,
                      "delta_remaining": grant.delta_remaining}
        view = {**answer, "cached": False} if reviewed else answer
        result = result_frame(view, group_by=keys, budget=budget)
        if not result.attrs["cached"]:
            result.attrs["epsilon_left_total"] = self._total_left(str(answer.get("dataset")))
        self._say(budget_note(
            dataset=str(answer.get("dataset", "?")),
            epsilon_charged=result.attrs["epsilon_charged"], cached=result.attrs["cached"],
            budget=result.attrs["budget"], total_left=result.attrs.get("epsilon_left_total"),
            status=_("released after review") if reviewed else None))
        return result

    def _total_left(self, dataset: str) -> float | None:
        try:
            return self.budget_left(dataset).epsilon
        except DPSandboxError:
            return None  # the note is a courtesy; the release itself succeeded

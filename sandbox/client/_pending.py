"""Queries on restricted data: held as ``pending_review`` until an admin decides."""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from typing import Any

from sandbox.client._errors import QueryRejected, ReviewTimeout, ServerError
from sandbox.client._results import DPResult
from sandbox.client._session import Session

FIRST_POLL = 0.5
MAX_POLL = 10.0
# not decided yet, or released by the reviewer and being computed right now
WAITING = frozenset({"pending_review", "running"})


class PendingQuery:
    """A query waiting for review. ``result()`` waits (polling with backoff) for the answer."""

    def __init__(self, session: Session, view: dict[str, Any], *,
                 finish: Callable[[dict[str, Any]], DPResult]) -> None:
        self._session = session
        self._finish = finish
        self.view = view

    @property
    def id(self) -> str:
        return str(self.view["id"])

    @property
    def status(self) -> str:
        return str(self.view.get("status", "?"))

    @property
    def dataset(self) -> str:
        return str(self.view.get("dataset", "?"))

    def refresh(self) -> str:
        """Ask the gateway for the current status, and return it."""
        self.view = self._session.get(f"/v1/queries/{self.id}")
        return self.status

    def done(self) -> bool:
        return self.refresh() not in WAITING

    def result(self, timeout: float | None = 300.0) -> DPResult:
        """Wait for the review. Raises QueryRejected, or ReviewTimeout (wait again later)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = FIRST_POLL
        try:
            while self.refresh() in WAITING:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise ReviewTimeout(
                        f"query {self.id} on {self.dataset} is still {self.status} after "
                        f"{timeout:g} s; call .result() on this PendingQuery (exc.pending) "
                        f"later, or gw.query_result({self.id!r})", pending=self)
                time.sleep(delay if left is None else min(delay, left))
                delay = min(delay * 1.6, MAX_POLL)
        except KeyboardInterrupt:
            print(f"stopped waiting; query {self.id} stays queued for review: "
                  f"gw.query_result({self.id!r}) fetches it later", flush=True)
            raise
        return self._outcome()

    def _outcome(self) -> DPResult:
        status = self.status
        if status == "released":
            return self._finish(self.view)
        if status == "rejected":
            note = self.view.get("review_note") or "no reason given"
            raise QueryRejected(f"the reviewer rejected query {self.id}: {note}",
                                query_id=self.id)
        raise ServerError(f"query {self.id} ended with status {status!r}; nothing was "
                          "released (ask an admin to look at the audit log)")

    def __repr__(self) -> str:
        return f"<PendingQuery {self.id} on {self.dataset}: {self.status}>"

    def _repr_html_(self) -> str:
        return (f"<div><b>query {html.escape(self.id)}</b> on {html.escape(self.dataset)}: "
                f"<code>{html.escape(self.status)}</code> - an admin reviews queries on "
                "restricted data; <code>.result()</code> waits for the answer</div>")

"""Queries on restricted data: held as ``pending_review`` until an admin decides.

A query on restricted data returns a :class:`PendingQuery` at once. Its display in a
notebook shows the current status (asked again when it is shown, at most once a second);
``.result(timeout=...)`` waits for the decision and returns the released DataFrame.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Mapping
from typing import Any

from sandbox.client._errors import DPSandboxError, QueryRejected, ReviewTimeout, ServerError
from sandbox.client._i18n import _
from sandbox.client._results import DPResult
from sandbox.client._session import Session
from sandbox.client._shapes import QueryStatus

FIRST_POLL = 0.5
MAX_POLL = 10.0
REVIEW_TIMEOUT = 300.0  # seconds .result() waits for a reviewer when not told otherwise
# not decided yet, or released by the reviewer and being computed right now
WAITING = frozenset({"pending_review", "running"})
_COLOURS = {"pending_review": "#b26a00", "running": "#1f6fb2", "released": "#2e7d32",
            "rejected": "#c62828"}


def _status_text(status: str) -> str:
    texts = {"pending_review": _("waiting for an admin's review"),
             "running": _("released by the reviewer, being computed"),
             "released": _("released"), "rejected": _("rejected by the reviewer")}
    return texts.get(status, status)


class PendingQuery:
    """A query waiting for review. ``result()`` waits (polling with backoff) for the answer."""

    def __init__(self, session: Session, view: Mapping[str, Any], *,
                 finish: Callable[[dict[str, Any]], DPResult]) -> None:
        self._session = session
        self._finish = finish
        self.view: dict[str, Any] = dict(view)
        self._checked = time.monotonic()

    @property
    def query(self) -> QueryStatus:
        """The query as the gateway last described it."""
        return QueryStatus.from_json(self.view)

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
        self._checked = time.monotonic()
        return self.status

    def done(self) -> bool:
        return self.refresh() not in WAITING

    def result(self, timeout: float | None = REVIEW_TIMEOUT) -> DPResult:
        """Wait for the review (``timeout`` seconds; None: as long as it takes).

        Raises QueryRejected, or ReviewTimeout (call ``result()`` again later).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = FIRST_POLL
        try:
            while self.refresh() in WAITING:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise ReviewTimeout(
                        _("query {id} on {dataset} is still {status} after {seconds} s; call "
                          ".result() on it again later, or gw.query_result({id!r})").format(
                            id=self.id, dataset=self.dataset, status=self.status,
                            seconds=f"{timeout:g}"), pending=self)
                time.sleep(delay if left is None else min(delay, left))
                delay = min(delay * 1.6, MAX_POLL)
        except KeyboardInterrupt:
            print(_("stopped waiting; query {id} stays queued for review: "
                    "gw.query_result({id!r}) fetches it later").format(id=self.id), flush=True)
            raise
        return self._outcome()

    def _outcome(self) -> DPResult:
        status = self.status
        if status == "released":
            return self._finish(self.view)
        if status == "rejected":
            note = self.view.get("review_note") or _("no reason given")
            raise QueryRejected(_("the reviewer rejected query {id}: {note}").format(
                id=self.id, note=note), query_id=self.id)
        raise ServerError(_("query {id} ended with status {status}; nothing was released "
                            "(ask an admin to look at the audit log)").format(
            id=self.id, status=status))

    def __repr__(self) -> str:
        return f"<PendingQuery {self.id} on {self.dataset}: {self.status}>"

    def _repr_html_(self) -> str:
        if self.status in WAITING and time.monotonic() - self._checked > 1.0:
            try:
                self.refresh()
            except DPSandboxError:
                pass  # show what was known; the display must not fail
        status = self.status
        colour = _COLOURS.get(status, "#555")
        if status in WAITING:
            hint = _("nothing is charged until an admin releases it; "
                     "<code>.result(timeout=600)</code> waits for the answer, showing this "
                     "object again shows the current status")
        elif status == "released":
            hint = _("<code>.result()</code> returns the released answer")
        else:
            hint = html.escape(str(self.view.get("review_note") or ""))
        title = _("query on {dataset}").format(dataset=self.dataset)
        label = _("status")
        return (f"<div style='border-left:4px solid {colour};padding:4px 8px'>"
                f"<b>{html.escape(title)}</b> <code>{html.escape(self.id)}</code><br>"
                f"{html.escape(label)}: <b style='color:{colour}'>"
                f"{html.escape(_status_text(status))}</b> (<code>{html.escape(status)}</code>)"
                f"<br><span style='font-size:90%;color:#555'>{hint}</span></div>")

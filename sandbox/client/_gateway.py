"""``connect()`` and the :class:`Gateway`: the catalog, applications, grants, queries."""

from __future__ import annotations

import getpass
import html
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from sandbox.client._dataset import DEFAULT_TIMEOUT, Dataset, Preview
from sandbox.client._errors import DPSandboxError, Unauthenticated
from sandbox.client._pending import PendingQuery
from sandbox.client._results import DPResult, budget_note, records_frame, result_frame
from sandbox.client._session import (
    DEFAULT_TIMEOUT as HTTP_TIMEOUT,
)
from sandbox.client._session import (
    Session,
    default_token_file,
    freshest,
    read_token_file,
    token_claims,
)
from sandbox.client._spec import check_loss

URL_ENV = "DPSANDBOX_GATEWAY_URL"
TOKEN_ENV = "DPSANDBOX_TOKEN"  # noqa: S105 - a variable name, not a secret


def connect(url: str | None = None, *, token: str | None = None, username: str | None = None,
            password: str | None = None, token_file: str | Path | None = None,
            quiet: bool = False, timeout: float = HTTP_TIMEOUT,
            transport: httpx.BaseTransport | None = None) -> Gateway:
    """Connect to the gateway.

    In a sandbox, ``connect()`` takes the URL and token the hub put in the environment
    (``DPSANDBOX_GATEWAY_URL``, ``DPSANDBOX_TOKEN``) and keeps the token fresh in
    ``~/.dpsandbox_token``. Elsewhere: ``connect(url, token=...)`` or, for development,
    ``connect(url, username=..., password=...)``.
    """
    url = url or os.environ.get(URL_ENV)
    if not url:
        raise DPSandboxError(f"no gateway URL: call connect(url) or set {URL_ENV}")
    file = Path(token_file) if token_file is not None else None
    if username is not None:
        session = Session(url, None, token_file=file, timeout=timeout, transport=transport)
        session.login(username, password if password is not None
                      else getpass.getpass(f"password for {username}: "))
    else:
        if token is None:
            file = file or default_token_file()
            env_token = os.environ.get(TOKEN_ENV) or None
            subject = token_claims(env_token).get("sub") if env_token else None
            token = freshest(env_token, read_token_file(file), subject=subject)
        if not token:
            raise Unauthenticated(f"no token: set {TOKEN_ENV} (the hub does this in a sandbox), "
                                  "or call connect(url, token=...) or "
                                  "connect(url, username=..., password=...)")
        session = Session(url, token, token_file=file, timeout=timeout, transport=transport)
    gateway = Gateway(session, quiet=quiet)
    gateway.me()  # fail now, with a clear message, rather than at the first query
    return gateway


class Gateway:
    """A connection to the dp-sandbox gateway, as one analyst."""

    def __init__(self, session: Session, *, quiet: bool = False) -> None:
        self._session = session
        self.quiet = quiet
        self._me: dict[str, Any] = {}

    # -- who and what ----------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._session.url

    @property
    def username(self) -> str:
        return str(self._me.get("username") or self._session.username or "?")

    def me(self) -> dict[str, Any]:
        self._me = self._session.get("/v1/me")
        return dict(self._me)

    def datasets(self) -> pd.DataFrame:
        """The catalog, one row per dataset, with what is left on your grants."""
        catalog = self._session.get("/v1/datasets")
        left: dict[str, float] = {}
        me = self._me or self.me()
        for grant in self._session.get("/v1/grants"):  # an admin sees everyone's: keep ours
            ours = grant.get("user") == me.get("username") or (
                me.get("org") is not None and grant.get("org") == me.get("org"))
            if grant.get("status") == "active" and ours:
                left[grant["dataset"]] = max(left.get(grant["dataset"], 0.0),
                                             float(grant["epsilon_remaining"]))
        frame = pd.DataFrame([{
            "name": d["name"], "title": d.get("title"), "domain": d.get("domain"),
            "access": d.get("access"), "columns": ", ".join(d.get("columns") or {}),
            "epsilon_left": left.get(d["name"], math.nan), "description": (d.get("description") or "")
            .strip()} for d in catalog],
            columns=["name", "title", "domain", "access", "columns", "epsilon_left",
                     "description"])
        return frame.set_index("name")

    def dataset(self, name: str) -> Dataset:
        return Dataset(self, self._session.get(f"/v1/datasets/{name}"))

    # -- applications and grants ----------------------------------------------------------

    def request_access(self, dataset: str, *, purpose: str, epsilon: float | None = None,
                       days: int | None = None, org_grant: bool = False) -> dict[str, Any]:
        """Apply for a grant on a dataset; an admin decides (open data: at once).

        ``org_grant=True`` (enterprise accounts) asks for one budget shared by your org.
        """
        body: dict[str, Any] = {"dataset": dataset, "purpose": purpose}
        if org_grant:
            body["org_grant"] = True
        if epsilon is not None:
            body["epsilon"] = epsilon
        if days is not None:
            body["days"] = days
        answer: dict[str, Any] = self._session.post("/v1/requests", body)
        self._say(f"application {answer.get('id')} for {dataset}: {answer.get('status')}")
        return answer

    def requests(self) -> pd.DataFrame:
        return records_frame(self._session.get("/v1/requests"),
                             ["id", "dataset", "status", "epsilon", "days", "purpose"])

    def grants(self) -> pd.DataFrame:
        return records_frame(self._session.get("/v1/grants"),
                             ["id", "dataset", "status", "epsilon_total", "epsilon_spent",
                              "epsilon_remaining", "delta_remaining", "expires_at"])

    def queries(self, *, status: str | None = None, dataset: str | None = None) -> pd.DataFrame:
        """Your queries, newest first (released results are in query_result)."""
        params = {k: v for k, v in (("status", status), ("dataset", dataset)) if v}
        items = self._session.get("/v1/queries", **params)
        return records_frame([{k: v for k, v in q.items() if k not in ("rows", "columns")}
                              for q in items],
                             ["id", "dataset", "status", "epsilon", "created_at", "sql"])

    # -- queries ---------------------------------------------------------------------------

    def sql(self, text: str, *, epsilon: float, delta: float | None = None, wait: bool = True,
            timeout: float | None = DEFAULT_TIMEOUT) -> DPResult | PendingQuery:
        """A DP SQL query: ``SELECT agg, ... FROM dataset [WHERE ...] [GROUP BY ...]``."""
        check_loss(epsilon, delta)
        body: dict[str, Any] = {"sql": text, "epsilon": epsilon}
        if delta is not None:
            body["delta"] = delta
        return self._run(body, group_by=(), wait=wait, timeout=timeout)

    def preview_sql(self, text: str, *, epsilon: float, delta: float | None = None) -> Preview:
        check_loss(epsilon, delta)
        body: dict[str, Any] = {"sql": text, "epsilon": epsilon}
        if delta is not None:
            body["delta"] = delta
        return Preview.from_answer(self._session.post("/v1/queries/preview", body))

    def query_result(self, query_id: str, *, wait: bool = True,
                     timeout: float | None = DEFAULT_TIMEOUT) -> DPResult | PendingQuery:
        """A query submitted earlier (e.g. one that waited for review)."""
        view = self._session.get(f"/v1/queries/{query_id}")
        group_by = (view.get("spec") or {}).get("group_by") or ()
        pending = PendingQuery(self._session, view,
                               finish=lambda v: self._from_view(v, group_by=group_by))
        if view.get("status") in ("pending_review", "running") and not wait:
            return pending
        return pending.result(timeout=timeout)

    def _run(self, body: dict[str, Any], *, group_by: Any, wait: bool, timeout: float | None,
             shape: Callable[[DPResult], DPResult] | None = None) -> DPResult | PendingQuery:
        answer = self._session.post("/v1/queries", body)
        keys = list(group_by) or list((answer.get("spec") or {}).get("group_by") or ())
        if answer.get("status") == "released":
            result = result_frame(answer, group_by=keys)
            self._say(budget_note(dataset=answer.get("dataset", "?"),
                                  epsilon_charged=result.attrs["epsilon_charged"],
                                  cached=result.attrs["cached"], budget=result.attrs["budget"]))
            return shape(result) if shape else result

        def finish(view: dict[str, Any]) -> DPResult:
            result = self._from_view(view, group_by=keys)
            return shape(result) if shape else result

        pending = PendingQuery(self._session, answer, finish=finish)
        self._say(f"{pending.dataset}: query {pending.id} is held for review by an admin "
                  "(restricted data); nothing is charged until it is released"
                  + (f"; waiting up to {timeout:g} s" if wait and timeout is not None else ""))
        return pending.result(timeout=timeout) if wait else pending

    def _from_view(self, view: dict[str, Any], *, group_by: Any) -> DPResult:
        budget = None
        if view.get("grant_id"):
            grant = self._session.get(f"/v1/grants/{view['grant_id']}")
            budget = {"grant_id": grant["id"], "epsilon_remaining": grant["epsilon_remaining"],
                      "delta_remaining": grant["delta_remaining"]}
        result = result_frame({**view, "cached": False}, group_by=list(group_by), budget=budget)
        self._say(budget_note(dataset=str(view.get("dataset")),
                              epsilon_charged=result.attrs["epsilon_charged"], cached=False,
                              budget=budget, status="released after review"))
        return result

    # -- housekeeping ----------------------------------------------------------------------

    def _say(self, line: str) -> None:
        if not self.quiet:
            print(line, file=sys.stdout, flush=True)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Gateway {self.url} as {self.username} ({self._me.get('role', '?')})>"

    def _repr_html_(self) -> str:
        return (f"<div>dp-sandbox gateway <code>{html.escape(self.url)}</code>, signed in as "
                f"<b>{html.escape(self.username)}</b> ({html.escape(str(self._me.get('role')))})"
                "</div>")

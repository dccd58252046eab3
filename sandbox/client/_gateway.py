"""``connect()`` and the :class:`Gateway`: the catalog, applications, grants, queries."""

from __future__ import annotations

import getpass
import html
import math
import os
import stat
import sys
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from sandbox.client._dataset import Dataset
from sandbox.client._errors import DPSandboxError, NotFound, Unauthenticated
from sandbox.client._i18n import _
from sandbox.client._pending import REVIEW_TIMEOUT, PendingQuery
from sandbox.client._preview import Preview
from sandbox.client._results import DPResult, records_frame
from sandbox.client._runner import QueryRunner
from sandbox.client._session import (
    HTTP_TIMEOUT,
    Session,
    default_token_file,
    freshest,
    gateway_transport,
    read_token_file,
    token_claims,
)
from sandbox.client._shapes import Account, Application, BudgetLeft, Grant
from sandbox.client._spec import check_loss
from sandbox.client._suggest import did_you_mean

URL_ENV = "DPSANDBOX_GATEWAY_URL"
TOKEN_ENV = "DPSANDBOX_TOKEN"  # noqa: S105 - a variable name, not a secret
SOCKET_ENV = "DPSANDBOX_GATEWAY_SOCKET"


def _hub_socket(url: str | None) -> str | None:
    """The Unix socket the hub relays to the gateway of ``DPSANDBOX_GATEWAY_URL``, when
    ``url`` is that gateway and the socket is there (a bubblewrap sandbox): one hop less
    than the sandbox's TCP forwarder, a few milliseconds per request."""
    path = os.environ.get(SOCKET_ENV)
    if not path or url not in (None, os.environ.get(URL_ENV)):
        return None
    try:
        return path if stat.S_ISSOCK(os.stat(path).st_mode) else None
    except OSError:
        return None


def connect(url: str | None = None, *, token: str | None = None, username: str | None = None,
            password: str | None = None, token_file: str | Path | None = None,
            quiet: bool = False, timeout: float = HTTP_TIMEOUT,
            transport: httpx.BaseTransport | None = None) -> Gateway:
    """Connect to the gateway.

    In a sandbox, ``connect()`` takes the URL and token the hub put in the environment
    (``DPSANDBOX_GATEWAY_URL``, ``DPSANDBOX_TOKEN``, and in a bubblewrap sandbox
    ``DPSANDBOX_GATEWAY_SOCKET``, the Unix socket it reaches that gateway through) and
    keeps the token fresh in ``~/.dpsandbox_token``. Elsewhere: ``connect(url, token=...)``
    or, for development, ``connect(url, username=..., password=...)``.
    """
    if transport is None and (socket_path := _hub_socket(url)) is not None:
        transport = gateway_transport(socket_path)
    url = url or os.environ.get(URL_ENV)
    if not url:
        raise DPSandboxError(_("no gateway URL: call connect(url) or set {env}").format(
            env=URL_ENV))
    file = Path(token_file) if token_file is not None else None
    if username is not None:
        session = Session(url, None, token_file=file, timeout=timeout, transport=transport)
        session.login(username, password if password is not None
                      else getpass.getpass(_("password for {username}: ").format(
                          username=username)))
    else:
        if token is None:
            file = file or default_token_file()
            env_token = os.environ.get(TOKEN_ENV) or None
            subject = token_claims(env_token).get("sub") if env_token else None
            token = freshest(env_token, read_token_file(file), subject=subject)
        if not token:
            raise Unauthenticated(_("no token: set {env} (the hub does this in a sandbox), or "
                                    "call connect(url, token=...) or "
                                    "connect(url, username=..., password=...)").format(
                env=TOKEN_ENV))
        session = Session(url, token, token_file=file, timeout=timeout, transport=transport)
    gateway = Gateway(session, quiet=quiet)
    gateway.me()  # fail now, with a clear message, rather than at the first query
    return gateway


class Gateway:
    """A connection to the dp-sandbox gateway, as one analyst."""

    def __init__(self, session: Session, *, quiet: bool = False) -> None:
        self._session = session
        self.quiet = quiet
        self.runner = QueryRunner(session, say=self._say)
        self._me: Account | None = None

    # -- who and what ----------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._session.url

    @property
    def username(self) -> str:
        return (self._me.username if self._me else None) or self._session.username or "?"

    @property
    def account(self) -> Account:
        return self._me or self.me()

    def me(self) -> Account:
        self._me = Account.from_json(self._session.get("/v1/me"))
        return self._me

    def datasets(self) -> pd.DataFrame:
        """The catalog, one row per dataset, with the epsilon left on all your grants."""
        catalog = self._session.get("/v1/datasets")
        grants = self._my_grants()
        frame = pd.DataFrame([{
            "name": d["name"], "title": d.get("title"), "domain": d.get("domain"),
            "access": d.get("access"), "columns": ", ".join(d.get("columns") or {}),
            "epsilon_left": (BudgetLeft.of(d["name"], grants).epsilon
                             if any(g.dataset == d["name"] and g.active for g in grants)
                             else math.nan),
            "description": (d.get("description") or "").strip()} for d in catalog],
            columns=["name", "title", "domain", "access", "columns", "epsilon_left",
                     "description"])
        return frame.set_index("name")

    def dataset(self, name: str) -> Dataset:
        try:
            return Dataset(self, self._session.get(f"/v1/datasets/{name}"))
        except NotFound as exc:
            names = [d["name"] for d in self._session.get("/v1/datasets")]
            raise NotFound(_("no dataset named {name}").format(name=name) + did_you_mean(name, names)
                           + " " + _("(the catalog: gw.datasets())"), status=exc.status) from None

    def budget_left(self, dataset: str) -> BudgetLeft:
        """Epsilon and delta you can still spend on ``dataset``, over all your active grants."""
        account = self.account
        return self.runner.budget_left(dataset, username=account.username, org=account.org)

    def _my_grants(self) -> list[Grant]:
        account = self.account
        return [g for g in self.runner.grants()
                if g.user == account.username or (account.org is not None and g.org == account.org)]

    # -- applications and grants ----------------------------------------------------------

    def request_access(self, dataset: str, *, purpose: str, epsilon: float | None = None,
                       days: int | None = None, org_grant: bool = False) -> Application:
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
        answer = Application.from_json(self._session.post("/v1/requests", body))
        self._say(_("application {id} for {dataset}: {status}").format(
            id=answer.id, dataset=dataset, status=answer.status))
        return answer

    def requests(self) -> pd.DataFrame:
        return records_frame(self._session.get("/v1/requests"),
                             ["id", "dataset", "status", "epsilon", "days", "purpose"])

    def grants(self) -> pd.DataFrame:
        return records_frame(self._session.get("/v1/grants"),
                             ["id", "dataset", "status", "epsilon_total", "epsilon_spent",
                              "epsilon_remaining", "delta_remaining", "accounting",
                              "rho_remaining", "expires_at", "revoke_reason"])

    def queries(self, *, status: str | None = None, dataset: str | None = None) -> pd.DataFrame:
        """Your queries, newest first (released results are in query_result)."""
        params = {k: v for k, v in (("status", status), ("dataset", dataset)) if v}
        items = self._session.get("/v1/queries", **params)
        return records_frame([{k: v for k, v in q.items() if k not in ("rows", "columns")}
                              for q in items],
                             ["id", "dataset", "status", "epsilon", "created_at", "sql"])

    # -- queries ---------------------------------------------------------------------------

    def sql(self, text: str, *, epsilon: float, delta: float | None = None, wait: bool = False,
            timeout: float | None = None) -> DPResult | PendingQuery:
        """A DP SQL query: ``SELECT agg, ... FROM dataset [WHERE ...] [GROUP BY ...]``.

        On restricted data it returns a PendingQuery at once (``.result()`` waits);
        ``wait=True`` or ``timeout=seconds`` waits here instead.
        """
        check_loss(epsilon, delta)
        body: dict[str, Any] = {"sql": text, "epsilon": epsilon}
        if delta is not None:
            body["delta"] = delta
        return self.runner.run(body, wait=wait, timeout=timeout)

    def preview_sql(self, text: str, *, epsilon: float, delta: float | None = None) -> Preview:
        check_loss(epsilon, delta)
        body: dict[str, Any] = {"sql": text, "epsilon": epsilon}
        if delta is not None:
            body["delta"] = delta
        return self.runner.preview(body)

    def query_result(self, query_id: str, *, wait: bool = True,
                     timeout: float | None = REVIEW_TIMEOUT) -> DPResult | PendingQuery:
        """A query submitted earlier (e.g. one that waited for review)."""
        view = self._session.get(f"/v1/queries/{query_id}")
        group_by = (view.get("spec") or {}).get("group_by") or ()
        pending = self.runner.pending(view, group_by=group_by)
        if view.get("status") in ("pending_review", "running") and not wait:
            return pending
        return pending.result(timeout=timeout)

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
        role = self._me.role if self._me else "?"
        return f"<Gateway {self.url} as {self.username} ({role})>"

    def _repr_html_(self) -> str:
        role = self._me.role if self._me else "?"
        text = _("dp-sandbox gateway {url}, signed in as {username} ({role})").format(
            url=self.url, username=self.username, role=role)
        return f"<div>{html.escape(text)}</div>"

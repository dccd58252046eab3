"""HTTP to the gateway: bearer token, refresh before expiry, errors translated once.

The sandbox token is short-lived. Before each call, when less than
:data:`REFRESH_MARGIN` seconds remain, the session asks ``POST /v1/auth/refresh`` for a
fresh one and writes it to the token file (``~/.dpsandbox_token``, mode 0600) so the
other kernels of the same analyst pick it up instead of refreshing again.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from sandbox.client._errors import (
    DPSandboxError,
    ReleasePending,
    Unauthenticated,
    error_code,
    error_from_response,
    translate_transport_error,
)
from sandbox.client._i18n import _, accept_language

REFRESH_MARGIN = 300
TOKEN_FILE_NAME = ".dpsandbox_token"  # noqa: S105 - a file name, not a secret
HTTP_TIMEOUT = 120.0  # seconds for one HTTP call to the gateway
# Retries: a request is sent again only when that is safe, i.e. a GET, or a POST carrying an
# Idempotency-Key (the gateway then answers a repeat with the first attempt's query), or a
# POST that never left (connection refused). On a connection error and on 502/503/504
# (the gateway restarting, its store unavailable, a proxy without a ready replica); never
# on 503 release_pending (charged already: the query is fetched by id, see ReleasePending).
RETRY_ATTEMPTS = 5
RETRY_FIRST_WAIT = 0.5  # seconds, doubled after each attempt
RETRY_MAX_WAIT = 10.0
RETRY_STATUSES = frozenset({502, 503, 504})
# Without TCP_NODELAY a POST's body waits for the gateway's (delayed) ACK of its headers:
# tens of milliseconds on every query. A Unix socket has no such delay.
_NO_DELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def gateway_transport(socket_path: str | None = None) -> httpx.HTTPTransport:
    """The default transport: TCP with TCP_NODELAY, or HTTP over the Unix socket
    ``socket_path`` (the hub's relay to the gateway, inside a bubblewrap sandbox)."""
    if socket_path is not None:
        return httpx.HTTPTransport(uds=socket_path)
    return httpx.HTTPTransport(socket_options=_NO_DELAY)


def token_claims(token: str) -> dict[str, Any]:
    """The JWT payload, decoded WITHOUT verifying (only the gateway can verify)."""
    try:
        payload = token.split(".")[1]
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (IndexError, ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


def token_expiry(token: str) -> float | None:
    exp = token_claims(token).get("exp")
    return float(exp) if isinstance(exp, int | float) else None


def default_token_file() -> Path:
    override = os.environ.get("DPSANDBOX_TOKEN_FILE")
    return Path(override) if override else Path.home() / TOKEN_FILE_NAME


def read_token_file(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text or None


def write_token_file(path: Path, token: str) -> bool:
    """Atomically replace ``path`` with ``token`` (0600). False when the home is read-only."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".dpsandbox_token.", dir=path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(token + "\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        return False
    return True


def freshest(*tokens: str | None, subject: str | None = None) -> str | None:
    """The candidate that expires last (and belongs to ``subject`` when one is given)."""
    best, best_exp = None, -1.0
    for token in tokens:
        if not token:
            continue
        claims = token_claims(token)
        if subject is not None and claims.get("sub") != subject:
            continue
        exp = token_expiry(token) or 0.0
        if exp > best_exp:
            best, best_exp = token, exp
    return best


class Session:
    """One gateway, one caller. Thread-safe: one lock guards the token."""

    def __init__(self, url: str, token: str | None, *, token_file: Path | None = None,
                 timeout: float = HTTP_TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self.token_file = token_file
        self._lock = threading.Lock()
        self._http = httpx.Client(base_url=self.url, timeout=timeout,
                                  transport=transport or gateway_transport(),
                                  headers={"User-Agent": "dpsandbox-client/0.1"})

    # -- token ---------------------------------------------------------------------------

    @property
    def token(self) -> str | None:
        return self._token

    @property
    def username(self) -> str | None:
        sub = token_claims(self._token).get("sub") if self._token else None
        return sub if isinstance(sub, str) else None

    def login(self, username: str, password: str) -> None:
        body = self._send("POST", "/v1/auth/token",
                          json={"username": username, "password": password}, auth=False)
        self._token = str(body["access_token"])

    def seconds_left(self) -> float | None:
        exp = token_expiry(self._token) if self._token else None
        return None if exp is None else exp - time.time()

    def ensure_fresh(self, margin: float = REFRESH_MARGIN) -> None:
        """Refresh the token when less than ``margin`` seconds remain."""
        if self._token is None:
            return
        with self._lock:
            if self.token_file is not None:  # another kernel may have refreshed already
                self._token = freshest(self._token, read_token_file(self.token_file),
                                       subject=self.username) or self._token
            left = self.seconds_left()
            if left is None or left >= margin:
                return
            if left <= 0:
                raise Unauthenticated(
                    _("your sandbox token has expired; restart your server from the hub "
                      "(File > Hub Control Panel > Stop My Server, then Start) or sign in "
                      "again"))
            if self._at_session_end():
                return  # a refresh would bring the same expiry: the session itself ends
            self.refresh()

    def _at_session_end(self) -> bool:
        claims = token_claims(self._token) if self._token else {}
        exp, session_end = claims.get("exp"), claims.get("sexp")
        numbers = (int, float)
        return isinstance(exp, numbers) and isinstance(session_end, numbers) \
            and exp >= session_end - 1

    def refresh(self) -> None:
        """Exchange the current token for a fresh one (call with the lock held or alone)."""
        body = self._send("POST", "/v1/auth/refresh", auth=True)
        self._token = str(body["access_token"])
        if self.token_file is not None:
            write_token_file(self.token_file, self._token)

    # -- requests ------------------------------------------------------------------------

    def request(self, method: str, path: str, *, json: Any = None,
                params: dict[str, Any] | None = None, idempotency_key: str | None = None) -> Any:
        self.ensure_fresh()
        return self._send(method, path, json=json, params=params, auth=True,
                          idempotency_key=idempotency_key)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Any = None, *, idempotency_key: str | None = None) -> Any:
        """POST ``body``; with an ``idempotency_key`` it is retried safely (see RETRY_*)."""
        return self.request("POST", path, json=body, idempotency_key=idempotency_key)

    def _send(self, method: str, path: str, *, json: Any = None,
              params: dict[str, Any] | None = None, auth: bool,
              idempotency_key: str | None = None) -> Any:
        headers = {"Accept-Language": accept_language()}  # the gateway's messages match ours
        if auth:
            if self._token is None:
                raise Unauthenticated(_("no token: connect(url, token=...) or set "
                                        "DPSANDBOX_TOKEN (the hub does this in a sandbox)"))
            headers["Authorization"] = f"Bearer {self._token}"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        response = self._exchange(method, path, json=json, params=params, headers=headers,
                                  repeatable=method == "GET" or idempotency_key is not None)
        if response.is_success:
            try:
                return response.json()
            except ValueError as exc:
                raise DPSandboxError(_("the gateway sent something that is not JSON for "
                                       "{method} {path}").format(method=method, path=path),
                                     status=response.status_code) from exc
        raise error_from_response(response)

    def _exchange(self, method: str, path: str, *, json: Any, params: dict[str, Any] | None,
                  headers: dict[str, str], repeatable: bool) -> httpx.Response:
        """One request, sent again after a connection error or a 502/503/504 when safe."""
        wait = RETRY_FIRST_WAIT
        for attempt in range(RETRY_ATTEMPTS + 1):
            last = attempt == RETRY_ATTEMPTS
            try:
                response = self._http.request(method, path, json=json, params=params,
                                              headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # nothing was sent
                if last:
                    raise translate_transport_error(exc, self.url) from exc
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                if last or not repeatable:  # the gateway may have acted on it
                    raise translate_transport_error(exc, self.url) from exc
            except httpx.HTTPError as exc:  # a timeout: the query may be long, do not repeat
                raise translate_transport_error(exc, self.url) from exc
            else:
                if last or not repeatable or response.status_code not in RETRY_STATUSES \
                        or error_code(response) == ReleasePending.code:
                    return response
                wait = max(wait, _retry_after(response))
            time.sleep(min(wait, RETRY_MAX_WAIT))
            wait *= 2
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def close(self) -> None:
        self._http.close()


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "0")))
    except ValueError:
        return 0.0

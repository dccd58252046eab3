"""The few gateway calls the hub makes, and the one place httpx errors are translated.

Error tree::

    GatewayError                 any failure talking to the gateway
    ├── GatewayUnavailable       connection refused, timeout, 5xx, unreadable reply
    ├── InvalidCredentials       401: wrong username or password (or bad hub secret)
    └── GatewayRefused           any other 4xx; carries the gateway's code and message
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

__all__ = [
    "GatewayClient",
    "GatewayError",
    "GatewayRefused",
    "GatewayUnavailable",
    "Identity",
    "InvalidCredentials",
    "Token",
]


class GatewayError(Exception):
    """Talking to the gateway failed."""


class GatewayUnavailable(GatewayError):
    """The gateway could not be reached or answered with a server error."""


class InvalidCredentials(GatewayError):
    """The gateway answered 401."""


class GatewayRefused(GatewayError):
    """The gateway refused the request (4xx other than 401)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Token:
    access_token: str
    expires_in: int


@dataclass(frozen=True)
class Identity:
    username: str
    role: str
    org: str | None


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return "unknown", response.text[:200]


class GatewayClient:
    """Async client for the hub's calls to the gateway's ``/v1`` API."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._transport = transport

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self._send(method, path, **kwargs)
        url = f"{self.base_url}{path}"
        try:
            body = response.json()
        except ValueError as exc:
            raise GatewayUnavailable(f"{method} {url}: reply is not JSON") from exc
        if not isinstance(body, dict):
            raise GatewayUnavailable(f"{method} {url}: reply is not a JSON object")
        return body

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = f"{self.base_url}{path}"
        try:
            async with httpx.AsyncClient(timeout=self._timeout, transport=self._transport) as http:
                response = await http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise GatewayUnavailable(f"{method} {url}: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code == 401:
            raise InvalidCredentials(_error_of(response)[1])
        if response.status_code >= 500:
            raise GatewayUnavailable(f"{method} {url}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise GatewayRefused(response.status_code, *_error_of(response))
        return response

    @staticmethod
    def _token(body: dict[str, Any]) -> Token:
        try:
            return Token(str(body["access_token"]), int(body.get("expires_in") or 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise GatewayUnavailable(f"token reply without access_token: {exc}") from exc

    async def login(self, username: str, password: str) -> Token:
        """``POST /v1/auth/token``: an analyst's own token (the gateway audits failures)."""
        body = await self._request(
            "POST", "/v1/auth/token", json={"username": username, "password": password}
        )
        return self._token(body)

    async def me(self, token: Token) -> Identity:
        """``GET /v1/me``: who the token belongs to."""
        body = await self._request("GET", "/v1/me", headers={"Authorization": f"Bearer {token.access_token}"})
        try:
            return Identity(str(body["username"]), str(body["role"]), body.get("org"))
        except KeyError as exc:
            raise GatewayUnavailable(f"/v1/me reply without {exc}") from exc

    async def sandbox_token(self, username: str, hub_secret: str) -> Token:
        """``POST /v1/auth/sandbox-token``: a ``scope: sandbox`` token for a spawned server."""
        body = await self._request(
            "POST",
            "/v1/auth/sandbox-token",
            json={"username": username},
            headers={"X-Hub-Secret": hub_secret},
        )
        return self._token(body)

    async def revoke_sandbox_token(self, jti: str, username: str, hub_secret: str) -> None:
        """``POST /v1/auth/sandbox-token/revoke``: the server stopped; its token (and every
        token refreshed from it) is refused from now on."""
        await self._send(
            "POST",
            "/v1/auth/sandbox-token/revoke",
            json={"jti": jti, "username": username},
            headers={"X-Hub-Secret": hub_secret},
        )

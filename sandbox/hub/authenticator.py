"""Log analysts in to JupyterHub with their gateway account.

The hub keeps no passwords: the login form's username and password are checked
by ``POST /v1/auth/token`` (which audits failed logins itself) and the account's
role by ``GET /v1/me``.  Only analysts (``researcher``, ``enterprise``) get a
notebook sandbox; admins and auditors are sent to the gateway's web console.
"""

from __future__ import annotations

from typing import Any

import httpx
from jupyterhub.auth import Authenticator
from tornado import web
from traitlets import Float, List, Unicode, default

from .gateway_api import GatewayClient, GatewayRefused, GatewayUnavailable, InvalidCredentials
from .settings import HubSettings

__all__ = ["GatewayAuthenticator"]


class GatewayAuthenticator(Authenticator):
    """Check usernames and passwords against the dp-sandbox gateway."""

    gateway_url = Unicode(
        help="""Base URL of the gateway, e.g. http://127.0.0.1:8600.

        Defaults to the DPSANDBOX_GATEWAY_URL environment variable.
        """,
    ).tag(config=True)

    console_url = Unicode(
        help="""Where admins and auditors are sent instead: the gateway's web console.

        Defaults to {gateway_url}/console.
        """,
    ).tag(config=True)

    analyst_roles = List(
        Unicode(),
        default_value=["researcher", "enterprise"],
        help="Gateway roles that are given a notebook sandbox; every other role is refused.",
    ).tag(config=True)

    request_timeout = Float(10.0, help="Seconds to wait for the gateway to answer a login check.").tag(
        config=True
    )

    @default("gateway_url")
    def _gateway_url_default(self) -> str:
        return HubSettings.from_env().gateway_url

    @default("console_url")
    def _console_url_default(self) -> str:
        return f"{self.gateway_url.rstrip('/')}/console"

    @default("allow_all")
    def _allow_all_default(self) -> bool:
        # The gateway is the list of accounts; who may log in is decided by its role.
        return True

    def normalize_username(self, username: str) -> str:
        # Names come from the gateway's /v1/me and are already canonical. JupyterHub's
        # default lowercasing would break the mapping back to the gateway account.
        return self.username_map.get(username, username)

    # Tests put an httpx.MockTransport here; None means the network.
    http_transport: httpx.AsyncBaseTransport | None = None

    def _client(self) -> GatewayClient:
        return GatewayClient(self.gateway_url, timeout=self.request_timeout, transport=self.http_transport)

    async def authenticate(self, handler: web.RequestHandler, data: dict[str, str]) -> dict[str, Any] | None:
        username = (data.get("username") or "").strip()
        password = data.get("password") or ""
        if not username or not password:
            return None
        client = self._client()
        try:
            token = await client.login(username, password)
            identity = await client.me(token)
        except InvalidCredentials:
            return None
        except GatewayUnavailable as exc:
            self.log.error("Login of %r: gateway unavailable: %s", username, exc)
            raise web.HTTPError(
                503, "The data gateway cannot be reached right now. Try again in a minute."
            ) from exc
        except GatewayRefused as exc:
            self.log.warning("Login of %r refused by the gateway: %s", username, exc)
            raise web.HTTPError(403, exc.message) from exc
        if identity.role not in self.analyst_roles:
            self.log.info("Refusing sandbox to %r: role %s", identity.username, identity.role)
            raise web.HTTPError(
                403,
                f"{identity.role.capitalize()} accounts have no notebook sandbox. "
                f"Please use the web console at {self.console_url}",
            )
        return {"name": identity.username}

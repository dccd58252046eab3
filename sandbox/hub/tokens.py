"""The sandbox token: what a spawned server holds to reach the gateway, and its end.

``sandbox_token_for`` asks the gateway for a short-lived ``scope: sandbox``
token for one analyst (``POST /v1/auth/sandbox-token`` with the hub secret);
``revoke_sandbox_token`` ends it when the server stops or is culled (``POST
/v1/auth/sandbox-token/revoke``, by the token's ``jti``): the gateway then
refuses it, and every token refreshed from it, everywhere.  A spawner keeps the
``jti`` (``token_id``) in its ``get_state`` so a restarted hub can still end it.

``add_sandbox_token`` / ``revoke_added_sandbox_token`` are the same as a
``pre_spawn_hook`` / ``post_stop_hook`` for any spawner, so the production
profiles give their servers the same two variables as ``SandboxSpawner``
(``DPSANDBOX_GATEWAY_URL``, ``DPSANDBOX_TOKEN``) and the same end.  Refreshing
the token is the client library's job.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from pathlib import Path
from typing import Any

from .gateway_api import GatewayClient, GatewayError
from .settings import HubSettings, read_hub_secret

__all__ = [
    "SandboxTokenError",
    "add_sandbox_token",
    "revoke_added_sandbox_token",
    "revoke_sandbox_token",
    "sandbox_token_for",
    "token_id",
]

log = logging.getLogger(__name__)


class SandboxTokenError(RuntimeError):
    """No token could be had or ended; the message says why."""


def _hub_secret(hub_secret_file: Path) -> str:
    secret = read_hub_secret(hub_secret_file)
    if not secret:
        raise SandboxTokenError(
            f"No hub secret: neither DPSANDBOX_HUB_SECRET nor {hub_secret_file} "
            "(the gateway writes it on first start). Is the gateway running?"
        )
    return secret


async def sandbox_token_for(username: str, *, gateway_url: str, hub_secret_file: Path) -> str:
    secret = _hub_secret(hub_secret_file)
    try:
        token = await GatewayClient(gateway_url).sandbox_token(username, secret)
    except GatewayError as exc:
        raise SandboxTokenError(f"Could not get a sandbox token from the gateway: {exc}") from exc
    return token.access_token


def token_id(token: str) -> str:
    """The ``jti`` of a token the gateway gave the hub (read, not verified: the hub's own)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims["jti"])
    except (IndexError, ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise SandboxTokenError(f"not a gateway token ({exc.__class__.__name__})") from exc


async def revoke_sandbox_token(
    jti: str, *, username: str, gateway_url: str, hub_secret_file: Path
) -> None:
    """End a stopped server's token (and its refreshes) at the gateway."""
    secret = _hub_secret(hub_secret_file)
    try:
        await GatewayClient(gateway_url).revoke_sandbox_token(jti, username, secret)
    except GatewayError as exc:
        raise SandboxTokenError(f"Could not revoke the sandbox token of {username}: {exc}") from exc


async def add_sandbox_token(spawner: Any) -> None:
    """``c.Spawner.pre_spawn_hook``: put the gateway URL and a fresh token in the server's env.

    The hub reaches the gateway at ``DPSANDBOX_GATEWAY_URL``; servers use
    ``DPSANDBOX_SANDBOX_GATEWAY_URL`` when their network names it differently.
    """
    settings = HubSettings.from_env()
    token = await sandbox_token_for(
        spawner.user.name, gateway_url=settings.gateway_url, hub_secret_file=settings.hub_secret_file
    )
    spawner.environment.update(
        {
            "DPSANDBOX_GATEWAY_URL": os.environ.get("DPSANDBOX_SANDBOX_GATEWAY_URL") or settings.gateway_url,
            "DPSANDBOX_TOKEN": token,
        }
    )


async def revoke_added_sandbox_token(spawner: Any) -> None:
    """``c.Spawner.post_stop_hook``: end the token ``add_sandbox_token`` gave the server.

    A failure is logged, not raised: the server is stopped either way, and the token
    still expires on its own (``sandbox_token_ttl_seconds``, refreshes capped by the
    session's maximum).
    """
    token = spawner.environment.pop("DPSANDBOX_TOKEN", None)
    if not token:
        return
    settings = HubSettings.from_env()
    try:
        await revoke_sandbox_token(
            token_id(token),
            username=spawner.user.name,
            gateway_url=settings.gateway_url,
            hub_secret_file=settings.hub_secret_file,
        )
    except SandboxTokenError as exc:
        log.warning("%s", exc)

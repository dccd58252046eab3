"""The sandbox token: what a spawned server holds to reach the gateway.

``sandbox_token_for`` asks the gateway for a short-lived ``scope: sandbox``
token for one analyst (``POST /v1/auth/sandbox-token`` with the hub secret).
``add_sandbox_token`` is the same as a ``pre_spawn_hook`` for any spawner, so
the production profiles (DockerSpawner, KubeSpawner) give their servers the
same two variables as ``SandboxSpawner``: ``DPSANDBOX_GATEWAY_URL`` and
``DPSANDBOX_TOKEN``.  Refreshing the token is the client library's job.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .gateway_api import GatewayClient, GatewayError
from .settings import HubSettings, read_hub_secret

__all__ = ["SandboxTokenError", "add_sandbox_token", "sandbox_token_for"]


class SandboxTokenError(RuntimeError):
    """No token could be had; the message says why and is shown to the analyst."""


async def sandbox_token_for(username: str, *, gateway_url: str, hub_secret_file: Path) -> str:
    secret = read_hub_secret(hub_secret_file)
    if not secret:
        raise SandboxTokenError(
            f"No hub secret: neither DPSANDBOX_HUB_SECRET nor {hub_secret_file} "
            "(the gateway writes it on first start). Is the gateway running?"
        )
    try:
        token = await GatewayClient(gateway_url).sandbox_token(username, secret)
    except GatewayError as exc:
        raise SandboxTokenError(f"Could not get a sandbox token from the gateway: {exc}") from exc
    return token.access_token


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

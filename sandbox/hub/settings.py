"""Settings of the hub, read from ``DPSANDBOX_*`` environment variables.

Shared by ``jupyterhub_config.py``, the launcher in ``run.py`` and the defaults
of the spawner's and authenticator's traitlets, so one variable means the same
thing everywhere (see design.md, "Command line").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_GATEWAY_URL", "SERVER_ARGS", "HubSettings", "hub_secret_file", "read_hub_secret"]

DEFAULT_GATEWAY_URL = "http://127.0.0.1:8600"
DEFAULT_SANDBOX_ENV = "/opt/dpsandbox/sandbox-env"
# Options of every sandbox's Jupyter server, whatever the isolation: kernel messages
# leave at once instead of 40 ms later (sandbox/server.py, shipped with the client).
SERVER_ARGS = (
    "--ServerApp.kernel_websocket_connection_class=sandbox.server.NoDelayKernelConnection",
)


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@dataclass(frozen=True)
class HubSettings:
    """Where things are, as seen by the hub."""

    home: Path  # the gateway's private directory (data, state, SQLite, signing key)
    gateway_url: str
    sandbox_env: Path  # world-readable venv the sandboxes run in

    @classmethod
    def from_env(cls) -> HubSettings:
        home = Path(_env("DPSANDBOX_HOME", "~/.dpsandbox")).expanduser().absolute()
        return cls(
            home=home,
            gateway_url=_env("DPSANDBOX_GATEWAY_URL", DEFAULT_GATEWAY_URL).rstrip("/"),
            sandbox_env=Path(_env("DPSANDBOX_SANDBOX_ENV", DEFAULT_SANDBOX_ENV)),
        )

    @property
    def state_dir(self) -> Path:
        """The hub's private state: jupyterhub.sqlite, cookie secret, proxy token."""
        return self.home / "hub"

    @property
    def hub_secret_file(self) -> Path:
        return hub_secret_file(self.home)

    @property
    def console_url(self) -> str:
        return f"{self.gateway_url}/console"

    def ensure_state_dir(self) -> Path:
        """Create the hub's state directory, private to the hub's user (0700)."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.state_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        return self.state_dir


def hub_secret_file(home: Path) -> Path:
    """Where the hub finds the secret that lets it ask for sandbox tokens.

    ``DPSANDBOX_HUB_SECRET_FILE`` if set; else ``hub_secret`` in ``DPSANDBOX_SECRETS_DIR``,
    the gateways' shared secrets (``gateway/adapters/secrets.py``); else the file the
    gateway writes on first start in its home's ``state``.
    """
    shared = os.environ.get("DPSANDBOX_SECRETS_DIR")
    default = Path(shared) / "hub_secret" if shared else home / "state" / "hub_secret"
    return Path(_env("DPSANDBOX_HUB_SECRET_FILE", str(default)))


def read_hub_secret(secret_file: Path) -> str | None:
    """The shared secret for ``POST /v1/auth/sandbox-token``: env first, then the file."""
    secret = os.environ.get("DPSANDBOX_HUB_SECRET")
    if secret:
        return secret.strip()
    try:
        return secret_file.read_text().strip() or None
    except FileNotFoundError:
        return None

"""What every spawner of the hub needs to reach the gateway, for both isolations.

Where the gateway and its private directory are, the hub's secret for
``POST /v1/auth/sandbox-token``, and the running server's token: fetched at start,
revoked at the gateway as soon as the server is gone (``tokens.py``). Also the
scenario notebooks a new home is given, in the language of the request that spawns it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from traitlets import Unicode, default
from traitlets.config import LoggingConfigurable

from .isolation import SandboxError
from .language import sandbox_language, templates_source
from .settings import HubSettings, hub_secret_file
from .tokens import SandboxTokenError, revoke_sandbox_token, sandbox_token_for

__all__ = ["GatewayLinkMixin"]


class GatewayLinkMixin(LoggingConfigurable):
    """Traits and token steps shared by ``SandboxSpawner`` and ``DockerSandboxSpawner``."""

    # Provided by the spawner.
    user: Any
    handler: Any

    # -- this sandbox's state: token_jti is kept by get_state() across hub restarts
    sandbox_token = Unicode("", help="The token given to the running server (not saved).")
    token_jti = Unicode("", help="jti of that token, revoked at the gateway on stop (saved).")

    gateway_url = Unicode(
        help="Gateway URL as the hub reaches it; defaults to DPSANDBOX_GATEWAY_URL.",
    ).tag(config=True)

    dpsandbox_home = Unicode(
        help="""The gateway's private directory (DPSANDBOX_HOME): data, state, SQLite
        database, signing key, hub state. Always hidden from sandboxes.""",
    ).tag(config=True)

    hub_state_dir = Unicode(
        help="The hub's private state, hidden from sandboxes (default $DPSANDBOX_HOME/hub).",
    ).tag(config=True)

    hub_secret_file = Unicode(
        help="""File holding the secret for POST /v1/auth/sandbox-token (written by the
        gateway; default $DPSANDBOX_HUB_SECRET_FILE, else hub_secret in $DPSANDBOX_SECRETS_DIR,
        else $DPSANDBOX_HOME/state/hub_secret).
        The env variable DPSANDBOX_HUB_SECRET takes precedence.""",
    ).tag(config=True)

    templates_dir = Unicode(
        str(Path(__file__).resolve().parents[2] / "notebooks_templates"),
        help="""Scenario notebooks copied into a new analyst's home (as ~/templates) on the
        first spawn: the folder of the analyst's language (zh/, en/) when there is one; an
        analyst's own copies are never overwritten. Empty: copy nothing.""",
    ).tag(config=True)

    @default("gateway_url")
    def _gateway_url_default(self) -> str:
        return HubSettings.from_env().gateway_url

    @default("dpsandbox_home")
    def _dpsandbox_home_default(self) -> str:
        return str(HubSettings.from_env().home)

    @default("hub_state_dir")
    def _hub_state_dir_default(self) -> str:
        return str(Path(self.dpsandbox_home) / "hub")

    @default("hub_secret_file")
    def _hub_secret_file_default(self) -> str:
        return str(hub_secret_file(Path(self.dpsandbox_home)))

    # The spawner's own traits kept across hub restarts, each with its unset value (not saved).
    saved_traits: ClassVar[dict[str, Any]] = {}

    def get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = super().get_state()  # type: ignore[misc]  # the spawner's
        if self.token_jti:
            state["token_jti"] = self.token_jti
        for name, unset in self.saved_traits.items():
            if (value := getattr(self, name)) != unset:
                state[name] = value
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)  # type: ignore[misc]
        self.token_jti = state.get("token_jti", "")
        for name, unset in self.saved_traits.items():
            value = state.get(name, unset)
            setattr(self, name, bool(value) if isinstance(unset, bool) else value)

    async def _fetch_sandbox_token(self) -> str:
        """A fresh ``scope: sandbox`` token for the server (its jti kept for the revocation)."""
        try:
            token = await sandbox_token_for(
                self.user.name, gateway_url=self.gateway_url, hub_secret_file=Path(self.hub_secret_file)
            )
        except SandboxTokenError as exc:
            raise SandboxError(str(exc)) from exc
        return token

    async def _revoke_token(self) -> None:
        """The server is gone: its token (and every refresh of it) ends at the gateway."""
        jti, self.token_jti, self.sandbox_token = self.token_jti, "", ""
        if not jti:
            return
        try:
            await revoke_sandbox_token(
                jti,
                username=self.user.name,
                gateway_url=self.gateway_url,
                hub_secret_file=Path(self.hub_secret_file),
            )
        except SandboxTokenError as exc:
            self.log.warning("%s: it expires on its own", exc)
        else:
            self.log.info("Revoked the sandbox token of %s", self.user.name)

    def _language(self) -> str:
        """The browser's language of the request that spawns this server (language.py)."""
        return sandbox_language(self.handler)

    def _templates_source(self) -> Path | None:
        """The scenario notebooks in that language (notebooks_templates/zh or /en), if any."""
        if not self.templates_dir:
            return None
        source = templates_source(Path(self.templates_dir), self._language())
        return source if source.is_dir() else None

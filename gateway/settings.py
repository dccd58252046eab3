"""Settings from the environment (prefix DPSANDBOX_)."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path(os.path.expanduser("~")) / ".dpsandbox"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DPSANDBOX_", extra="ignore")

    home: Path = Field(default_factory=_default_home)
    database_url: str | None = None
    # Replicas share these (docs/deploy/replicas.md): the registered datasets' Parquet files
    # (default $DPSANDBOX_HOME/data) and the secrets (gateway/adapters/secrets.py).
    data_dir: Path | None = None
    secrets_dir: Path | None = None
    gateway_url: str = "http://127.0.0.1:8600"
    hub_url: str = "http://127.0.0.1:8000"
    token_ttl_seconds: int = 3600
    sandbox_token_ttl_seconds: int = 3600
    sandbox_session_max_seconds: int = 12 * 3600
    issuer: str = "dp-sandbox"
    audience: str = "dp-sandbox-gateway"
    login_max_failures: int = 5
    login_lockout_seconds: int = 300
    max_body_bytes: int = 1_000_000
    dummy_max_rows: int = 10_000
    cookie_secure: bool = False
    # HTTP server limits (gateway/server.py; docs/deploy/gateway-server.md)
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    keep_alive_seconds: int = Field(default=5, ge=1)
    max_connections: int = Field(default=256, ge=1)
    # recovery of queries charged but never released (gateway/services/recovery.py)
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    instance_stale_seconds: float = Field(default=30.0, gt=0)
    recovery_interval_seconds: float = Field(default=30.0, gt=0)
    # after SIGTERM: how long /readyz answers 503 (and new requests are refused) before the
    # listener closes; in-flight requests finish either way (gateway/server.py)
    drain_seconds: float = Field(default=0.0, ge=0)
    # the Spark engine's cluster (docs/spark.md): local[*], spark://host:7077, sc://host:15002
    spark_master: str = "local[*]"

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir or self.home / "data"

    @cached_property
    def state_dir(self) -> Path:
        return self.home / "state"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'dpsandbox.sqlite'}"

    def ensure_dirs(self) -> None:
        """Create the private directories: only the gateway's user may enter them."""
        for path in (self.home, self.datasets_dir, self.state_dir):
            if path == self.data_dir and path.is_dir():
                continue  # a shared volume, perhaps read-only: its owner sets its mode
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o700)

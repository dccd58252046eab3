"""Which isolation the hub uses: Docker wherever an engine answers, bubblewrap otherwise.

Order of precedence: ``DPSANDBOX_ISOLATION`` (``docker``, ``bubblewrap``, ``none``), then
``c.SandboxSpawner.isolation`` when set before the configuration runs (``jupyterhub
--SandboxSpawner.isolation=docker``), then the older ``DPSANDBOX_SANDBOX_ISOLATION``,
then ``auto``: Docker when the hub runs as root on Linux and the engine answers a
ping, bubblewrap otherwise (``none`` is never chosen automatically).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

__all__ = ["ISOLATIONS", "IsolationChoice", "choose_isolation", "docker_engine_answers"]

ISOLATIONS = ("docker", "bubblewrap", "none")


@dataclass(frozen=True)
class IsolationChoice:
    mode: str  # one of ISOLATIONS
    reason: str  # shown when the hub starts

    @property
    def spawner_class(self) -> str:
        """The ``jupyterhub.spawners`` entry point of the mode."""
        return "sandbox-docker" if self.mode == "docker" else "sandbox"


def docker_engine_answers(timeout: float = 3.0) -> str | None:
    """None when the Docker engine answers; otherwise why not."""
    if sys.platform != "linux":
        return "not Linux"
    if os.geteuid() != 0:
        return "the hub does not run as root"
    try:
        import docker

        client = docker.from_env(timeout=int(max(1, timeout)))
        client.ping()
        client.close()
    except Exception as exc:  # noqa: BLE001 (any failure means: no engine)
        return f"the Docker engine does not answer ({exc.__class__.__name__})"
    return None


def choose_isolation(requested: str | None = None) -> IsolationChoice:
    """The mode asked for (environment first, then ``requested``), or the best one here."""
    asked = (
        (
            os.environ.get("DPSANDBOX_ISOLATION")
            or requested
            or os.environ.get("DPSANDBOX_SANDBOX_ISOLATION")
            or "auto"
        )
        .strip()
        .lower()
    )
    if asked in ISOLATIONS:
        return IsolationChoice(asked, "as configured")
    if asked != "auto":
        raise ValueError(f"unknown isolation {asked!r}: use one of docker, bubblewrap, none, auto")
    why_not = docker_engine_answers()
    if why_not is None:
        return IsolationChoice("docker", "the Docker engine answers")
    return IsolationChoice("bubblewrap", f"no Docker: {why_not}")

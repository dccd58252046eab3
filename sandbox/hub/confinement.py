"""Limits and network filter of ``SandboxSpawner``: cgroups, and nftables for plain servers.

``ConfinementMixin`` sets up a sandbox's cgroup (``cgroups.py``, v1 or v2) and,
for servers run with ``isolation = "none"`` (which share the host's network),
the per-hub nftables egress filter of ``firewall.py``.  Under bubblewrap a
sandbox has its own network namespace, so the filter would be dead weight there
and is not installed.
"""

from __future__ import annotations

import asyncio
import hashlib
import pwd
from pathlib import Path
from typing import Any, ClassVar

from traitlets import CaselessStrEnum, Integer, Unicode
from traitlets.config import LoggingConfigurable

from .accounts import account_exists
from .cgroups import CgroupLimits, CgroupUnavailable, SandboxCgroup
from .firewall import FirewallUnavailable, SandboxFirewall, endpoint_of

__all__ = ["ConfinementMixin"]


class ConfinementMixin(LoggingConfigurable):
    """Traits and steps of a sandbox's limits and egress filter, for ``SandboxSpawner``."""

    _firewall_lock: ClassVar[asyncio.Lock] = asyncio.Lock()  # one nftables change at a time

    # Provided by the spawner.
    user: Any
    hub: Any
    hub_connect_url: Any
    mem_limit: Any
    cpu_limit: Any
    isolation: str
    gateway_url: str
    hub_state_dir: str
    as_root: bool
    system_user: str
    sandbox_home: Path
    filtered_uid: int | None

    pids_limit = Integer(
        1024, help="Most processes and threads a sandbox may have (cgroup pids.max); 0: no limit."
    ).tag(config=True)

    cgroup_root = Unicode(
        "/sys/fs/cgroup", help="Mount point of the cgroup v1 hierarchies or the v2 unified one."
    ).tag(config=True)

    network = CaselessStrEnum(
        ["gateway-only", "host"],
        default_value="gateway-only",
        help="""What a server run with isolation = "none" may connect to. (Under bubblewrap a
        sandbox always has its own network namespace and reaches the gateway and the
        hub API alone, through the hub's relay.)

        "gateway-only" (default): with root and nftables, new connections from a
        sandbox user's sockets are refused except to the gateway and the hub API
        (a filter per hub, by socket owner). "host": no filter.
        """,
    ).tag(config=True)

    nft_path = Unicode("nft", help="The nftables command (apt-get install nftables).").tag(config=True)

    def _cgroup(self) -> SandboxCgroup:
        return SandboxCgroup(self.sandbox_home.name, root=Path(self.cgroup_root))

    async def _setup_cgroup(self) -> SandboxCgroup | None:
        if not self.as_root:
            self.log.warning("No cgroup limits for %s: the hub does not run as root", self.user.name)
            return None
        limits = CgroupLimits(
            memory_bytes=self.mem_limit or None,
            cpus=self.cpu_limit or None,
            pids=self.pids_limit or None,
        )
        cgroup = self._cgroup()
        try:
            applied = await asyncio.to_thread(cgroup.setup, limits)
        except CgroupUnavailable as exc:
            self.log.warning("No cgroup limits for %s: %s", self.user.name, exc)
            return None
        self.log.info("cgroup limits for %s: %s", self.user.name, ", ".join(applied) or "none")
        return cgroup

    def _firewall(self) -> SandboxFirewall:
        state = str(Path(self.hub_state_dir).absolute())
        return SandboxFirewall(
            f"dpsandbox_{hashlib.sha256(state.encode()).hexdigest()[:10]}", nft=self.nft_path
        )

    def _filtered_mode(self) -> bool:
        """Only plain processes (isolation = "none") share the host's network and need nftables."""
        return self.isolation == "none" and self.network != "host"

    async def _restrict_network(self, uid: int) -> None:
        """Let the sandbox's user connect to the gateway and the hub API only."""
        if self.network == "host":
            self.log.warning("Network of %s is not filtered (network = 'host')", self.user.name)
            return
        if not self.as_root:
            self.log.warning("No network filter for %s: the hub does not run as root", self.user.name)
            return
        endpoints = [
            endpoint_of(self.gateway_url),
            endpoint_of(self.hub_connect_url or self.hub.api_url),
        ]
        firewall = self._firewall()
        try:
            async with self._firewall_lock:
                await asyncio.to_thread(firewall.install, endpoints)
                await asyncio.to_thread(firewall.allow_uid, uid)
            self.filtered_uid = uid
        except (FirewallUnavailable, OSError) as exc:
            self.log.warning(
                "No network filter for %s (%s): the sandbox can connect wherever the host can",
                self.user.name,
                exc,
            )
            return
        allowed = ", ".join(f"{host}:{port}" for host, port in endpoints)
        self.log.info("Network of %s: new connections only to %s", self.user.name, allowed)

    async def _forget_filtered_uid(self) -> None:
        """Take the sandbox's uid off the filter, even if its account was deleted meanwhile."""
        uid = self.filtered_uid
        if uid is None and self._filtered_mode() and account_exists(self.system_user):
            uid = pwd.getpwnam(self.system_user).pw_uid
        if uid is not None:
            async with self._firewall_lock:
                await asyncio.to_thread(self._firewall().forget_uid, uid)
            self.filtered_uid = None

"""The network of one hub's Docker sandboxes: internal, and the gateway and the hub alone.

- **One internal Docker network per hub** (``dpsandbox-<hash of the hub's state dir>``,
  bridge ``dps<hash>``): no NAT, Docker's own rules drop anything routed off it,
  inter-container traffic is off (``enable_icc=false``).  Docker still gives each
  container a default route via the bridge; the spawner deletes it in the container
  (:func:`drop_default_route`), so a packet to anywhere but the bridge's own subnet
  fails in the container with "network unreachable" and never leaves it.
- **A host-side filter** (nftables table ``inet dpsandbox_dk_<hash>``): from the
  bridge, the host accepts only new TCP connections to the bridge address on the
  gateway's and the hub API's forwarded ports, and routes nothing at all.
- **Forwarders** (:class:`~sandbox.hub.forwarder.TcpForwarder`) run by the hub on
  the bridge address, relaying to the gateway and the hub API on loopback: the only
  two services a sandbox can talk to, at addresses no sandbox can bind.

A hub that ends normally removes its network and filter (``atexit``); those of a hub
that died are removed by the next hub that sets up a network, once no container is
left on them.
"""

from __future__ import annotations

import atexit
import hashlib
import ipaddress
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DockerNetworkError", "SandboxNetwork", "drop_default_route", "network_names"]

LABEL = "org.dpsandbox.hub"
PID_LABEL = "org.dpsandbox.hub-pid"


class DockerNetworkError(RuntimeError):
    """The sandboxes' network, its filter or a container's routes could not be set up."""


@dataclass(frozen=True)
class NetworkNames:
    network: str
    bridge: str
    table: str
    container_prefix: str


def network_names(hub_state_dir: str) -> NetworkNames:
    digest = hashlib.sha256(str(Path(hub_state_dir).absolute()).encode()).hexdigest()
    return NetworkNames(
        network=f"dpsandbox-{digest[:10]}",
        bridge=f"dps{digest[:10]}",  # at most 15 characters
        table=f"dpsandbox_dk_{digest[:10]}",
        container_prefix=f"dpsandbox-{digest[:6]}",
    )


def _nft(script: str) -> None:
    nft = shutil.which("nft")
    if nft is None:
        raise DockerNetworkError("nft is not installed (apt-get install nftables)")
    result = subprocess.run([nft, "-f", "-"], input=script, capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise DockerNetworkError(f"nft: {result.stderr.strip()}")


def filter_rules(table: str, bridge: str, address: str, ports: Iterable[int]) -> str:
    """The nft script of the host-side filter of one sandbox bridge."""
    allowed = ", ".join(str(p) for p in sorted(set(ports)))
    t = f"inet {table}"
    return (
        "\n".join(
            [
                f"add table {t}",
                f"add chain {t} input {{ type filter hook input priority -10; policy accept; }}",
                f"add chain {t} forward {{ type filter hook forward priority -10; policy accept; }}",
                f"flush chain {t} input",
                f"flush chain {t} forward",
                f'add rule {t} input iifname "{bridge}" ct state established,related accept',
                f'add rule {t} input iifname "{bridge}" ip daddr {address} tcp dport {{ {allowed} }} '
                "ct state new accept",
                f'add rule {t} input iifname "{bridge}" drop',
                f'add rule {t} forward iifname "{bridge}" drop',
                f'add rule {t} forward oifname "{bridge}" drop',
            ]
        )
        + "\n"
    )


def _hub_alive(pid: str) -> bool:
    try:
        return b"jupyterhub" in Path(f"/proc/{int(pid)}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False


class SandboxNetwork:
    """The Docker network, host filter and forwarders of one hub."""

    def __init__(self, client: Any, hub_state_dir: str) -> None:
        self.client = client
        self.names = network_names(hub_state_dir)
        self.state_dir = str(Path(hub_state_dir).absolute())
        self.address = ""  # the bridge's host-side address, once set up

    def ensure(self) -> str:
        """Create (or find) the network; return the bridge's host-side address."""
        import docker

        self._remove_stale()
        try:
            network = self.client.networks.get(self.names.network)
        except docker.errors.NotFound:
            network = self._create()
        config = network.attrs.get("IPAM", {}).get("Config") or []
        if not config or not config[0].get("Gateway"):
            raise DockerNetworkError(f"network {self.names.network} has no gateway address")
        self.address = str(ipaddress.ip_address(config[0]["Gateway"].split("/")[0]))
        return self.address

    def _create(self) -> Any:
        import docker

        try:
            network = self.client.networks.create(
                self.names.network,
                driver="bridge",
                internal=True,
                check_duplicate=True,
                options={
                    "com.docker.network.bridge.name": self.names.bridge,
                    "com.docker.network.bridge.enable_icc": "false",
                    "com.docker.network.bridge.enable_ip_masquerade": "false",
                },
                labels={LABEL: self.state_dir, PID_LABEL: str(os.getpid())},
            )
        except docker.errors.APIError as exc:
            raise DockerNetworkError(f"cannot create network {self.names.network}: {exc}") from exc
        atexit.register(self.remove)
        network.reload()
        return network

    def install_filter(self, ports: Iterable[int]) -> None:
        if not self.address:
            raise DockerNetworkError("the network is not set up")
        _nft(filter_rules(self.names.table, self.names.bridge, self.address, ports))

    def remove(self) -> None:
        """Drop the network and its filter (containers on it are left alone: then it stays)."""
        _remove_network(self.client, self.names.network, self.names.table)

    def _remove_stale(self) -> None:
        """Networks of hubs that died without cleaning up, once nothing is attached to them."""
        import docker

        try:
            networks = self.client.networks.list(filters={"label": LABEL})
        except docker.errors.APIError:
            return
        for network in networks:
            labels = network.attrs.get("Labels") or {}
            if network.name == self.names.network or _hub_alive(labels.get(PID_LABEL, "")):
                continue
            table = network_names(labels.get(LABEL, "")).table if labels.get(LABEL) else ""
            _remove_network(self.client, network.name, table)


def _remove_network(client: Any, name: str, table: str) -> None:
    import docker

    try:
        network = client.networks.get(name)
        network.reload()
        if network.attrs.get("Containers"):
            return
        network.remove()
    except docker.errors.DockerException:
        return
    if table:
        try:
            _nft(f"delete table inet {table}\n")
        except DockerNetworkError:
            pass


def drop_default_route(pid: int) -> None:
    """Delete the default routes inside the network namespace of process ``pid``."""
    nsenter, ip = shutil.which("nsenter"), shutil.which("ip")
    if nsenter is None or ip is None:
        raise DockerNetworkError("nsenter (util-linux) and ip (iproute2) are needed")
    for family in ("-4", "-6"):
        for _ in range(4):  # one route per call; there is usually one
            deleted = subprocess.run(
                [nsenter, f"--net=/proc/{pid}/ns/net", ip, family, "route", "del", "default"],
                capture_output=True,
                timeout=10,
            )
            if deleted.returncode != 0:
                break
    routes = subprocess.run(
        [nsenter, f"--net=/proc/{pid}/ns/net", ip, "-4", "route", "show", "default"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if routes.returncode != 0 or routes.stdout.strip():
        raise DockerNetworkError(f"the container still has a default route: {routes.stdout.strip()}")

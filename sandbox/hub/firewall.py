"""Egress filter of the embedded sandboxes: the gateway and the hub, nothing else.

Embedded sandboxes share the host's network namespace (the gateway and the hub
listen on loopback), so without a filter a sandbox could open a connection to
anything the host can reach: a PostgreSQL that trusts local TCP, another
service's admin port, the internet.  One nftables table per hub drops every
new connection that a sandbox user's socket opens, except to the gateway's
and the hub API's address and port; replies on connections made *to* the
server (from the proxy) pass as established traffic.

Sockets are matched by their owner (``meta skuid``), which holds the host uid
even inside bubblewrap's user namespace, so the set of sandbox uids is the
whole state: ``allow_uid`` on spawn, ``forget_uid`` on stop.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import subprocess
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["FirewallUnavailable", "SandboxFirewall", "endpoint_of"]


class FirewallUnavailable(Exception):
    """nftables cannot be used here (not root, not installed, not permitted)."""


def endpoint_of(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "127.0.0.1", port


def _addresses(host: str) -> set[str]:
    try:
        return {str(ipaddress.ip_address(host))}
    except ValueError:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        return {str(info[4][0]) for info in infos}


class SandboxFirewall:
    """The nftables table ``inet <table>`` of one hub."""

    def __init__(self, table: str, *, nft: str = "nft") -> None:
        self.table = table
        self.nft = nft

    def _run(self, script: str) -> None:
        path = shutil.which(self.nft)
        if path is None:
            raise FirewallUnavailable("nft is not installed (apt-get install nftables)")
        result = subprocess.run([path, "-f", "-"], input=script, capture_output=True, text=True, timeout=10)
        if result.returncode != 0:
            raise FirewallUnavailable(f"nft: {result.stderr.strip()}")

    def rules(self, endpoints: Iterable[tuple[str, int]]) -> str:
        """The nft script that (re)creates the filter; the uid set keeps its members."""
        accepts = []
        for host, port in sorted(set(endpoints)):
            for address in sorted(_addresses(host)):
                family = "ip6" if ipaddress.ip_address(address).version == 6 else "ip"
                accepts.append(f"{family} daddr {address} tcp dport {port} accept")
        t = f"inet {self.table}"
        lines = [
            f"add table {t}",
            f"add set {t} uids {{ typeof meta skuid; }}",
            f"add chain {t} output {{ type filter hook output priority 0; policy accept; }}",
            f"flush chain {t} output",
            f"add rule {t} output meta skuid != @uids accept",
            f"add rule {t} output ct state established,related accept",
            *(f"add rule {t} output {accept}" for accept in accepts),
            f"add rule {t} output meta l4proto tcp reject with tcp reset",
            f"add rule {t} output reject",
        ]
        return "\n".join(lines) + "\n"

    def install(self, endpoints: Iterable[tuple[str, int]]) -> None:
        self._run(self.rules(endpoints))

    def allow_uid(self, uid: int) -> None:
        """Put ``uid`` under the filter (the name says what it may still do).

        A uid sandboxes under one hub at a time, so any other dp-sandbox table that still
        lists it is stale (a hub that died without cleaning up, and a deleted account
        whose uid was reused): its rules would send this sandbox to another hub's ports.
        """
        for table in self._tables() - {self.table}:
            SandboxFirewall(table, nft=self.nft).forget_uid(uid)
        self._run(f"add element inet {self.table} uids {{ {uid} }}\n")

    def _tables(self) -> set[str]:
        """The dp-sandbox tables on this machine (every hub's)."""
        path = shutil.which(self.nft)
        if path is None:
            return set()
        result = subprocess.run([path, "-j", "list", "tables", "inet"], capture_output=True,
                                text=True, timeout=10)
        if result.returncode != 0:
            return set()
        prefix = self.table.split("_")[0] + "_"
        return {item["table"]["name"] for item in json.loads(result.stdout).get("nftables", [])
                if "table" in item and item["table"].get("name", "").startswith(prefix)}

    def forget_uid(self, uid: int) -> None:
        """Take ``uid`` off the filter; drop the table once no sandbox is left in it."""
        try:
            self._run(f"delete element inet {self.table} uids {{ {uid} }}\n")
        except FirewallUnavailable:
            pass  # not in the set (never spawned, or already forgotten)
        if not self.uids():
            try:
                self._run(f"delete table inet {self.table}\n")
            except FirewallUnavailable:
                pass  # already gone

    def uids(self) -> set[int]:
        path = shutil.which(self.nft)
        if path is None:
            return set()
        result = subprocess.run(
            [path, "-j", "list", "set", "inet", self.table, "uids"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        if result.returncode != 0:
            return set()
        found: set[int] = set()
        for item in json.loads(result.stdout).get("nftables", []):
            found.update(int(e) for e in item.get("set", {}).get("elem", []) if isinstance(e, int))
        return found

"""What the Docker end-to-end tests share: the image, a gateway they may stop, analysts.

Everything is real: Debian's dockerd, the sandbox image built on this machine, the hub
with ``DPSANDBOX_ISOLATION=docker``, containers, code run in their kernels.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox.hub.docker_network import network_names
from tests.e2e.hubclient import HubBrowser, KernelSession
from tests.e2e.support import DPSANDBOX, PASSWORD, Gateway, Hub, running_hub, wait_http

DOCKER_ENV = {
    "DPSANDBOX_ISOLATION": "docker",
    "DPSANDBOX_SANDBOX_MEM_LIMIT": "640M",
    "DPSANDBOX_SANDBOX_CPU_LIMIT": "1",
    "DPSANDBOX_SANDBOX_HOME_SIZE": "64M",
    "DPSANDBOX_SANDBOX_PIDS_LIMIT": "256",
}


def docker_client() -> Any:
    """The engine, or a failure naming what is missing (never a skip as root)."""
    if os.geteuid() != 0:
        pytest.skip("Docker sandboxes need root (the engine, loop mounts, nftables)")
    import docker

    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"the Docker engine does not answer ({exc}): sh sandbox/image/start-dockerd.sh")
    return client


def sandbox_image() -> str:
    """The sandbox image, built here if it is not yet (minutes the first time)."""
    from sandbox.hub.image import build_image

    return build_image()


@contextmanager
def docker_hub(gateway: Gateway, run_dir: Path, env: Mapping[str, str] | None = None) -> Iterator[Hub]:
    with running_hub(gateway, run_dir, env={**DOCKER_ENV, **(env or {})}) as hub:
        yield hub
    names = network_names(str(gateway.home / "hub"))
    client = docker_client()
    leftovers = client.containers.list(all=True, filters={"name": names.container_prefix})
    assert not leftovers, f"containers left behind by the hub: {[c.name for c in leftovers]}"


def stop_gateway(gateway: Gateway) -> None:
    gateway.proc.send_signal(signal.SIGTERM)
    gateway.proc.wait(30)


def restart_gateway(gateway: Gateway) -> None:
    """The same gateway (home, port) again; ``gateway.proc`` is the new process."""
    port = gateway.url.rsplit(":", 1)[1]
    log = open(gateway.home.parent / "gateway-restarted.log", "ab")
    gateway.proc = subprocess.Popen(
        [str(DPSANDBOX), "gateway", "--port", port],
        env=gateway.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_http(f"{gateway.url}/v1/datasets", proc=gateway.proc)


@dataclass
class Box:
    """One analyst: browser session, running container, one kernel."""

    hub: Hub
    username: str
    browser: HubBrowser | None = None
    kernel: KernelSession | None = None

    def login(self) -> Box:
        self.browser = HubBrowser(self.hub.url)
        response = self.browser.login(self.username, PASSWORD)
        assert response.status_code == 302, response.text
        return self

    def start(self) -> Box:
        if self.browser is None:
            self.login()
        assert self.browser is not None
        self.browser.start_server()
        self.kernel = KernelSession(self.hub.url, self.username, self.browser.server_token())
        return self

    def run(self, code: str, timeout: float = 60) -> str:
        assert self.kernel is not None
        self.kernel.ws.settimeout(max(60, timeout))  # a long cell sends nothing meanwhile
        return self.kernel.execute(code, timeout=timeout)

    def run_json(self, code: str, timeout: float = 60) -> Any:
        return json.loads(self.run(code, timeout).strip().splitlines()[-1])

    def close(self) -> None:
        if self.kernel is not None:
            self.kernel.close()
            self.kernel = None
        if self.browser is not None:
            self.browser.close()


def container_of(gateway: Gateway, username: str) -> Any:
    names = network_names(str(gateway.home / "hub"))
    return docker_client().containers.get(f"{names.container_prefix}-{username}")


def bridge_address(gateway: Gateway) -> str:
    names = network_names(str(gateway.home / "hub"))
    network = docker_client().networks.get(names.network)
    return str(network.attrs["IPAM"]["Config"][0]["Gateway"])

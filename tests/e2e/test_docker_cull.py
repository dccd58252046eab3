"""An idle Docker sandbox is culled like any other: container gone, home unmounted, token dead."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox.hub.docker_network import network_names
from tests.e2e.docker_support import Box, docker_client, docker_hub, sandbox_image
from tests.e2e.support import Gateway, Hub

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-docker-cull")]
IDLE_SECONDS = 20  # the culler then checks every 10 s (its shortest period here)


@pytest.fixture(scope="module")
def impatient_docker_hub(gateway: Gateway, e2e_dir: Path) -> Iterator[Hub]:
    docker_client()
    sandbox_image()
    with docker_hub(gateway, e2e_dir, env={"DPSANDBOX_IDLE_TIMEOUT": str(IDLE_SECONDS)}) as hub:
        yield hub


def test_an_idle_container_is_culled_and_its_token_dies(
    impatient_docker_hub: Hub, gateway: Gateway, exam_dataset: str
) -> None:
    name = gateway.add_user(f"dkidle{secrets.token_hex(3)}", "researcher")
    box = Box(impatient_docker_hub, name).start()
    names = network_names(str(gateway.home / "hub"))
    try:
        token = box.run("import os; print(os.environ['DPSANDBOX_TOKEN'])").strip().splitlines()[-1]
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{gateway.url}/v1/me", headers=headers).status_code == 200
        assert docker_client().containers.list(filters={"name": f"{names.container_prefix}-{name}"})
        assert box.kernel is not None
        box.kernel.close()
        box.kernel = None
        assert box.browser is not None
        # the culler acts within IDLE_SECONDS + its period; generous for 2 busy cores
        deadline = time.monotonic() + IDLE_SECONDS + 120
        while box.browser.api("GET", f"/users/{name}").json().get("servers"):
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the idle container of {name} was not culled:\n{impatient_docker_hub.log()[-3000:]}"
                )
            time.sleep(1)
        stops = [
            line
            for line in impatient_docker_hub.log().splitlines()
            if f"DELETE /hub/api/users/{name}/server" in line and "idle-culler" in line
        ]
        assert stops, "the server stopped, but not by the culler"
        home = gateway.home / "hub" / "docker-homes" / "mnt" / name
        deadline = time.monotonic() + 60
        while docker_client().containers.list(
            all=True, filters={"name": f"{names.container_prefix}-{name}"}
        ) or str(home) in Path("/proc/mounts").read_text():
            assert time.monotonic() < deadline, "the culled container or its home mount remained"
            time.sleep(0.5)
        assert httpx.get(f"{gateway.url}/v1/me", headers=headers).status_code == 401
        query = {"dataset": exam_dataset, "select": [{"agg": "count"}], "epsilon": 0.1}
        assert httpx.post(f"{gateway.url}/v1/queries", json=query, headers=headers).status_code == 401
        assert httpx.post(f"{gateway.url}/v1/auth/refresh", headers=headers).status_code == 401
    finally:
        box.close()

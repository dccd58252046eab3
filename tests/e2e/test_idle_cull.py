"""Idle servers are culled: jupyterhub-idle-culler, run by the hub, stops them."""

from __future__ import annotations

import pwd
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox.hub.isolation import system_username
from tests.e2e.hubclient import HubBrowser
from tests.e2e.support import (
    PASSWORD,
    Gateway,
    Hub,
    assert_tokens_refused,
    processes_of,
    remove_system_user,
    running_hub,
    server_environ,
)

pytestmark = pytest.mark.e2e
IDLE_SECONDS = 20  # the culler then checks every 10 s (its shortest period here)


@pytest.fixture(scope="module")
def impatient_hub(gateway: Gateway, sandbox_env: Path, e2e_dir: Path) -> Iterator[Hub]:
    with running_hub(gateway, e2e_dir, env={"DPSANDBOX_IDLE_TIMEOUT": str(IDLE_SECONDS)}) as hub:
        yield hub


def test_an_idle_server_is_stopped_and_leaves_no_process(impatient_hub: Hub,
                                                         gateway: Gateway) -> None:
    name = gateway.add_user(f"idle{secrets.token_hex(3)}", "researcher")
    browser = HubBrowser(impatient_hub.url)
    try:
        assert browser.login(name, PASSWORD).status_code == 302
        browser.start_server()
        uid = pwd.getpwnam(system_username(name)).pw_uid
        assert processes_of(uid)
        token = server_environ(name)["DPSANDBOX_TOKEN"]
        refreshed = httpx.post(f"{gateway.url}/v1/auth/refresh",
                               headers={"Authorization": f"Bearer {token}"}).json()["access_token"]
        # the culler acts within IDLE_SECONDS + its 10 s period; generous for 2 busy cores
        deadline = time.monotonic() + IDLE_SECONDS + 120
        while time.monotonic() < deadline:
            if not browser.api("GET", f"/users/{name}").json().get("servers"):
                break
            time.sleep(1)
        else:
            pytest.fail(f"the idle server of {name} was not culled:\n{impatient_hub.log()[-3000:]}")
        stops = [line for line in impatient_hub.log().splitlines()
                 if f"DELETE /hub/api/users/{name}/server" in line and "idle-culler" in line]
        assert stops, "the server stopped, but not by the culler"
        deadline = time.monotonic() + 60
        while processes_of(uid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert processes_of(uid) == []
        assert_tokens_refused(gateway, [token, refreshed])  # culled: its tokens ended with it
    finally:
        browser.close()
        remove_system_user(name)

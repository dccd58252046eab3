"""Upgrading to size-limited homes: an analyst's plain home from before is moved into the
home image on the first spawn (its notebook opens in the server), once; one too big for the
image refuses the spawn, untouched, with a translated message (sandbox/hub/old_homes.py).
Under Docker the same plain home moves into the container's home, as its analyst."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sandbox.hub.isolation import system_username
from tests.e2e.docker_support import docker_client, docker_hub, sandbox_image
from tests.e2e.hubclient import HubBrowser, KernelSession
from tests.e2e.support import (
    PASSWORD,
    Gateway,
    Hub,
    remove_system_user,
    run_directory,
    running_gateway,
    running_hub,
)

pytestmark = pytest.mark.e2e
MARK = "old-work-" + secrets.token_hex(4)


@pytest.fixture(scope="module")
def image_hub(gateway: Gateway, sandbox_env: Path, e2e_dir: Path) -> Iterator[Hub]:
    with running_hub(gateway, e2e_dir, env={"DPSANDBOX_SANDBOX_HOME_SIZE": "64M"}) as hub:
        yield hub


def _old_style_account(name: str) -> Path:
    """The account and plain home an analyst had before homes were images (the same
    useradd the hub ran then), with a notebook and a private script in it."""
    account = system_username(name)
    subprocess.run(
        ["useradd", "--create-home", "--home-dir", f"/home/{account}", "--shell", "/bin/bash",
         "--user-group", "--comment", f"dp-sandbox analyst {name}", account],
        check=True, capture_output=True,
    )  # fmt: skip
    entry = pwd.getpwnam(account)
    home = Path(entry.pw_dir)
    os.chmod(home, 0o700)
    notebook = {
        "cells": [{"cell_type": "code", "execution_count": None, "id": "c1", "metadata": {},
                   "outputs": [], "source": [f"print('{MARK}')"]}],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }  # fmt: skip
    (home / "work").mkdir()
    (home / "work" / "old-analysis.ipynb").write_text(json.dumps(notebook))
    (home / "work" / "private.sh").write_text("#!/bin/sh\necho mine\n")
    os.chmod(home / "work" / "private.sh", 0o700)
    for path in (home, *home.rglob("*")):
        os.lchown(path, entry.pw_uid, entry.pw_gid)
    return home


def _backups(home: Path) -> list[Path]:
    return sorted(home.parent.glob(f"{home.name}.moved-to-image-*"))


def _remove(name: str, home: Path, browser: HubBrowser) -> None:
    if browser.api("GET", f"/users/{name}").json().get("servers"):
        browser.stop_server()  # only when the test failed half-way
    browser.close()
    remove_system_user(name)
    for backup in _backups(home):
        shutil.rmtree(backup, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)


@dataclass
class Started:
    name: str
    old: Path  # where the old home was
    browser: HubBrowser
    kernel: KernelSession
    token: str


@contextmanager
def _started_over_old_home(hub: Hub, gateway: Gateway, prefix: str) -> Iterator[Started]:
    """An analyst with an old-style account and home, logged in, server started (the old
    notebook opened through it), a kernel; everything removed at the end."""
    name = gateway.add_user(f"{prefix}{secrets.token_hex(3)}", "researcher")
    old = _old_style_account(name)
    browser = HubBrowser(hub.url)
    kernel = None
    try:
        assert browser.login(name, PASSWORD).status_code == 302
        browser.start_server()
        token = browser.server_token()
        _assert_opens_old_notebook(hub, name, token)
        kernel = KernelSession(hub.url, name, token)
        yield Started(name, old, browser, kernel, token)
    finally:
        if kernel is not None:
            kernel.close()
        _remove(name, old, browser)


def _assert_opens_old_notebook(hub: Hub, name: str, token: str) -> None:
    contents = httpx.get(
        f"{hub.url}/user/{name}/api/contents/work/old-analysis.ipynb",
        headers={"Authorization": f"token {token}"}, timeout=30,
    )  # fmt: skip
    assert contents.status_code == 200, contents.text
    assert MARK in json.dumps(contents.json()["content"])  # the server opens the old notebook


def test_an_old_home_is_moved_into_the_image_and_its_notebook_opens(image_hub: Hub, gateway: Gateway) -> None:
    with _started_over_old_home(image_hub, gateway, "old") as box:
        name, old = box.name, box.old
        out = box.kernel.execute(
            "import os, pathlib\n"
            "home = pathlib.Path.home()\n"
            "s = os.stat(home / 'work' / 'private.sh')\n"
            "mounted = [l.split()[1] for l in open('/proc/self/mounts') if l.split()[1] == str(home)]\n"
            "print('HOME', home, oct(s.st_mode & 0o777), s.st_uid == os.getuid(), mounted)\n"
            "print('RUN', (home / 'work' / 'private.sh').read_text().strip())"
        )
        assert f"HOME /home/{system_username(name)} 0o700 True ['/home/" in out, out  # in the image
        assert "RUN #!/bin/sh" in out, out
        [backup] = _backups(old)
        assert not os.path.lexists(old)
        assert (backup / "work" / "old-analysis.ipynb").is_file()  # kept for the admin
        log = image_hub.log()
        assert log.count(f"Moved the old home of {name} into its size-limited home") == 1, log
        assert str(backup) in log
        box.browser.stop_server()
        box.browser.start_server()  # the second start finds nothing to move and keeps the work
        _assert_opens_old_notebook(image_hub, name, box.token)
        assert image_hub.log().count(f"Moving the old home of {name}") == 1
        assert _backups(old) == [backup]
        box.browser.stop_server()


def test_an_old_home_too_big_for_the_image_refuses_the_spawn_and_stays(
    image_hub: Hub, gateway: Gateway
) -> None:
    name = gateway.add_user(f"big{secrets.token_hex(3)}", "researcher")
    old = _old_style_account(name)
    with open(old / "work" / "big.bin", "wb") as f:
        f.write(os.urandom(80 * 2**20))
    os.lchown(old / "work" / "big.bin", old.stat().st_uid, old.stat().st_gid)
    before = sorted(str(p.relative_to(old)) for p in old.rglob("*"))
    browser = HubBrowser(image_hub.url)
    try:
        assert browser.login(name, PASSWORD).status_code == 302
        response = browser.api("POST", f"/users/{name}/server", json={},
                               headers={"Accept-Language": "zh-CN,zh;q=0.9"})  # fmt: skip
        assert response.status_code in (201, 202, 400), response.text
        with pytest.raises(AssertionError, match=r"spawn of .* failed"):
            browser.wait_ready(timeout=60)
        events = browser.api("GET", f"/users/{name}/server/progress").text
        progress = " ".join(json.loads(line[5:]).get("message", "")
                            for line in events.splitlines() if line.startswith("data:"))  # fmt: skip
        assert "DPSANDBOX_SANDBOX_HOME_SIZE" in progress and "管理员" in progress, progress
        assert "64M" in progress and str(old) in progress
        assert sorted(str(p.relative_to(old)) for p in old.rglob("*")) == before  # untouched
        assert _backups(old) == []
        log = image_hub.log()
        assert f"Not starting {name}'s server" in log and f"the old home {old} (" in log, log
        assert f"Unhandled error starting {name}" not in log  # a refusal, not a crash
        account = system_username(name)
        assert not [line for line in Path("/proc/mounts").read_text().splitlines()
                    if line.split()[1].endswith(f"/mnt/{account}")]  # nothing left mounted
    finally:
        _remove(name, old, browser)


def test_docker_moves_an_old_bubblewrap_home_in_as_its_containers_analyst(sandbox_env: Path) -> None:
    docker_client()
    sandbox_image()
    with (
        run_directory("docker-old-") as run_dir,
        running_gateway(run_dir) as gateway,
        docker_hub(gateway, run_dir) as hub,
        _started_over_old_home(hub, gateway, "dko") as box,
    ):
        out = box.kernel.execute(
            "import os, pathlib\n"
            "s = os.stat(pathlib.Path.home() / 'work' / 'private.sh')\n"
            "print('OWNER', os.getuid(), s.st_uid, s.st_gid, oct(s.st_mode & 0o777))"
        )
        assert "OWNER 61000 61000 61000 0o700" in out, out  # the container's analyst
        [backup] = _backups(box.old)
        assert not os.path.lexists(box.old)
        old_uid = pwd.getpwnam(system_username(box.name)).pw_uid
        assert (backup / "work" / "private.sh").stat().st_uid == old_uid  # the backup is as it was
        assert f"Moved the old home of {box.name} into its size-limited home" in hub.log()

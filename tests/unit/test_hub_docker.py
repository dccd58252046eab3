"""Docker isolation's building blocks without a hub: mode choice, image tags, seccomp,
the bridge filter, size-limited homes (real loop mounts as root), the forwarder."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest

from sandbox.hub import modes
from sandbox.hub.docker_network import filter_rules, network_names
from sandbox.hub.docker_spawner import DockerSandboxSpawner
from sandbox.hub.forwarder import TcpForwarder
from sandbox.hub.homes import HomeVolumes, parse_size
from sandbox.hub.image import IMAGE_DIR, ImageInputs

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


# -- which isolation -------------------------------------------------------------------


def test_isolation_follows_the_environment_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DPSANDBOX_ISOLATION", "Docker")
    assert modes.choose_isolation("bubblewrap").mode == "docker"
    assert modes.choose_isolation().spawner_class == "sandbox-docker"
    monkeypatch.setenv("DPSANDBOX_ISOLATION", "bubblewrap")
    assert modes.choose_isolation("docker").spawner_class == "sandbox"


def test_isolation_traitlet_then_older_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DPSANDBOX_ISOLATION", raising=False)
    monkeypatch.setenv("DPSANDBOX_SANDBOX_ISOLATION", "none")
    assert modes.choose_isolation("docker").mode == "docker"
    assert modes.choose_isolation().mode == "none"
    with pytest.raises(ValueError, match="unknown isolation"):
        modes.choose_isolation("podman")


def test_auto_picks_docker_only_when_the_engine_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DPSANDBOX_ISOLATION", "DPSANDBOX_SANDBOX_ISOLATION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(modes, "docker_engine_answers", lambda: None)
    assert modes.choose_isolation().mode == "docker"
    monkeypatch.setattr(modes, "docker_engine_answers", lambda: "the hub does not run as root")
    choice = modes.choose_isolation()
    assert (choice.mode, choice.reason) == ("bubblewrap", "no Docker: the hub does not run as root")


# -- the image's name --------------------------------------------------------------------


def test_image_tag_is_a_hash_of_its_inputs() -> None:
    inputs = ImageInputs.here(REPO)
    assert inputs.tag == ImageInputs.here(REPO).tag
    assert inputs.tag.startswith("dpsandbox/sandbox:") and inputs.base_tag.startswith(
        "dpsandbox/sandbox-base:"
    )
    changed = ImageInputs(**{**inputs.__dict__, "dockerfile": inputs.dockerfile + b"\n# changed\n"})
    assert changed.tag != inputs.tag and changed.base_tag == inputs.base_tag
    unrelated = ImageInputs(**{**inputs.__dict__, "lock": inputs.lock + b"pyseccomp==9.9\nopendp==9.9\n"})
    assert unrelated.tag == inputs.tag  # a pin of the gateway's alone does not rebuild the image
    pandas = next(line for line in inputs.lock.decode().splitlines() if line.startswith("pandas=="))
    bumped = inputs.lock.decode().replace(pandas, "pandas==0.0.1").encode()
    other_lock = ImageInputs(**{**inputs.__dict__, "lock": bumped})
    assert other_lock.tag != inputs.tag and "pandas==0.0.1" in other_lock.pins
    assert "jupyterlab==" in inputs.pins and "opendp" not in inputs.pins
    other_sources = ImageInputs(**{**inputs.__dict__, "sources": (("/x.list", b"deb http://m/ s main"),)})
    assert other_sources.base_tag != inputs.base_tag and other_sources.tag != inputs.tag
    assert any(name == "client/_gateway.py" for name, _ in inputs.client)
    assert not any(name.startswith("hub/") for name, _ in inputs.client)  # no hub code in sandboxes


def test_dockerfile_runs_unprivileged_and_installs_offline() -> None:
    dockerfile = (IMAGE_DIR / "Dockerfile").read_text()
    assert "USER 61000:61000" in dockerfile
    assert "--no-index" in dockerfile
    assert "pip download" not in dockerfile and "apt-get" not in dockerfile


# -- what a container is given -----------------------------------------------------------


def test_container_host_config_is_locked_down(tmp_path: Path) -> None:
    spawner = DockerSandboxSpawner(
        hub_state_dir=str(tmp_path), mem_limit="512M", pids_limit=64, tmp_size="64M"
    )
    config = spawner._host_config()
    assert config["read_only"] is True
    assert config["cap_drop"] == ["ALL"]
    assert config["cgroupns"] == "private"
    assert config["pids_limit"] == 64
    assert config["memswap_limit"] == 512 * 1024**2
    assert config["tmpfs"]["/tmp"].endswith(f"size={64 * 1024**2}")
    security = config["security_opt"]
    assert "no-new-privileges:true" in security
    (seccomp,) = [s for s in security if s.startswith("seccomp=")]
    profile = json.loads(seccomp.removeprefix("seccomp="))
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    allowed = {n for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW" for n in rule["names"]}
    assert "read" in allowed and "clone" in allowed
    assert not {"ptrace", "process_vm_readv", "process_vm_writev", "keyctl"} & allowed
    assert spawner.network_name == network_names(str(tmp_path)).network
    assert spawner.pull_policy == "never" and spawner.remove is True
    assert "--KernelManager.transport=ipc" in spawner.get_args()


def test_what_stop_needs_survives_a_hub_restart(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DPSANDBOX_HOME", str(tmp_path))
    monkeypatch.delenv("DPSANDBOX_HUB_SECRET_FILE", raising=False)
    before = DockerSandboxSpawner(hub_state_dir=str(tmp_path), user=SimpleNamespace(name="rita"))
    assert before.hub_secret_file == str(tmp_path / "state" / "hub_secret")
    before.token_jti, before.sandbox_token = "1" * 32, "a token"
    before.home_name, before.needs_cleanup = "dps-rita", True
    after = DockerSandboxSpawner(hub_state_dir=str(tmp_path), user=SimpleNamespace(name="rita"))
    after.load_state(before.get_state())
    assert (after.token_jti, after.home_name, after.needs_cleanup) == ("1" * 32, "dps-rita", True)
    assert after.sandbox_token == ""  # the token itself is never saved
    after.clear_state()
    assert "token_jti" not in after.get_state()


def test_bridge_filter_accepts_two_ports_and_routes_nothing() -> None:
    names = network_names("/srv/hub-state")
    assert len(names.bridge) <= 15
    rules = filter_rules(names.table, names.bridge, "172.31.240.1", [8600, 8081, 8600])
    lines = rules.splitlines()
    assert (
        f'add rule inet {names.table} input iifname "{names.bridge}" ip daddr 172.31.240.1 '
        "tcp dport { 8081, 8600 } ct state new accept" in lines
    )
    assert lines.index(f'add rule inet {names.table} input iifname "{names.bridge}" drop') > 5
    assert f'add rule inet {names.table} forward iifname "{names.bridge}" drop' in lines
    assert network_names("/srv/other").network != names.network


# -- size-limited homes --------------------------------------------------------------------


def test_parse_size() -> None:
    assert parse_size("5G") == 5 * 1024**3
    assert parse_size("512M") == 512 * 1024**2
    assert parse_size("64MiB") == 64 * 1024**2
    assert parse_size(1000) == 1000
    with pytest.raises(ValueError):
        parse_size("lots")


needs_loop = pytest.mark.skipif(os.geteuid() != 0, reason="loop mounts need root")


@needs_loop
def test_home_volume_enforces_its_size_and_grows(tmp_path: Path) -> None:
    # as root a missing tool is a failure: `make test` installs e2fsprogs, and the spawners'
    # size-limited homes need both
    assert shutil.which("mkfs.ext4"), "size-limited homes need mkfs.ext4 (e2fsprogs)"
    assert Path("/dev/loop-control").exists(), "size-limited homes need loop devices"
    homes = HomeVolumes(tmp_path / "homes", size_bytes=32 * 1024**2)
    home = homes.mount("ana", uid=61000, gid=61000)
    try:
        assert homes.is_mounted("ana")
        assert (home.stat().st_uid, home.stat().st_mode & 0o777) == (61000, 0o700)
        with pytest.raises(OSError, match="No space left"):
            with open(home / "big", "wb") as f:
                for _ in range(64):
                    f.write(b"\0" * 1024**2)
                    f.flush()
                    os.fsync(f.fileno())
        (home / "big").unlink()
        (home / "keep.txt").write_text("kept")
        homes.unmount("ana")
        assert not homes.is_mounted("ana")
        assert homes.image_of("ana").stat().st_blocks * 512 < 32 * 1024**2  # sparse
        bigger = HomeVolumes(tmp_path / "homes", size_bytes=48 * 1024**2)
        home = bigger.mount("ana", uid=61000, gid=61000)
        assert (home / "keep.txt").read_text() == "kept"
        assert os.statvfs(home).f_blocks * os.statvfs(home).f_frsize > 36 * 1024**2  # was < 32
    finally:
        if homes.is_mounted("ana"):
            homes.unmount("ana")
    with pytest.raises(ValueError):
        homes.mount("../etc", uid=61000, gid=61000)


# -- the forwarder ---------------------------------------------------------------------------


def test_forwarder_relays_both_ways_and_refuses_cleanly_without_a_target() -> None:
    async def scenario() -> tuple[bytes, bytes]:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await reader.read(100)
            writer.write(b"echo:" + data)
            await writer.drain()
            writer.close()

        upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
        target = upstream.sockets[0].getsockname()[:2]
        forwarder = TcpForwarder(("127.0.0.1", 0), target)
        await forwarder.start()
        assert forwarder._server is not None
        listen = forwarder._server.sockets[0].getsockname()[:2]
        reader, writer = await asyncio.open_connection(*listen)
        writer.write(b"ping")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(100), 5)
        writer.close()
        upstream.close()
        await upstream.wait_closed()
        reader, writer = await asyncio.open_connection(*listen)  # target gone: closed at once
        refused = await asyncio.wait_for(reader.read(100), 5)
        writer.close()
        await forwarder.close()
        return answer, refused

    answer, refused = run_async(scenario())
    assert answer == b"echo:ping"
    assert refused == b""


def test_start_dockerd_script_is_valid_shell() -> None:
    result = subprocess.run(["sh", "-n", str(IMAGE_DIR / "start-dockerd.sh")], capture_output=True)
    assert result.returncode == 0, result.stderr

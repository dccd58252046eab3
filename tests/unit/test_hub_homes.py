"""Analysts' homes: one set of settings for both isolations, the mode of the folder holding
them (real loop mounts and a real unprivileged process as root), and an old plain home
moved into its image (sandbox/hub/homes.py, old_homes.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from sandbox.hub import old_homes
from sandbox.hub.docker_spawner import DockerSandboxSpawner
from sandbox.hub.homes import HomesMixin, HomeVolumes, OldHome
from sandbox.hub.old_homes import STAGING, OldHomeTooBig, has_old_home, move_old_home
from sandbox.hub.spawner import SandboxSpawner

MiB = 1024**2
ANALYST = 61234  # no account needed: owners are numbers
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="loop mounts and chown need root")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder other uids can traverse (pytest's tmp_path is inside a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="dps-homes-", dir="/var/tmp"))
    os.chmod(path, 0o755)  # noqa: S103
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# -- one set of settings ---------------------------------------------------------------------


def test_both_spawners_take_their_home_settings_from_one_place() -> None:
    for cls in (SandboxSpawner, DockerSandboxSpawner):
        traits = cls.class_traits(config=True)
        assert traits["home_size"] is HomesMixin.class_traits()["home_size"]
        assert traits["homes_dir"] is HomesMixin.class_traits()["homes_dir"]
        assert "home_size" not in vars(cls) and "homes_dir" not in vars(cls)
    bubblewrap = SandboxSpawner(hub_state_dir="/srv/hub", home_size="64M")
    docker = DockerSandboxSpawner(hub_state_dir="/srv/hub", home_size="64M")
    assert bubblewrap.homes_dir.startswith("/var/lib/dpsandbox/homes-")  # outside the 0700 state
    assert docker.homes_dir == "/srv/hub/docker-homes"
    if os.geteuid() == 0:
        volumes = bubblewrap._home_volumes()
        assert volumes is not None and volumes.folder_mode == 0o711
        assert volumes.size_bytes == 64 * MiB
    docker_volumes = docker._home_volumes()
    assert docker_volumes is not None and docker_volumes.folder_mode == 0o700


@needs_root
@pytest.mark.parametrize("analysts_traverse", [True, False])
def test_the_folder_of_every_home_lets_only_whom_it_must_through(
    open_dir: Path, analysts_traverse: bool
) -> None:
    """bubblewrap resolves the bind source as the analyst: they must traverse, not list;
    under Docker only root (the engine) opens the path."""
    root = open_dir / "homes"
    (root / "mnt").mkdir(parents=True, mode=0o755)  # made by an older version: fixed
    volumes = HomeVolumes(root, size_bytes=32 * MiB, analysts_traverse=analysts_traverse)
    home = volumes.mount("dps-ana", uid=ANALYST, gid=ANALYST)
    try:
        expected = 0o711 if analysts_traverse else 0o700
        assert (_mode(root), _mode(root / "mnt"), _mode(root / "images")) == (expected, expected, 0o700)
        assert (home.stat().st_uid, _mode(home)) == (ANALYST, 0o700)

        def as_user(uid: int, script: str) -> str:
            result = subprocess.run(
                ["/bin/sh", "-c", script, "sh", str(home)], user=uid, group=uid,
                extra_groups=[], capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            return result.stdout.strip() or result.stderr.strip()

        write = 'echo 1 > "$1/x" && echo ok'
        listing = 'ls "$(dirname "$1")"'
        if analysts_traverse:
            assert as_user(ANALYST, write) == "ok"  # the analyst reaches its home by its path
        else:
            assert "Permission denied" in as_user(ANALYST, write)
        assert "Permission denied" in as_user(ANALYST, listing)  # nobody lists the others
        assert "Permission denied" in as_user(ANALYST + 1, write)  # another uid: never inside
    finally:
        volumes.unmount("dps-ana")


# -- an old plain home moved in --------------------------------------------------------------


def _old_home(parent: Path) -> Path:
    old = parent / "dps-ana"
    (old / "work" / "deep").mkdir(parents=True)
    (old / "work" / "analysis.ipynb").write_text('{"cells": [], "nbformat": 4}')
    (old / "work" / "deep" / "data.bin").write_bytes(os.urandom(3 * MiB))
    (old / ".bashrc").write_text("alias ll='ls -l'\n")
    (old / "script.sh").write_text("#!/bin/sh\n")
    os.chmod(old / "script.sh", 0o750)  # noqa: S103 (a mode the move must keep)
    os.chmod(old / "work" / "deep", 0o701)
    os.symlink("work/analysis.ipynb", old / "latest.ipynb")
    os.symlink("/etc/shadow", old / "sneaky")  # copied as a link, never followed
    os.mkfifo(old / "pipe")
    os.utime(old / "work" / "analysis.ipynb", ns=(1_600_000_000 * 10**9, 1_600_000_000 * 10**9))
    for path in (old, *old.rglob("*")):
        os.lchown(path, ANALYST, ANALYST)
    os.chmod(old, 0o700)
    return old


def _tree(top: Path) -> dict[str, tuple[int, int, int, int, bytes | str | None]]:
    """What the move must keep of each entry (but the FIFO, which stays behind)."""
    out = {}
    for path in sorted(top.rglob("*")):
        info = os.lstat(path)
        rel = str(path.relative_to(top))
        if stat.S_ISFIFO(info.st_mode) or rel.startswith("lost+found") or rel == "templates":
            continue
        content: bytes | str | None = None
        if stat.S_ISLNK(info.st_mode):
            content = os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            content = path.read_bytes()
        mtime = 0 if stat.S_ISDIR(info.st_mode) else info.st_mtime_ns
        out[rel] = (info.st_mode, info.st_uid, info.st_gid, mtime, content)
    return out


@needs_root
def test_an_old_home_moves_into_its_image_once_with_owners_modes_and_links(tmp_path: Path) -> None:
    old = _old_home(tmp_path / "home")
    before = _tree(old)
    assert has_old_home(old)
    volumes = HomeVolumes(tmp_path / "homes", size_bytes=32 * MiB, analysts_traverse=True)
    moved: list[old_homes.Moved] = []
    home = volumes.mount(
        "dps-ana", uid=ANALYST, gid=ANALYST, then=lambda h: moved.append(move_old_home(old, h))
    )
    try:
        assert _tree(home) == before
        assert (_mode(home), home.stat().st_uid) == (0o700, ANALYST)
        assert not os.path.lexists(old) and not (home / STAGING).exists()
        [result] = moved
        assert result.backup.name.startswith("dps-ana.moved-to-image-") and result.backup.parent == old.parent
        assert _tree(result.backup) == before  # the backup is the untouched old home
        assert result.skipped == ["pipe"] and result.kept == []
        assert result.bytes == sum(len(c) for *_, c in before.values() if isinstance(c, bytes))
        assert not has_old_home(old)  # the next spawn has nothing to move
        assert move_old_home(old, home) is None  # nor one that waited for this one's lock
    finally:
        volumes.unmount("dps-ana")


@needs_root
def test_a_move_cut_short_loses_nothing_and_the_next_one_finishes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _old_home(tmp_path / "home")
    before = _tree(old)
    volumes = HomeVolumes(tmp_path / "homes", size_bytes=32 * MiB, analysts_traverse=True)
    real_file, calls = old_homes._Mover.file, []

    def dies_on_the_third(self: object, src: Path, dest: Path, info: os.stat_result) -> None:
        calls.append(src)
        if len(calls) == 3:
            raise OSError("the hub died here")
        real_file(self, src, dest, info)  # type: ignore[arg-type]

    monkeypatch.setattr(old_homes._Mover, "file", dies_on_the_third)
    with pytest.raises(OSError, match="the hub died"):
        volumes.mount("dps-ana", uid=ANALYST, gid=ANALYST, then=lambda h: move_old_home(old, h))
    home = volumes.mount_point_of("dps-ana")
    (home / STAGING).mkdir()  # what a SIGKILL half-way through a file would leave
    (home / STAGING / "7").write_bytes(b"half a fi")
    assert _tree(old) == before  # the old home is intact and in its place
    made_it = _tree(home)
    assert 0 < len([rel for rel in made_it if not rel.startswith(STAGING)]) < len(before)
    for rel, entry in made_it.items():  # whatever made it is whole
        assert rel.startswith(STAGING) or entry == before[rel]
    monkeypatch.setattr(old_homes._Mover, "file", real_file)
    volumes.unmount("dps-ana")
    try:
        volumes.mount("dps-ana", uid=ANALYST, gid=ANALYST, then=lambda h: move_old_home(old, h))
        assert _tree(home) == before
        assert not os.path.lexists(old)
    finally:
        volumes.unmount("dps-ana")


@needs_root
def test_an_old_home_too_big_for_the_image_is_refused_untouched(tmp_path: Path) -> None:
    old = _old_home(tmp_path / "home")
    (old / "big.bin").write_bytes(b"\1" * 40 * MiB)
    before = _tree(old)
    volumes = HomeVolumes(tmp_path / "homes", size_bytes=32 * MiB, analysts_traverse=True)
    try:
        with pytest.raises(OldHomeTooBig) as refused:
            volumes.mount("dps-ana", uid=ANALYST, gid=ANALYST, then=lambda h: move_old_home(old, h))
        assert refused.value.needed > 40 * MiB > refused.value.free
        assert _tree(old) == before
        home = volumes.mount_point_of("dps-ana")
        assert sorted(p.name for p in home.iterdir()) == ["lost+found"]
    finally:
        volumes.unmount("dps-ana")
    bigger = HomeVolumes(tmp_path / "homes", size_bytes=64 * MiB, analysts_traverse=True)
    try:  # what the message tells the admin to do works
        home = bigger.mount("dps-ana", uid=ANALYST, gid=ANALYST, then=lambda h: move_old_home(old, h))
        assert _tree(home) == before
    finally:
        bigger.unmount("dps-ana")


@needs_root
def test_what_the_image_already_holds_stays_and_the_old_version_is_kept_aside(tmp_path: Path) -> None:
    old = _old_home(tmp_path / "home")
    volumes = HomeVolumes(tmp_path / "homes", size_bytes=32 * MiB, analysts_traverse=True)
    home = volumes.mount("dps-ana", uid=ANALYST, gid=ANALYST)
    try:
        (home / "work").mkdir()
        (home / "work" / "analysis.ipynb").write_text("newer work")
        (home / ".bashrc").write_text("alias ll='ls -l'\n")  # the same: nothing to keep
        moved = move_old_home(old, home)
        assert (home / "work" / "analysis.ipynb").read_text() == "newer work"
        assert (moved.backup / "work" / "analysis.ipynb").read_text().startswith('{"cells"')
        assert moved.kept == ["work/analysis.ipynb"]
        assert (home / "work" / "deep" / "data.bin").stat().st_size == 3 * MiB
    finally:
        volumes.unmount("dps-ana")


@needs_root
def test_docker_takes_an_old_bubblewrap_home_as_its_containers_analyst(tmp_path: Path) -> None:
    """Docker's homes belong to the image's uid: the old owner's files change hands, no
    other owner's do (bubblewrap keeps them all: the tests above)."""
    old = _old_home(tmp_path / "home")
    os.lchown(old / ".bashrc", 0, 0)
    before = _tree(old)
    volumes = HomeVolumes(tmp_path / "homes", size_bytes=32 * MiB)
    home = volumes.mount("dps-ana", uid=61000, gid=61000,
                         then=lambda h: move_old_home(old, h, owner=(61000, 61000)))  # fmt: skip
    try:
        after = _tree(home)
        assert after.keys() == before.keys()
        for rel, (mode, _uid, _gid, mtime, content) in before.items():
            owner = (0, 0) if rel == ".bashrc" else (61000, 61000)
            assert after[rel] == (mode, *owner, mtime, content), rel
    finally:
        volumes.unmount("dps-ana")


@needs_root
def test_a_long_move_holds_up_its_own_home_only(tmp_path: Path) -> None:
    volumes = HomeVolumes(tmp_path / "homes", size_bytes=32 * MiB, analysts_traverse=True)
    moving, release = threading.Event(), threading.Event()

    def slow_move(home: Path) -> None:
        moving.set()
        assert release.wait(60)
        (home / "moved").write_text("in")

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(volumes.mount, "dps-ana", uid=ANALYST, gid=ANALYST, then=slow_move)
        try:
            assert moving.wait(60)
            other = volumes.mount("dps-bob", uid=ANALYST + 1, gid=ANALYST + 1)  # not held up
            volumes.unmount("dps-bob")
            assert not volumes.is_mounted("dps-bob") and other.name == "dps-bob"
            unmounting = pool.submit(volumes.unmount, "dps-ana")
            assert not unmounting.done() and volumes.is_mounted("dps-ana")  # waits for the move
        finally:
            release.set()
        home = first.result(60)
        unmounting.result(60)
        assert not volumes.is_mounted("dps-ana") and not (home / "moved").exists()
    try:  # the move wrote into the image, not under its mount point
        assert (volumes.mount("dps-ana", uid=ANALYST, gid=ANALYST) / "moved").read_text() == "in"
    finally:
        volumes.unmount("dps-ana")


@needs_root
@pytest.mark.parametrize("cls", [SandboxSpawner, DockerSandboxSpawner])
def test_the_old_home_moves_before_start_and_its_timeout(tmp_path: Path, cls: type) -> None:
    """JupyterHub times start() out (60 s) but not its pre-spawn step, where the move is."""
    old = _old_home(tmp_path / "home")
    before = _tree(old)
    spawner = cls(hub_state_dir=str(tmp_path / "hub"), homes_dir=str(tmp_path / "homes"), home_size="32M")
    spawner.user = SimpleNamespace(name="ana")
    spawner._old_home = lambda: OldHome(old, "dps-ana", ANALYST, ANALYST)
    volumes = spawner._home_volumes()
    try:
        asyncio.run(spawner.run_pre_spawn_hook())
        assert not volumes.is_mounted("dps-ana")  # start() mounts it; a refusal leaves nothing
        assert not os.path.lexists(old)
        assert _tree(volumes.mount("dps-ana", uid=ANALYST, gid=ANALYST)) == before
    finally:
        volumes.unmount("dps-ana")


def test_the_refusal_tells_the_admin_what_to_do_in_the_analysts_language() -> None:
    spawner = SandboxSpawner(home_size="5G")
    spawner.user = SimpleNamespace(name="ana")
    refusal = OldHomeTooBig(Path("/home/dps-ana"), needed=6 * 1024**3, free=5 * 1024**3 - MiB,
                            inodes=10, free_inodes=10**6)  # fmt: skip
    for language, words in (("en", "DPSANDBOX_SANDBOX_HOME_SIZE"), ("zh_CN", "管理员")):
        spawner._language = lambda language=language: language  # type: ignore[method-assign]
        error = spawner._too_big_refusal(refusal)
        message = error.jupyterhub_message  # what the analyst's page shows
        assert words in message and "6144 MiB" in message and "/home/dps-ana" in message
        assert "5G" in message
        assert "管理员" not in error.log_message and "6144 MiB" in error.log_message  # log: English

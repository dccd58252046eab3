"""Analysts' homes with a size the kernel enforces: one loop-mounted ext4 image each.

A sandbox's home must not share free space with the gateway's store, nor with
another analyst: a full home fails the writer (``ENOSPC``) and nobody else.  Each
analyst's home is a sparse file ``<root>/images/<name>.ext4`` holding an ext4
filesystem of ``size_bytes`` (default 5 GiB; only what is written takes disk
space), mounted ``nosuid,nodev`` on ``<root>/mnt/<name>`` while the analyst's
server runs.  A spawner bind-mounts that directory as the sandbox's home
(Docker's volume, bubblewrap's ``--bind``); :meth:`HomeVolumes.unmount` after the
server stops frees the loop device.

Needs root (``mount``), ``mkfs.ext4`` (e2fsprogs) and loop devices.  A bigger
``size_bytes`` than an existing image grows it when it is next mounted (``e2fsck``
and ``resize2fs`` offline); a home never shrinks.

Error: :class:`HomeVolumeError` (the message says which command failed).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["DEFAULT_HOME_SIZE", "HomeVolumeError", "HomeVolumes", "parse_size"]

DEFAULT_HOME_SIZE = 5 * 1024**3
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


class HomeVolumeError(RuntimeError):
    """A home could not be created, grown, mounted or unmounted."""


def parse_size(text: str | int) -> int:
    """``"5G"``, ``"512M"``, ``"1073741824"`` -> bytes (binary units)."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    if not match:
        raise ValueError(f"not a size: {text!r} (e.g. 5G, 512M)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _run(*command: str) -> str:
    result = subprocess.run(list(command), capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise HomeVolumeError(f"{' '.join(command)}: {(result.stderr or result.stdout).strip()}")
    return result.stdout


class HomeVolumes:
    """The size-limited homes under one directory (a hub's state, say)."""

    def __init__(self, root: Path, *, size_bytes: int = DEFAULT_HOME_SIZE) -> None:
        if size_bytes < 16 * 1024**2:
            raise ValueError("a home of less than 16 MiB cannot hold an ext4 filesystem")
        self.root = Path(root)
        self.size_bytes = size_bytes

    def image_of(self, name: str) -> Path:
        return self.root / "images" / f"{self._checked(name)}.ext4"

    def mount_point_of(self, name: str) -> Path:
        return self.root / "mnt" / self._checked(name)

    @staticmethod
    def _checked(name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(f"not a safe home name: {name!r}")
        return name

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def mount(self, name: str, *, uid: int, gid: int) -> Path:
        """Create the home on first use, grow it if configured bigger, mount it; its path."""
        if not shutil.which("mkfs.ext4"):
            raise HomeVolumeError("mkfs.ext4 is not installed (apt-get install e2fsprogs)")
        image, target = self.image_of(name), self.mount_point_of(name)
        with self._locked():
            image.parent.mkdir(mode=0o700, exist_ok=True)
            target.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not image.exists():
                self._create(image, uid=uid, gid=gid)
            if not os.path.ismount(target):
                if image.stat().st_size < self.size_bytes:
                    self._grow(image)
                _run("mount", "-o", "loop,nosuid,nodev,noatime", str(image), str(target))
            os.chown(target, uid, gid)
            os.chmod(target, 0o700)
        return target

    def _create(self, image: Path, *, uid: int, gid: int) -> None:
        partial = image.with_suffix(".new")
        with open(partial, "wb") as f:
            f.truncate(self.size_bytes)
        os.chmod(partial, 0o600)
        try:
            # -m 0: no blocks reserved for root (the analyst is never root there).
            _run(
                "mkfs.ext4",
                "-q",
                "-F",
                "-m",
                "0",
                "-L",
                "dpsandbox-home",
                "-E",
                f"root_owner={uid}:{gid}",
                str(partial),
            )
        except HomeVolumeError:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, image)

    def _grow(self, image: Path) -> None:
        """Grow an unmounted home to ``size_bytes`` (offline: check, then resize)."""
        os.truncate(image, self.size_bytes)
        check = subprocess.run(
            ["e2fsck", "-f", "-p", str(image)], capture_output=True, text=True, timeout=300
        )
        if check.returncode not in (0, 1):  # 1: errors found and corrected
            raise HomeVolumeError(f"e2fsck {image}: {(check.stderr or check.stdout).strip()}")
        _run("resize2fs", str(image))

    def unmount(self, name: str) -> None:
        """Unmount the home (and free its loop device); a no-op when it is not mounted."""
        target = self.mount_point_of(name)
        with self._locked():
            if os.path.ismount(target):
                _run("umount", str(target))

    async def unmount_when_released(self, name: str) -> HomeVolumeError | None:
        """Unmount once nothing holds the home any more (a container or mount namespace
        may still be going away): tries for about ten seconds; the last error if it stays."""
        last: HomeVolumeError | None = None
        for _ in range(40):
            try:
                await asyncio.to_thread(self.unmount, name)
                return None
            except HomeVolumeError as exc:
                last = exc
            await asyncio.sleep(0.25)
        return last

    def is_mounted(self, name: str) -> bool:
        return os.path.ismount(self.mount_point_of(name))

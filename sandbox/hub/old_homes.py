"""An analyst's plain home from before size-limited homes, moved into their home image once.

Before homes were images (``homes.py``), a bubblewrap analyst's home was the plain
directory of their account, ``/home/dps-<name>``.  On the first spawn with images
:func:`move_old_home` copies it into the freshly mounted image, then renames it aside as
``/home/dps-<name>.moved-to-image-<UTC time>``, kept for the admin to check and delete.

- A crash loses nothing: each file is written into a staging folder of the image,
  compared with its source, given its owner, mode and times, then renamed into place,
  so a file in the home is whole or absent.  The old home is renamed aside only once
  everything is in and synced to disk; until then the next spawn resumes (files
  already there and identical are skipped).
- Owners, modes, times and symbolic links are kept (links are not followed); sockets,
  FIFOs and devices stay in the backup, counted.
- A path the image already holds with other content keeps the image's version (the old
  one stays in the backup; the log names it).
- When the old home does not fit in the image's free space (blocks or inodes), nothing
  is copied and the spawn is refused: :class:`OldHomeTooBig`.  Nothing is truncated.

Used by both isolations (``homes.HomesMixin``): bubblewrap moves the analyst's account's
home keeping every owner; Docker, whose homes were images from the start, moves the same
plain home of an analyst who used bubblewrap before (Docker became the default where an
engine answers), giving the old owner's files to the container's ``analyst`` uid.

Errors: :class:`OldHomeTooBig` (a ``SandboxError``); ``OSError`` (``EIO`` when a copy
differs from its source).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from .isolation import SandboxError

__all__ = ["STAGING", "TOO_BIG", "Moved", "OldHomeTooBig", "has_old_home", "move_old_home"]

STAGING = ".dpsandbox-moving"  # in the image, while files are copied
_BLOCK = 4096


def N_(message: str) -> str:  # gettext's marker: extracted here, translated when shown
    return message


TOO_BIG = N_(
    "The home of %(user)s from before size-limited homes (%(old)s, %(needed)s) does not fit "
    "in its new home of %(size)s (%(free)s free). Nothing was copied or deleted. An "
    "administrator can set DPSANDBOX_SANDBOX_HOME_SIZE (c.SandboxSpawner.home_size) above "
    "%(needed)s and restart the hub, or make the old home smaller; the next start moves it."
)


class OldHomeTooBig(SandboxError):
    """The old home needs more than the image has free; nothing was copied."""

    def __init__(self, old: Path, *, needed: int, free: int, inodes: int, free_inodes: int) -> None:
        super().__init__(
            f"the old home {old} ({needed} bytes, {inodes} files) does not fit in its home "
            f"image ({free} bytes, {free_inodes} files free)"
        )
        self.old, self.needed, self.free = old, needed, free


@dataclass
class Moved:
    """What :func:`move_old_home` did."""

    backup: Path
    files: int = 0  # copied now (files, links, folders)
    bytes: int = 0
    kept: list[str] = field(default_factory=list)  # differing in the image: the image's stays
    skipped: list[str] = field(default_factory=list)  # sockets, FIFOs, devices


def has_old_home(path: Path) -> bool:
    """Whether ``path`` is a real folder (not a link, not a mount point) with anything in it."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(info.st_mode) or os.path.ismount(path):
        return False
    with os.scandir(path) as entries:
        return any(True for _ in entries)


def _rounded(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


def _needs(old: Path, home: Path) -> tuple[int, int]:
    """Bytes and inodes still to copy (what the image already has at the same path is not)."""
    needed, inodes = 0, 0
    for root, dirs, files in os.walk(old):  # does not follow links
        rel = Path(root).relative_to(old)
        for name in [*dirs, *files]:
            if os.path.lexists(home / rel / name):
                continue
            info = os.lstat(Path(root) / name)
            inodes += 1
            needed += _rounded(info.st_size) if stat.S_ISREG(info.st_mode) else _BLOCK
    return needed, inodes


def _check_fits(old: Path, home: Path) -> None:
    needed, inodes = _needs(old, home)
    space = os.statvfs(home)
    free, free_inodes = space.f_bavail * space.f_frsize, space.f_favail
    if needed > free or inodes > free_inodes:
        raise OldHomeTooBig(old, needed=needed, free=free, inodes=inodes, free_inodes=free_inodes)


def _digest(path: Path, *, follow: bool = True) -> tuple[int, bytes]:
    flags = os.O_RDONLY | (0 if follow else os.O_NOFOLLOW)
    with os.fdopen(os.open(path, flags), "rb") as f:
        h, size = hashlib.sha256(), 0
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, h.digest()


class _Mover:
    def __init__(self, old: Path, home: Path, moved: Moved, owner: tuple[int, int] | None) -> None:
        self.old, self.home, self.moved = old, home, moved
        self.staging = home / STAGING
        self.count = 0
        top = os.lstat(old)
        self.owners = {top.st_uid: owner[0]} if owner else {}
        self.groups = {top.st_gid: owner[1]} if owner else {}

    def _owner(self, info: os.stat_result) -> tuple[int, int]:
        """The old owner, but the old home's own, who becomes ``owner`` when one is given."""
        return self.owners.get(info.st_uid, info.st_uid), self.groups.get(info.st_gid, info.st_gid)

    def _keep_metadata(self, path: Path, info: os.stat_result) -> None:
        os.lchown(path, *self._owner(info))
        if not stat.S_ISLNK(info.st_mode):
            os.chmod(path, stat.S_IMODE(info.st_mode))  # after chown, which clears set-id bits
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)

    def _staged(self) -> Path:
        self.count += 1
        return self.staging / str(self.count)

    def folder(self, src: Path, dest: Path, info: os.stat_result) -> bool:
        """Whether to go into ``src`` (its copy exists as a folder)."""
        if not os.path.lexists(dest):
            os.mkdir(dest, 0o700)
            os.lchown(dest, *self._owner(info))
            os.chmod(dest, stat.S_IMODE(info.st_mode))  # times: once its content is in
            self.moved.files += 1
            return True
        if stat.S_ISDIR(os.lstat(dest).st_mode):
            return True
        self.moved.kept.append(str(src.relative_to(self.old)))
        return False

    def file(self, src: Path, dest: Path, info: os.stat_result) -> None:
        if os.path.lexists(dest):
            same = stat.S_ISREG(os.lstat(dest).st_mode) and _digest(dest, follow=False) == _digest(
                src, follow=False
            )
            if not same:
                self.moved.kept.append(str(src.relative_to(self.old)))
            return
        staged = self._staged()
        with os.fdopen(os.open(src, os.O_RDONLY | os.O_NOFOLLOW), "rb") as f, open(staged, "xb") as out:
            h = hashlib.sha256()
            while chunk := f.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
        if _digest(staged) != (info.st_size, h.digest()):
            raise OSError(errno.EIO, f"the copy of {src} differs from it (did it change meanwhile?)")
        self._keep_metadata(staged, info)
        os.rename(staged, dest)
        self.moved.files += 1
        self.moved.bytes += info.st_size

    def link(self, src: Path, dest: Path, info: os.stat_result) -> None:
        target = os.readlink(src)
        if os.path.lexists(dest):
            if not (os.path.islink(dest) and os.readlink(dest) == target):
                self.moved.kept.append(str(src.relative_to(self.old)))
            return
        staged = self._staged()
        os.symlink(target, staged)
        self._keep_metadata(staged, info)
        os.rename(staged, dest)
        self.moved.files += 1

    def tree(self, src_dir: Path, dest_dir: Path) -> None:
        with os.scandir(src_dir) as entries:
            names = sorted(entry.name for entry in entries)
        for name in names:
            src, dest = src_dir / name, dest_dir / name
            if dest == self.staging:
                self.moved.kept.append(name)
                continue
            info = os.lstat(src)
            if stat.S_ISDIR(info.st_mode):
                if self.folder(src, dest, info):
                    self.tree(src, dest)
                    os.utime(dest, ns=(info.st_atime_ns, info.st_mtime_ns))
            elif stat.S_ISREG(info.st_mode):
                self.file(src, dest, info)
            elif stat.S_ISLNK(info.st_mode):
                self.link(src, dest, info)
            else:
                self.moved.skipped.append(str(src.relative_to(self.old)))


def move_old_home(old: Path, home: Path, *, owner: tuple[int, int] | None = None) -> Moved | None:
    """Move the plain home ``old`` into the mounted image ``home``, then rename it aside;
    None when there is nothing (left) to move (another start moved it meanwhile).

    ``home`` must be mounted and unused (the server is not running).  Owners are kept,
    but with ``owner`` (uid, gid) the old home's own owner becomes that one.  Raises
    :class:`OldHomeTooBig` before copying anything when it does not fit."""
    if not has_old_home(old):
        return None
    staging = home / STAGING
    shutil.rmtree(staging, ignore_errors=True)  # a crashed try's partial files
    _check_fits(old, home)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    moved = Moved(backup=old.with_name(f"{old.name}.moved-to-image-{stamp}"))
    os.mkdir(staging, 0o700)
    try:
        _Mover(old, home, moved, owner).tree(old, home)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    os.sync()  # every copy on disk before the old home leaves its place
    suffix = 0
    while os.path.lexists(moved.backup):
        suffix += 1
        moved.backup = old.with_name(f"{old.name}.moved-to-image-{stamp}-{suffix}")
    os.rename(old, moved.backup)
    return moved

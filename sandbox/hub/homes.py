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

Who opens the path to a home decides the mode of ``<root>`` and ``<root>/mnt`` (the
folders holding every analyst's home; ``<root>/images`` is always 0700, only root mounts):

- bubblewrap runs as the analyst and resolves ``--bind <root>/mnt/<name>`` with the
  analyst's own credentials (inside its user namespace root-owned folders are not
  mapped, so no capability helps): every analyst needs search permission on both, and
  nothing more: 0711 (traversable, not listable: no one learns the other names).  Each
  home is then 0700 and owned by its analyst, whose uid is theirs alone;
- Docker's engine, root, resolves a volume's source: 0700.  There every home belongs to
  the same uid (the image's ``analyst``, 61000), which may also be a host account: a
  traversable folder would open every home to it.

:class:`HomesMixin` is what both spawners share: the settings (``home_size``,
``homes_dir``), mounting and unmounting, and the scenario notebooks of a new home.

Errors: :class:`HomeVolumeError` (the message says which command failed).
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import hashlib
import inspect
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from jupyterhub.spawner import SpawnException
from traitlets import Unicode, default
from traitlets.config import LoggingConfigurable

from .isolation import SandboxError
from .language import catalog
from .old_homes import TOO_BIG, OldHomeTooBig, has_old_home, move_old_home

__all__ = [
    "DEFAULT_HOME_SIZE",
    "HomeVolumeError",
    "HomeVolumes",
    "HomesMixin",
    "OldHome",
    "parse_size",
    "provide_templates",
]

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

    def __init__(
        self, root: Path, *, size_bytes: int = DEFAULT_HOME_SIZE, analysts_traverse: bool = False
    ) -> None:
        if size_bytes < 16 * 1024**2:
            raise ValueError("a home of less than 16 MiB cannot hold an ext4 filesystem")
        self.root = Path(root)
        self.size_bytes = size_bytes
        # the folders holding every home: see the module's docstring
        self.folder_mode = 0o711 if analysts_traverse else 0o700

    def image_of(self, name: str) -> Path:
        return self.root / "images" / f"{self._checked(name)}.ext4"

    def mount_point_of(self, name: str) -> Path:
        return self.root / "mnt" / self._checked(name)

    @staticmethod
    def _checked(name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(f"not a safe home name: {name!r}")
        return name

    def _folders(self) -> None:
        """``<root>``, ``<root>/mnt`` (``folder_mode``) and ``<root>/images`` (0700), made or fixed."""
        for folder, mode in ((self.root, self.folder_mode), (self.root / "mnt", self.folder_mode),
                             (self.root / "images", 0o700)):  # fmt: skip
            folder.mkdir(mode=mode, parents=True, exist_ok=True)
            if folder.stat().st_mode & 0o7777 != mode:
                os.chmod(folder, mode)

    @contextmanager
    def _locked(self, name: str | None = None) -> Iterator[None]:
        """Every home's lock (mount and unmount), or with ``name`` that home's alone: held
        around the other while a moved-in old home is copied, so others go on meanwhile
        and an unmount of that home waits. Always taken in that order: the home's first."""
        self._folders()
        path = self.root / ".lock" if name is None else self.root / "images" / f"{name}.lock"
        with open(path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def mount(
        self, name: str, *, uid: int, gid: int, then: Callable[[Path], None] | None = None
    ) -> Path:
        """Create the home on first use, grow it if configured bigger, mount it; its path.

        ``then(path)`` runs once it is mounted, holding this home's lock (its unmount waits)."""
        if not shutil.which("mkfs.ext4"):
            raise HomeVolumeError("mkfs.ext4 is not installed (apt-get install e2fsprogs)")
        image, target = self.image_of(name), self.mount_point_of(name)
        with self._locked(name):
            with self._locked():
                target.mkdir(mode=0o700, exist_ok=True)
                if not image.exists():
                    self._create(image, uid=uid, gid=gid)
                if not os.path.ismount(target):
                    if image.stat().st_size < self.size_bytes:
                        self._grow(image)
                    _run("mount", "-o", "loop,nosuid,nodev,noatime", str(image), str(target))
                os.chown(target, uid, gid)
                os.chmod(target, 0o700)
            if then is not None:
                then(target)
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
        with self._locked(name), self._locked():
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


def _mib(size: int) -> str:
    return f"{-(-size // 1024**2)} MiB"


def provide_templates(source: Path, home: Path, *, uid: int, gid: int) -> int:
    """Copy the scenario notebooks of ``source`` to ``home/templates`` unless it exists; how many.

    Owned by ``uid:gid`` when the hub runs as root (else they are the hub's user's already)."""
    target = home / "templates"
    if target.exists() or target.is_symlink():
        return 0
    copied = 0
    for notebook in sorted(source.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in notebook.parts:
            continue
        dest = target / notebook.relative_to(source)
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(notebook, dest)
        copied += 1
    if copied and os.geteuid() == 0:
        for path in (target, *target.rglob("*")):
            os.lchown(path, uid, gid)
    return copied


@dataclass(frozen=True)
class OldHome:
    """Where an analyst's plain home from before images may be, and the image it goes into."""

    path: Path
    name: str  # of the home image
    uid: int  # the image's owner
    gid: int
    owner: tuple[int, int] | None = None  # new owner of the old owner's files (Docker)


class HomesMixin(LoggingConfigurable):
    """The analysts' size-limited homes, for both spawners: settings, mount, unmount, templates."""

    # Provided by the spawner.
    user: Any
    hub_state_dir: str
    _templates_source: Callable[[], Path | None]  # GatewayLinkMixin
    _language: Callable[[], str]  # GatewayLinkMixin

    # True where each analyst's own uid opens the path to its home (bubblewrap), False where
    # root alone does (Docker's engine): the mode of the folders holding every home.
    analysts_traverse_homes: ClassVar[bool] = False

    home_size = Unicode(
        "5G",
        help="""Size of each analyst's home, a loop-mounted ext4 image (sandbox/hub/homes.py)
        bound in as the home: writes past it fail with ENOSPC and take nobody else's space.
        K, M, G, T suffixes. A bigger size grows existing homes; they never shrink.
        Bubblewrap as root only: empty for plain directories in home_root, without a quota.""",
    ).tag(config=True)

    homes_dir = Unicode(
        help="""Where the home images live and are mounted. Default: for bubblewrap,
        /var/lib/dpsandbox/homes-<hash of the hub state dir> (0711: each analyst's
        bubblewrap must reach its mount point, outside the hub's private state); for
        Docker, <hub state dir>/docker-homes (0700: only the engine, root, opens it).""",
    ).tag(config=True)

    @default("homes_dir")
    def _homes_dir_default(self) -> str:
        state = Path(self.hub_state_dir).absolute()
        if self.analysts_traverse_homes:
            digest = hashlib.sha256(str(state).encode()).hexdigest()[:10]
            return f"/var/lib/dpsandbox/homes-{digest}"
        return str(state / "docker-homes")

    def _home_volumes(self) -> HomeVolumes | None:
        """The size-limited homes; None where home_size is empty."""
        if not self.home_size.strip():
            return None
        try:
            return HomeVolumes(
                Path(self.homes_dir),
                size_bytes=parse_size(self.home_size),
                analysts_traverse=self.analysts_traverse_homes,
            )
        except ValueError as exc:
            raise SandboxError(f"home_size: {exc}") from exc

    def _old_home(self) -> OldHome | None:
        """This analyst's plain home from before images, if they may have one (spawners say)."""
        return None

    async def run_pre_spawn_hook(self) -> None:
        """Before start() and its timeout: an old plain home is moved into the new image here,
        where a big one may take minutes (about 40 MB/s) without the start giving up."""
        hook = super().run_pre_spawn_hook()  # type: ignore[misc]  # jupyterhub's Spawner
        if inspect.isawaitable(hook):
            await hook
        old = await asyncio.to_thread(self._old_home)
        if old is None or not await asyncio.to_thread(has_old_home, old.path):
            return
        try:
            await self._mount_home(
                old.name, uid=old.uid, gid=old.gid, old_home=old.path, old_owner=old.owner
            )
        finally:  # start() mounts it again; after a refusal the hub calls no stop()
            await self._unmount_home(old.name)

    async def _mount_home(
        self, name: str, *, uid: int, gid: int, old_home: Path | None = None,
        old_owner: tuple[int, int] | None = None,
    ) -> Path:  # fmt: skip
        """Mount the home ``name`` (made on first use); its path on the host.

        A plain ``old_home`` from before images is moved in first, once (``old_homes.py``;
        with ``old_owner``, its owner's files change hands); one too big refuses the spawn
        with a message in the analyst's language for the admin."""
        volumes = self._home_volumes()
        if volumes is None:
            raise SandboxError("home_size is empty: there is no home image to mount")
        then = None
        if old_home is not None and await asyncio.to_thread(has_old_home, old_home):
            then = functools.partial(self._move_old_home, old_home, owner=old_owner)
        try:
            return await asyncio.to_thread(volumes.mount, name, uid=uid, gid=gid, then=then)
        except OldHomeTooBig as exc:
            raise self._too_big_refusal(exc) from exc
        except (HomeVolumeError, OSError) as exc:
            raise SandboxError(f"cannot mount the home of {self.user.name} ({exc})") from exc

    def _move_old_home(self, old: Path, home: Path, *, owner: tuple[int, int] | None) -> None:
        """In the mount's lock: the plain home from before images goes into the image."""
        if not has_old_home(old):
            return  # moved meanwhile by an earlier start (one that outlasted its timeout)
        self.log.info("Moving the old home of %s (%s) into its size-limited home", self.user.name, old)
        moved = move_old_home(old, home, owner=owner)
        if moved is None:
            return
        self.log.info(
            "Moved the old home of %s into its size-limited home: %d entries, %d bytes copied; "
            "the old folder is kept as %s (delete it once checked)%s%s",
            self.user.name, moved.files, moved.bytes, moved.backup,
            f"; kept the image's version of {len(moved.kept)} that differ: {moved.kept[:10]}"
            if moved.kept else "",
            f"; left {len(moved.skipped)} sockets/FIFOs/devices in the backup" if moved.skipped else "",
        )  # fmt: skip

    def _too_big_refusal(self, exc: OldHomeTooBig) -> SpawnException:
        """The refusal: the analyst's page says it in their language, for the admin; the
        hub's log in English, without a traceback (a SpawnException)."""
        values = {"user": self.user.name, "old": str(exc.old), "needed": _mib(exc.needed),
                  "free": _mib(exc.free), "size": self.home_size}  # fmt: skip
        shown = catalog(self._language()).gettext(TOO_BIG) % values
        refusal = SpawnException(shown, reason="old_home_too_big", log_message=f"{exc}. {TOO_BIG % values}")
        refusal.jupyterhub_message = shown  # what JupyterHub's progress shows (format_exception)
        return refusal

    async def _unmount_home(self, name: str) -> None:
        """Once the sandbox is gone: unmount its home (a container or mount namespace holding
        it may linger a moment)."""
        volumes = self._home_volumes()
        if volumes is None:
            return
        failure = await volumes.unmount_when_released(name)
        if failure is not None:
            self.log.warning("The home of %s stays mounted: %s", self.user.name, failure)

    def _provide_templates(self, home: Path, *, uid: int, gid: int) -> None:
        """Give a new home the scenario notebooks of its language (first spawn only)."""
        source = self._templates_source()
        if source is None:
            return
        copied = provide_templates(source, home, uid=uid, gid=gid)
        if copied:
            self.log.info("Copied %d scenario notebooks to the home of %s", copied, self.user.name)

"""The system accounts of analysts (embedded mode, hub running as root).

One account per analyst, ``dps-<name>`` (see ``isolation.system_username``),
made on first spawn with a private home.  The account's comment names the hub
user it was made for, so an existing account of the same name that someone
else made is never taken over.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from traitlets import Unicode, default
from traitlets.config import LoggingConfigurable

from .homes import HomeVolumeError, HomeVolumes, parse_size
from .isolation import SandboxError, system_username

__all__ = ["AnalystAccountMixin", "account_exists", "ensure_analyst_account"]


def account_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


async def _useradd(name: str, *, home: Path, comment: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/bash",
        "--user-group", "--comment", comment, name,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SandboxError(f"useradd {name} failed: {out.decode(errors='replace')}")


async def ensure_analyst_account(name: str, *, hub_user: str, home_root: Path) -> pwd.struct_passwd:
    """The account ``name`` of ``hub_user``, created if missing, with a 0700 home."""
    comment = f"dp-sandbox analyst {hub_user}"
    if not account_exists(name):
        await _useradd(name, home=home_root / name, comment=comment)
    entry = pwd.getpwnam(name)
    if entry.pw_gecos.split(",")[0] != comment:
        raise SandboxError(f"system user {name} exists but was not created for {hub_user}")
    if entry.pw_uid == 0:
        raise SandboxError(f"system user {name} has uid 0; refusing to run a server as root")
    home = Path(entry.pw_dir)
    home.mkdir(mode=0o700, exist_ok=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    os.chmod(home, 0o700)
    return entry


class AnalystAccountMixin(LoggingConfigurable):
    """Who a sandbox runs as and where its home is, for ``SandboxSpawner``."""

    # Provided by the spawner.
    user: Any
    handler: Any
    hub_state_dir: str
    templates_dir: str
    _templates_source: Callable[[], Path | None]  # GatewayLinkMixin

    home_root = Unicode("/home", help="Where analysts' homes are created (as root).").tag(config=True)

    system_user_prefix = Unicode("dps-", help="Prefix of the system accounts created for analysts.").tag(
        config=True
    )

    home_size = Unicode(
        "5G",
        help="""As root: the size of each analyst's home, a loop-mounted ext4 image
        (sandbox/hub/homes.py) bound in as the home; writes past it fail with ENOSPC and
        take nobody else's space. K, M, G, T suffixes. Empty: a plain directory in
        home_root, without a quota.""",
    ).tag(config=True)

    homes_dir = Unicode(
        help="""As root: where the home images live and are mounted. Default:
        /var/lib/dpsandbox/homes-<hash of the hub state dir> (traversable, not listable:
        bubblewrap, running as the analyst, must reach the mount point).""",
    ).tag(config=True)

    @default("homes_dir")
    def _homes_dir_default(self) -> str:
        digest = hashlib.sha256(str(Path(self.hub_state_dir).absolute()).encode()).hexdigest()[:10]
        return f"/var/lib/dpsandbox/homes-{digest}"

    @property
    def as_root(self) -> bool:
        return os.geteuid() == 0

    @property
    def system_user(self) -> str:
        """The account the server runs as."""
        if not self.as_root:
            return pwd.getpwuid(os.geteuid()).pw_name
        return system_username(self.user.name, self.system_user_prefix)

    @property
    def sandbox_home(self) -> Path:
        """The analyst's home as seen inside the sandbox."""
        return Path(self.home_root) / system_username(self.user.name, self.system_user_prefix)

    def _host_home(self) -> Path:
        volumes = self._home_volumes()
        if volumes is not None:
            return volumes.mount_point_of(self.system_user)
        if self.as_root:
            return Path(pwd.getpwnam(self.system_user).pw_dir)
        return Path(self.hub_state_dir) / "homes" / self.sandbox_home.name

    def _home_volumes(self) -> HomeVolumes | None:
        """The size-limited homes (as root, unless home_size is empty)."""
        if not self.as_root or not self.home_size.strip():
            return None
        try:
            return HomeVolumes(Path(self.homes_dir), size_bytes=parse_size(self.home_size))
        except ValueError as exc:
            raise SandboxError(f"c.SandboxSpawner.home_size: {exc}") from exc

    async def _mount_home(self, uid: int, gid: int) -> None:
        """Mount the analyst's size-limited home (made on first use) where bubblewrap binds it."""
        volumes = self._home_volumes()
        if volumes is None:
            return
        root = Path(self.homes_dir)
        root.mkdir(mode=0o711, parents=True, exist_ok=True)
        os.chmod(root, 0o711)  # noqa: S103  # traversable by the analyst's bubblewrap; not listable
        try:
            await asyncio.to_thread(volumes.mount, self.system_user, uid=uid, gid=gid)
        except (HomeVolumeError, OSError) as exc:
            raise SandboxError(
                f"cannot mount the home of {self.user.name} ({exc}); "
                "c.SandboxSpawner.home_size = '' gives plain homes without a quota"
            ) from exc

    async def _unmount_home(self) -> None:
        """Once the sandbox is gone: unmount its home (its mount namespace may linger a moment)."""
        volumes = self._home_volumes()
        if volumes is None:
            return
        failure = await volumes.unmount_when_released(self.system_user)
        if failure is not None:
            self.log.warning("The home of %s stays mounted: %s", self.user.name, failure)

    async def _ensure_system_user(self) -> None:
        """Create the analyst's account on first spawn (root only)."""
        if not account_exists(self.system_user):
            self.log.info("Creating system user %s for %s", self.system_user, self.user.name)
        await ensure_analyst_account(
            self.system_user, hub_user=self.user.name, home_root=Path(self.home_root)
        )

    def _ensure_private_home(self) -> None:
        """Without root: one private home per analyst under the hub's state directory."""
        home = self._host_home()
        home.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _provide_templates(self, uid: int) -> None:
        """Give a new analyst the scenario notebooks to start from (first spawn only)."""
        source = self._templates_source()
        target = self._host_home() / "templates"
        if source is None or target.exists():
            return
        target.mkdir(mode=0o700)
        for notebook in sorted(source.glob("*.ipynb")):
            shutil.copyfile(notebook, target / notebook.name)
        if self.as_root:
            gid = pwd.getpwuid(uid).pw_gid
            for path in (target, *target.iterdir()):
                os.chown(path, uid, gid)
        self.log.info("Copied %d scenario notebooks to %s", len(list(target.iterdir())), target)

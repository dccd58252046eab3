"""The system accounts of analysts (embedded mode, hub running as root), and their homes.

One account per analyst, ``dps-<name>`` (see ``isolation.system_username``),
made on first spawn.  The account's comment names the hub user it was made for,
so an existing account of the same name that someone else made is never taken over.

The home is a size-limited image (``homes.py``) mounted under ``homes_dir``; its
account's own home directory (``/home/dps-<name>``) is made only for plain homes
(``home_size = ""``).  A plain home left from before images is moved into the image on
the first spawn (``old_homes.py``).
"""

from __future__ import annotations

import asyncio
import os
import pwd
from pathlib import Path
from typing import Any, ClassVar

from traitlets import Unicode

from .homes import HomesMixin, HomeVolumes, OldHome
from .isolation import SandboxError, system_username

__all__ = ["AnalystAccountMixin", "account_exists", "analyst_account", "ensure_analyst_account"]


def account_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _comment(hub_user: str) -> str:
    """The account's comment (GECOS): which hub user the hub made it for."""
    return f"dp-sandbox analyst {hub_user}"


def analyst_account(name: str, *, hub_user: str) -> pwd.struct_passwd | None:
    """The account ``name`` if the hub made it for ``hub_user``, else None."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return entry if entry.pw_gecos.split(",")[0] == _comment(hub_user) else None


async def _useradd(name: str, *, home: Path, comment: str, create_home: bool) -> None:
    proc = await asyncio.create_subprocess_exec(
        "useradd", "--create-home" if create_home else "--no-create-home",
        "--home-dir", str(home), "--shell", "/bin/bash",
        "--user-group", "--comment", comment, name,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SandboxError(f"useradd {name} failed: {out.decode(errors='replace')}")


async def ensure_analyst_account(
    name: str, *, hub_user: str, home_root: Path, plain_home: bool = True
) -> pwd.struct_passwd:
    """The account ``name`` of ``hub_user``, created if missing; with a 0700 home directory
    when ``plain_home`` (else the home is an image, and any old directory is left as it is)."""
    comment = _comment(hub_user)
    if not account_exists(name):
        await _useradd(name, home=home_root / name, comment=comment, create_home=plain_home)
    entry = pwd.getpwnam(name)
    if entry.pw_gecos.split(",")[0] != comment:
        raise SandboxError(f"system user {name} exists but was not created for {hub_user}")
    if entry.pw_uid == 0:
        raise SandboxError(f"system user {name} has uid 0; refusing to run a server as root")
    if not plain_home:
        return entry
    home = Path(entry.pw_dir)
    home.mkdir(mode=0o700, exist_ok=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    os.chmod(home, 0o700)
    return entry


class AnalystAccountMixin(HomesMixin):
    """Who a sandbox runs as and where its home is, for ``SandboxSpawner``."""

    # Provided by the spawner.
    user: Any
    handler: Any
    templates_dir: str
    # bubblewrap binds the home running as the analyst (homes.py)
    analysts_traverse_homes: ClassVar[bool] = True

    home_root = Unicode("/home", help="Where analysts' homes are created (as root).").tag(config=True)

    system_user_prefix = Unicode("dps-", help="Prefix of the system accounts created for analysts.").tag(
        config=True
    )

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
        """The size-limited homes: as root, unless home_size is empty."""
        return super()._home_volumes() if self.as_root else None

    async def _ensure_system_user(self) -> None:
        """Create the analyst's account on first spawn (root only)."""
        if not account_exists(self.system_user):
            self.log.info("Creating system user %s for %s", self.system_user, self.user.name)
        await ensure_analyst_account(
            self.system_user, hub_user=self.user.name, home_root=Path(self.home_root),
            plain_home=self._home_volumes() is None,
        )  # fmt: skip

    def _old_home(self) -> OldHome | None:
        """The home directory of the analyst's account, as root with home images."""
        if self._home_volumes() is None:
            return None
        account = analyst_account(self.system_user, hub_user=self.user.name)
        if account is None:
            return None  # a new analyst: no old home
        return OldHome(Path(account.pw_dir), self.system_user, account.pw_uid, account.pw_gid)

    async def _prepare_home(self, account: pwd.struct_passwd) -> None:
        """Mount the size-limited home (moving the account's old plain home into it first),
        give a new home the scenario notebooks."""
        uid, gid = account.pw_uid, account.pw_gid
        home = self._host_home()
        if self._home_volumes() is not None:
            try:
                home = await self._mount_home(
                    self.system_user, uid=uid, gid=gid, old_home=Path(account.pw_dir)
                )
            except SandboxError as exc:  # not the refusal of an old home too big (SpawnException)
                raise SandboxError(
                    f"{exc}; c.SandboxSpawner.home_size = '' gives plain homes without a quota"
                ) from exc
        await asyncio.to_thread(self._provide_templates, home, uid=uid, gid=gid)

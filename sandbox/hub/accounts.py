"""The system accounts of analysts (embedded mode, hub running as root).

One account per analyst, ``dps-<name>`` (see ``isolation.system_username``),
made on first spawn with a private home.  The account's comment names the hub
user it was made for, so an existing account of the same name that someone
else made is never taken over.
"""

from __future__ import annotations

import asyncio
import os
import pwd
from pathlib import Path

from .isolation import SandboxError

__all__ = ["account_exists", "ensure_analyst_account"]


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

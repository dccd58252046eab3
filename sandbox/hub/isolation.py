"""Building blocks of a sandbox that need no JupyterHub: names, bubblewrap, processes.

Kept apart from the spawner so they can be read (and tested) on their own:

- ``system_username`` maps a hub username to a safe system account name;
- ``bwrap_command`` builds the bubblewrap command line of one sandbox;
- ``children_of`` / ``descendants_of`` walk the process tree through ``/proc``,
  which is how the spawner finds the server inside bubblewrap to signal it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "SandboxError",
    "SandboxLayout",
    "bwrap_command",
    "children_of",
    "descendants_of",
    "is_alive",
    "reachable_by",
    "signal_process",
    "system_username",
]


class SandboxError(RuntimeError):
    """A sandbox cannot be started safely; the message is shown to the analyst."""


_SAFE_NAME = re.compile(r"[a-z][a-z0-9_-]*")
MAX_SYSTEM_NAME = 32  # useradd's limit on Linux


def system_username(hub_name: str, prefix: str = "dps-") -> str:
    """The system account of a hub user: ``prefix + name``, made safe and unique.

    A name that is already a safe lowercase login name maps to ``prefix + name``;
    any other (upper case, dots, non-ASCII, too long) is slugged and given a
    short hash of the original, so two hub users never share an account.
    """
    if not _SAFE_NAME.fullmatch(prefix):
        raise ValueError(f"system user prefix {prefix!r} must match {_SAFE_NAME.pattern}")
    candidate = prefix + hub_name
    if _SAFE_NAME.fullmatch(candidate) and len(candidate) <= MAX_SYSTEM_NAME:
        # Leave room for nothing that looks like our own hashed form ("-" + 8 hex).
        if not re.search(r"-[0-9a-f]{8}$", hub_name):
            return candidate
    slug = re.sub(r"[^a-z0-9_]+", "-", hub_name.lower()).strip("-_")
    digest = hashlib.sha256(hub_name.encode()).hexdigest()[:8]
    room = MAX_SYSTEM_NAME - len(prefix) - len(digest) - 1
    slug = slug[:room].rstrip("-_") or "user"
    return f"{prefix}{slug}-{digest}"


@dataclass(frozen=True)
class SandboxLayout:
    """What one sandbox sees of the host's file system."""

    home: Path  # host directory that becomes the analyst's writable home
    sandbox_home: Path  # where it appears inside the sandbox
    hidden: Sequence[Path] = ()  # replaced by empty read-only tmpfs (or /dev/null for files)
    empty: Sequence[Path] = (Path("/home"), Path("/root"))  # other homes: empty tmpfs
    private_tmp: Sequence[Path] = (Path("/tmp"), Path("/var/tmp"))  # noqa: S108
    readonly: Sequence[Path] = ()  # bound back read-only, e.g. a sandbox env under a hidden path
    hostname: str = "sandbox"
    extra_args: Sequence[str] = field(default_factory=tuple)


def reachable_by(path: Path, uid: int, gids: Collection[int]) -> bool:
    """Whether a user can look ``path`` up: search permission on every parent.

    A hidden path that its user cannot even reach needs no mount (and bubblewrap,
    running as that user, could not make one).
    """
    for parent in reversed(Path(os.path.realpath(path)).parents):
        try:
            st = parent.stat()
        except OSError:
            return False
        if st.st_uid == uid:
            bit = 0o100
        elif st.st_gid in gids:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            return False
    return True


def _covered(path: Path, by: Iterable[Path]) -> bool:
    return any(path == p or p in path.parents for p in by)


def _hide_args(layout: SandboxLayout) -> list[str]:
    """Mounts that replace hidden directories (files: /dev/null) on top of the ro root."""
    args: list[str] = []
    done: list[Path] = [*layout.private_tmp, *layout.empty]
    for raw in layout.hidden:
        path = Path(os.path.realpath(raw))
        if _covered(path, done) or not path.exists():
            # Under a private tmpfs already, or nothing to hide.
            continue
        if path.is_dir():
            args += ["--tmpfs", str(path), "--remount-ro", str(path)]
        else:
            args += ["--ro-bind", "/dev/null", str(path)]
        done.append(path)
    return args


def bwrap_command(bwrap: str, layout: SandboxLayout, command: Sequence[str]) -> list[str]:
    """The full ``bwrap ... -- command`` line of one sandbox.

    ``/`` is a read-only bind; ``/dev``, ``/proc`` and the temporary directories
    are private; other users' homes and every hidden path are empty tmpfs; only
    the analyst's own home is writable.  New PID, IPC and UTS namespaces; the
    sandbox dies with the hub.
    """
    args = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for tmp in layout.private_tmp:
        if Path(tmp).is_dir():
            args += ["--tmpfs", str(tmp)]
    for empty in layout.empty:
        if Path(empty).is_dir():
            args += ["--tmpfs", str(empty)]
    args += _hide_args(layout)
    for path in layout.readonly:
        args += ["--ro-bind", str(path), str(path)]
    args += [
        "--bind", str(layout.home), str(layout.sandbox_home),
        "--chdir", str(layout.sandbox_home),
        "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--hostname", layout.hostname,
        "--die-with-parent",
        "--new-session",
        *layout.extra_args,
        "--",
        *command,
    ]  # fmt: skip
    return args


def _ppid(stat_line: str) -> int:
    # /proc/PID/stat: "pid (comm) state ppid ..."; comm may contain spaces and ')'.
    return int(stat_line[stat_line.rindex(")") + 2 :].split()[1])


def children_of(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """Direct children of ``pid``, found by scanning ``/proc/*/stat``."""
    children = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if _ppid((entry / "stat").read_text()) == pid:
                children.append(int(entry.name))
        except (OSError, ValueError):
            continue  # exited meanwhile, or not ours to read
    return sorted(children)


def descendants_of(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """Every process below ``pid``, parents before children."""
    found: list[int] = []
    frontier = [pid]
    while frontier:
        next_frontier = []
        for parent in frontier:
            kids = children_of(parent, proc)
            found.extend(kids)
            next_frontier.extend(kids)
        frontier = next_frontier
    return found


def signal_process(pid: int | None, sig: int) -> None:
    """Send ``sig`` to ``pid`` if there is one and it still exists."""
    if pid:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def is_alive(pid: int, proc: Path = Path("/proc")) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"

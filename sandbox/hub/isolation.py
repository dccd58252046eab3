"""Building blocks of a sandbox that need no JupyterHub: names, bubblewrap, processes.

Kept apart from the spawner so they can be read (and tested) on their own:

- ``system_username`` maps a hub username to a safe system account name;
- ``SandboxLayout`` / ``bwrap_command`` build the bubblewrap command line of one
  sandbox (an allow-listed file system, own namespaces, seccomp), and
  ``account_files`` the passwd, group and hosts files it sees;
- ``children_of`` / ``descendants_of`` walk the process tree through ``/proc``,
  which is how the spawner finds the server inside bubblewrap to signal it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SandboxError",
    "SandboxLayout",
    "account_files",
    "bwrap_command",
    "children_of",
    "descendants_of",
    "is_alive",
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


# What of /etc a sandbox sees (read-only, where the host has it): the loader, TLS roots,
# time zone, name-service and locale basics, fonts, MIME types, the interpreter's own.
# passwd, group and hosts are generated (``account_files``), so no other account shows.
ETC_ALLOWED = (
    "alternatives", "bash.bashrc", "ca-certificates", "ca-certificates.conf",
    "debian_version", "fonts", "gai.conf", "host.conf", "inputrc", "ld.so.cache", "ld.so.conf",
    "ld.so.conf.d", "locale.alias", "localtime", "mime.types", "nsswitch.conf", "os-release",
    "profile", "protocols", "python3", "python3.11", "services", "ssl", "timezone",
)  # fmt: skip
# System directories (bound read-only, or recreated as the symlinks they are on merged-/usr).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Enough of /sys for libraries that count CPUs; nothing else of it.
SYS_ALLOWED = ("/sys/devices/system/cpu",)


@dataclass(frozen=True)
class SandboxLayout:
    """What one sandbox sees of the host's file system: an allow-list.

    Nothing of the host appears unless named here: the system directories, the
    allowed part of /etc, ``readonly`` (the sandbox environment), the analyst's
    own home (writable), the hub's runtime directory (``run_dir``, its relay
    sockets) and private, size-limited ``/tmp`` and ``/var/tmp``.
    """

    home: Path  # host directory that becomes the analyst's writable home
    sandbox_home: Path  # where it appears inside the sandbox
    readonly: Sequence[Path] = ()  # bound read-only at the same path, e.g. the sandbox env
    run_dir: Path | None = None  # the hub's relay sockets, bound read-only at ``run_target``
    run_target: Path = Path("/run/dpsandbox")
    tmp_size: int | None = None  # bytes of each private tmpfs; None: the kernel's default
    hostname: str = "sandbox"
    system_dirs: Sequence[str] = SYSTEM_DIRS
    etc: Sequence[str] = ETC_ALLOWED
    sys_dirs: Sequence[str] = SYS_ALLOWED


def account_files(
    *, user: str, uid: int, group: str, gid: int, home: Path, hosts: Sequence[str] = ()
) -> dict[str, bytes]:
    """/etc/passwd, /etc/group and /etc/hosts of a sandbox: root, the analyst, nobody."""
    passwd = (
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"{user}:x:{uid}:{gid}::{home}:/bin/bash\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    groups = f"root:x:0:\n{group}:x:{gid}:\nnogroup:x:65534:\n"
    names = " ".join(dict.fromkeys(["localhost", *hosts]))
    return {
        "/etc/passwd": passwd.encode(),
        "/etc/group": groups.encode(),
        "/etc/hosts": f"127.0.0.1 {names}\n".encode(),
    }


def _system_args(layout: SandboxLayout) -> list[str]:
    args: list[str] = []
    for name in layout.system_dirs:
        path = Path(name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            args += ["--ro-bind", name, name]
    for name in layout.etc:
        if (Path("/etc") / name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    for name in layout.sys_dirs:
        if Path(name).is_dir():
            args += ["--ro-bind", name, name]
    return args


def bwrap_command(
    bwrap: str,
    layout: SandboxLayout,
    command: Sequence[str],
    *,
    data_fds: Mapping[str, int] | None = None,
    seccomp_fd: int | None = None,
) -> list[str]:
    """The full ``bwrap ... -- command`` line of one sandbox.

    ``data_fds`` maps a path inside the sandbox to a file descriptor whose content
    becomes that (read-only) file, e.g. the generated /etc/passwd; ``seccomp_fd``
    holds the compiled seccomp filter.  New PID, IPC, UTS, network and (where the
    kernel has them) cgroup namespaces; the root is read-only; the sandbox dies
    with the hub.  The caller passes the descriptors on (``pass_fds``).
    """
    args = [bwrap, *_system_args(layout), "--dev", "/dev", "--proc", "/proc"]
    for tmp in ("/tmp", "/var/tmp"):  # noqa: S108
        if layout.tmp_size:
            args += ["--size", str(layout.tmp_size)]
        args += ["--tmpfs", tmp]
    for path in layout.readonly:
        args += ["--ro-bind", str(path), str(path)]
    if layout.run_dir is not None:
        args += ["--ro-bind", str(layout.run_dir), str(layout.run_target)]
    for target, fd in (data_fds or {}).items():
        args += ["--ro-bind-data", str(fd), target]
    args += [
        "--bind", str(layout.home), str(layout.sandbox_home),
        "--remount-ro", "/",
        "--chdir", str(layout.sandbox_home),
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
        "--unshare-cgroup-try",
        "--hostname", layout.hostname,
        "--die-with-parent",
        "--new-session",
    ]  # fmt: skip
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    return [*args, "--", *command]


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

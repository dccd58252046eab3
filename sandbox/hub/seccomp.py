"""The seccomp filter of a bubblewrap sandbox, generated with libseccomp (``pyseccomp``).

bubblewrap loads it (``--seccomp FD``) just before it runs the server, so it
holds for every process of the sandbox and cannot be lifted.  It is a deny-list
in the manner of Flatpak's bubblewrap filter: a Python kernel needs most of the
system-call table, and what is refused here is what a sandbox has no business
doing and what a container escape usually starts with:

- mounting and changing roots (``mount``, the new mount API, ``pivot_root``,
  ``chroot``), ``setns`` and any new namespace (``unshare`` or ``clone`` with a
  ``CLONE_NEW*`` flag; ``clone3`` answers ``ENOSYS`` so that the C library falls
  back to ``clone``, whose flags can be checked);
- the kernel keyring (``keyctl``, ``add_key``, ``request_key``), ``bpf``,
  ``userfaultfd``, ``perf_event_open``;
- looking into other processes (``ptrace``, ``process_vm_readv/writev``,
  ``kcmp``) and the host's administration (modules, ``kexec``, ``reboot``,
  swap, clocks, ``acct``, ``quotactl``, file handles, ``syslog``, I/O ports).

Refused calls fail with ``EPERM`` and the process goes on.  System calls of other
architectures (the 32-bit ABI) kill the process: the filter names the native one only.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable

__all__ = ["DENIED_SYSCALLS", "NAMESPACE_FLAGS", "SeccompUnavailable", "seccomp_filter_fd"]


class SeccompUnavailable(RuntimeError):
    """The filter cannot be generated (libseccomp or its Python bindings missing)."""


DENIED_SYSCALLS = (
    "mount", "umount", "umount2", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount",
    "fspick", "mount_setattr", "pivot_root", "chroot", "setns",
    "keyctl", "add_key", "request_key", "bpf", "userfaultfd", "perf_event_open",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "acct",
    "quotactl", "quotactl_fd", "open_by_handle_at", "name_to_handle_at", "lookup_dcookie",
    "syslog", "iopl", "ioperm", "vhangup", "uselib", "nfsservctl",
)  # fmt: skip

# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME.
NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                   0x40000000, 0x00000080)  # fmt: skip


def _compile(denied: Iterable[str], fd: int) -> None:
    try:
        import pyseccomp as sc
    except (ImportError, OSError) as exc:  # OSError: libseccomp.so.2 itself is missing
        raise SeccompUnavailable(
            f"cannot build the seccomp filter ({exc}): pip install pyseccomp, "
            "apt-get install libseccomp2"
        ) from exc
    refuse = sc.ERRNO(errno.EPERM)
    flt = sc.SyscallFilter(sc.ALLOW)
    for name in denied:
        try:
            flt.add_rule(refuse, name)
        except (ValueError, RuntimeError, OSError):
            continue  # not a system call of this architecture
    for flag in NAMESPACE_FLAGS:
        for call in ("unshare", "clone"):
            # clone's flags are its first argument on x86-64 and arm64 alike.
            flt.add_rule(refuse, call, sc.Arg(0, sc.MASKED_EQ, flag, flag))
    flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    try:
        with open(fd, "wb", closefd=False) as out:
            flt.export_bpf(out)
    except OSError as exc:
        raise SeccompUnavailable(f"cannot export the seccomp filter: {exc}") from exc


def seccomp_filter_fd(denied: Iterable[str] = DENIED_SYSCALLS) -> int:
    """A file descriptor holding the compiled filter, positioned at its start.

    The caller passes it to bubblewrap (``pass_fds``, ``--seccomp FD``) and closes it.
    """
    fd = os.memfd_create("dpsandbox-seccomp", 0)
    try:
        _compile(denied, fd)
    except BaseException:
        os.close(fd)
        raise
    os.lseek(fd, 0, os.SEEK_SET)
    return fd

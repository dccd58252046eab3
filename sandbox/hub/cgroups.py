"""Memory, CPU and process-count limits of one sandbox with cgroups v1.

Each sandbox gets ``/sys/fs/cgroup/{memory,cpu,pids}/dpsandbox/<user>``; the
spawned process joins them before it drops privileges (see ``join_fn``), so
everything the sandbox forks is limited and can be found again: after a stop
the spawner kills whatever is still in the group and removes it.  cgroups v2
and hosts without the controllers are reported by ``CgroupUnavailable`` so the
spawner can say plainly that a sandbox runs without limits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CgroupLimits", "CgroupUnavailable", "SandboxCgroup"]

CPU_PERIOD_US = 100_000


class CgroupUnavailable(Exception):
    """Limits cannot be applied on this host (not root, no v1 controllers, ...)."""


@dataclass(frozen=True)
class CgroupLimits:
    memory_bytes: int | None = None
    cpus: float | None = None
    pids: int | None = None


class SandboxCgroup:
    """The v1 cgroups of one sandbox, one directory per controller."""

    def __init__(self, name: str, *, root: Path = Path("/sys/fs/cgroup"), parent: str = "dpsandbox"):
        self.name = name
        self.root = root
        self.parent = parent

    def _dir(self, controller: str) -> Path:
        return self.root / controller / self.parent / self.name

    def _controllers(self) -> list[str]:
        return [c for c in ("memory", "cpu", "pids") if (self.root / c / "tasks").exists()]

    def setup(self, limits: CgroupLimits) -> list[str]:
        """(Re)create the groups with ``limits``; return what was applied, for the log."""
        if os.geteuid() != 0:
            raise CgroupUnavailable("the hub does not run as root")
        if (self.root / "cgroup.controllers").exists():
            raise CgroupUnavailable(f"{self.root} is cgroup v2; only v1 is supported")
        controllers = self._controllers()
        if not controllers:
            raise CgroupUnavailable(f"no cgroup v1 memory/cpu/pids controllers under {self.root}")
        self.remove()
        applied = []
        for controller in controllers:
            path = self._dir(controller)
            try:
                path.mkdir(parents=True, exist_ok=True)
                applied += self._limit(controller, path, limits)
            except OSError as exc:
                raise CgroupUnavailable(f"cannot configure {path}: {exc}") from exc
        return applied

    @staticmethod
    def _limit(controller: str, path: Path, limits: CgroupLimits) -> list[str]:
        if controller == "memory" and limits.memory_bytes:
            (path / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
            memsw = path / "memory.memsw.limit_in_bytes"
            if memsw.exists():  # swap may not carry a sandbox past its limit
                memsw.write_text(str(limits.memory_bytes))
            return [f"memory={limits.memory_bytes // 2**20}M"]
        if controller == "cpu" and limits.cpus:
            (path / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (path / "cpu.cfs_quota_us").write_text(str(int(limits.cpus * CPU_PERIOD_US)))
            return [f"cpu={limits.cpus:g}"]
        if controller == "pids" and limits.pids:
            (path / "pids.max").write_text(str(limits.pids))
            return [f"pids={limits.pids}"]
        return []

    def join_fn(self) -> Callable[[], None]:
        """A function for ``preexec_fn``: move the calling process into the groups.

        It only opens and writes files: safe between fork and exec.
        """
        procs_files = [str(self._dir(c) / "cgroup.procs") for c in self._controllers()]
        procs_files = [f for f in procs_files if os.path.exists(f)]

        def join() -> None:
            pid = str(os.getpid())
            for procs in procs_files:
                with open(procs, "w") as f:
                    f.write(pid)

        return join

    def pids(self) -> set[int]:
        found: set[int] = set()
        for controller in self._controllers():
            with contextlib.suppress(OSError):
                found.update(int(p) for p in (self._dir(controller) / "cgroup.procs").read_text().split())
        return found

    def kill_all(self, timeout: float = 5.0) -> set[int]:
        """SIGKILL every process left in the groups; return those that were found."""
        killed: set[int] = set()
        deadline = time.monotonic() + timeout
        while (left := self.pids()) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed |= left
            time.sleep(0.05)
        return killed

    def remove(self) -> None:
        """Kill what is left and delete the groups (missing groups are fine)."""
        if not any(self._dir(c).exists() for c in self._controllers()):
            return
        self.kill_all()
        for controller in self._controllers():
            with contextlib.suppress(FileNotFoundError):
                self._dir(controller).rmdir()

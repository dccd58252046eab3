"""Memory, CPU and process-count limits of one sandbox, on cgroup v1 or v2.

- **v1** (one hierarchy per controller, as on this project's Debian hosts):
  ``<root>/{memory,cpu,pids}/dpsandbox/<user>`` with ``memory.limit_in_bytes``
  (and ``memory.memsw.limit_in_bytes``), ``cpu.cfs_quota_us``/``cpu.cfs_period_us``,
  ``pids.max``.
- **v2** (the unified hierarchy, ``<root>/cgroup.controllers`` exists):
  ``<root>/dpsandbox/<user>`` with ``memory.max``, ``memory.swap.max`` = 0,
  ``cpu.max`` = ``"<quota> <period>"``, ``pids.max``; the controllers are
  enabled in the parents' ``cgroup.subtree_control`` first.  A machine with both
  (v1 controllers and a v2 mount) uses v1, where the controllers are.

The spawned process joins the group before it drops privileges (``join_fn``),
so everything the sandbox forks is limited and can be found again: after a stop
the spawner kills whatever is still in the group and removes it.  Hosts without
usable controllers raise ``CgroupUnavailable`` so the spawner can say plainly
that a sandbox runs without limits.
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
CONTROLLERS = ("memory", "cpu", "pids")


class CgroupUnavailable(Exception):
    """Limits cannot be applied on this host (not root, no controllers, ...)."""


@dataclass(frozen=True)
class CgroupLimits:
    memory_bytes: int | None = None
    cpus: float | None = None
    pids: int | None = None


class SandboxCgroup:
    """The cgroup(s) of one sandbox: one directory per controller (v1), or one (v2)."""

    def __init__(self, name: str, *, root: Path = Path("/sys/fs/cgroup"), parent: str = "dpsandbox"):
        self.name = name
        self.root = root
        self.parent = parent

    # -- where things are ---------------------------------------------------------------

    def _v1_controllers(self) -> list[str]:
        return [c for c in CONTROLLERS if (self.root / c / "tasks").exists()]

    @property
    def version(self) -> int | None:
        """1 or 2 for the hierarchy that carries the controllers here, None for neither."""
        if self._v1_controllers():
            return 1
        if (self.root / "cgroup.controllers").exists():
            return 2
        return None

    def _v2_controllers(self) -> list[str]:
        try:
            available = (self.root / "cgroup.controllers").read_text().split()
        except OSError:
            return []
        return [c for c in CONTROLLERS if c in available]

    def _dirs(self) -> list[Path]:
        if self.version == 1:
            return [self.root / c / self.parent / self.name for c in self._v1_controllers()]
        if self.version == 2:
            return [self.root / self.parent / self.name]
        return []

    # -- setting up ---------------------------------------------------------------------

    def setup(self, limits: CgroupLimits) -> list[str]:
        """(Re)create the groups with ``limits``; return what was applied, for the log."""
        if os.geteuid() != 0:
            raise CgroupUnavailable("the hub does not run as root")
        version = self.version
        if version is None:
            raise CgroupUnavailable(f"no cgroup v1 or v2 memory/cpu/pids controllers under {self.root}")
        self.remove()
        try:
            if version == 1:
                return self._setup_v1(limits)
            return self._setup_v2(limits)
        except OSError as exc:
            raise CgroupUnavailable(f"cannot configure the cgroup of {self.name}: {exc}") from exc

    def _setup_v1(self, limits: CgroupLimits) -> list[str]:
        applied = []
        for controller in self._v1_controllers():
            path = self.root / controller / self.parent / self.name
            path.mkdir(parents=True, exist_ok=True)
            if controller == "memory" and limits.memory_bytes:
                (path / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
                memsw = path / "memory.memsw.limit_in_bytes"
                if memsw.exists():  # swap may not carry a sandbox past its limit
                    memsw.write_text(str(limits.memory_bytes))
                applied.append(f"memory={limits.memory_bytes // 2**20}M")
            elif controller == "cpu" and limits.cpus:
                (path / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
                (path / "cpu.cfs_quota_us").write_text(str(int(limits.cpus * CPU_PERIOD_US)))
                applied.append(f"cpu={limits.cpus:g}")
            elif controller == "pids" and limits.pids:
                (path / "pids.max").write_text(str(limits.pids))
                applied.append(f"pids={limits.pids}")
        return applied

    def _setup_v2(self, limits: CgroupLimits) -> list[str]:
        controllers = self._v2_controllers()
        if not controllers:
            raise CgroupUnavailable(f"{self.root} offers none of {', '.join(CONTROLLERS)}")
        enable = " ".join(f"+{c}" for c in controllers)
        parent = self.root / self.parent
        parent.mkdir(exist_ok=True)
        # A controller reaches a group only if every ancestor passes it down.
        (self.root / "cgroup.subtree_control").write_text(enable)
        (parent / "cgroup.subtree_control").write_text(enable)
        path = parent / self.name
        path.mkdir(exist_ok=True)
        applied = []
        if "memory" in controllers and limits.memory_bytes:
            (path / "memory.max").write_text(str(limits.memory_bytes))
            (path / "memory.swap.max").write_text("0")
            applied.append(f"memory={limits.memory_bytes // 2**20}M")
        if "cpu" in controllers and limits.cpus:
            (path / "cpu.max").write_text(f"{int(limits.cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")
            applied.append(f"cpu={limits.cpus:g}")
        if "pids" in controllers and limits.pids:
            (path / "pids.max").write_text(str(limits.pids))
            applied.append(f"pids={limits.pids}")
        return applied

    def join_fn(self) -> Callable[[], None]:
        """A function for ``preexec_fn``: move the calling process into the groups.

        It only opens and writes files: safe between fork and exec.
        """
        procs_files = [str(d / "cgroup.procs") for d in self._dirs()]
        procs_files = [f for f in procs_files if os.path.exists(f)]

        def join() -> None:
            pid = str(os.getpid())
            for procs in procs_files:
                with open(procs, "w") as f:
                    f.write(pid)

        return join

    # -- ending -------------------------------------------------------------------------

    def pids(self) -> set[int]:
        found: set[int] = set()
        for path in self._dirs():
            with contextlib.suppress(OSError):
                found.update(int(p) for p in (path / "cgroup.procs").read_text().split())
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
        dirs = [d for d in self._dirs() if d.exists()]
        if not dirs:
            return
        self.kill_all()
        for path in dirs:
            with contextlib.suppress(FileNotFoundError):
                path.rmdir()

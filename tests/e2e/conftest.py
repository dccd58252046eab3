"""End-to-end fixtures: the real gateway and the real hub as subprocesses.

The gateway runs as ``dpsandbox gateway`` on a free port with a fresh
``DPSANDBOX_HOME`` (outside /tmp, so hiding it is the spawner's job and not a
side effect of the sandbox's private /tmp); accounts and a dataset are made
with the ``dpsandbox`` CLI.  The hub runs with ``sandbox.hub.run.start_hub``,
spawning real servers as real system users inside bubblewrap, so these tests
need root, bubblewrap and Debian's python3.11 (see docs/deploy/README.md).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.hub.build_env import build_sandbox_env
from tests.e2e.support import (
    Gateway,
    Hub,
    add_exam_dataset,
    run_directory,
    running_gateway,
    running_hub,
    sandbox_host_missing,
    system_users_removed,
)


def _require_sandbox_host() -> None:
    if os.geteuid() != 0:
        pytest.skip("end-to-end sandbox tests create system users: run them as root")
    missing = sandbox_host_missing()
    if missing:
        pytest.fail("end-to-end tests need: " + "; ".join(missing))


@pytest.fixture(scope="session")
def sandbox_env() -> Path:
    """The sandboxes' Python environment (built once, then reused: about 0.1 s)."""
    _require_sandbox_host()
    return build_sandbox_env()


@pytest.fixture(scope="session")
def e2e_dir() -> Iterator[Path]:
    with run_directory(keep=bool(os.environ.get("DPSANDBOX_E2E_KEEP"))) as path:
        yield path


@pytest.fixture(scope="session")
def gateway(sandbox_env: Path, e2e_dir: Path) -> Iterator[Gateway]:
    """The real gateway, on a free port, with one account per role and one dataset."""
    with running_gateway(e2e_dir) as gw:
        yield gw


@pytest.fixture(scope="session")
def exam_dataset(gateway: Gateway, e2e_dir: Path) -> str:
    """The small demo dataset ``exam`` (4,059 rows), registered through the CLI."""
    return add_exam_dataset(gateway, e2e_dir)


@pytest.fixture(scope="session")
def analysts(gateway: Gateway) -> Iterator[tuple[str, str]]:
    """Two researchers with fresh names; their system users are removed afterwards."""
    suffix = secrets.token_hex(3)
    names = (gateway.add_user(f"ana{suffix}", "researcher"), gateway.add_user(f"anb{suffix}", "researcher"))
    with system_users_removed(names):
        yield names


@pytest.fixture(scope="module")
def hub(gateway: Gateway, sandbox_env: Path, e2e_dir: Path) -> Iterator[Hub]:
    """The real hub with the real configuration, talking to the real gateway."""
    limits = {"DPSANDBOX_SANDBOX_MEM_LIMIT": "1G", "DPSANDBOX_SANDBOX_CPU_LIMIT": "1"}
    with running_hub(gateway, e2e_dir, env=limits) as hub:
        yield hub

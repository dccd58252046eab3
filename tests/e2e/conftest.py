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
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.hub.build_env import DEFAULT_PYTHON, build_sandbox_env
from sandbox.hub.isolation import system_username
from tests.e2e.support import DPSANDBOX, E2E_ROOT, Gateway, Hub, free_port, processes_of, wait_http


def _require_sandbox_host() -> None:
    if os.geteuid() != 0:
        pytest.skip("end-to-end sandbox tests create system users: run them as root")
    missing = [
        what
        for what, ok in [
            ("bubblewrap (apt-get install bubblewrap)", shutil.which("bwrap")),
            (f"{DEFAULT_PYTHON} (apt-get install python3 python3-venv)", DEFAULT_PYTHON.exists()),
            ("the dpsandbox CLI in this venv (pip install -e .)", DPSANDBOX.exists()),
        ]
        if not ok
    ]
    if missing:
        pytest.fail("end-to-end tests need: " + "; ".join(missing))


@pytest.fixture(scope="session")
def sandbox_env() -> Path:
    """The sandboxes' Python environment (built once, then reused: about 0.1 s)."""
    _require_sandbox_host()
    return build_sandbox_env()


@pytest.fixture(scope="session")
def e2e_dir() -> Iterator[Path]:
    E2E_ROOT.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="run-", dir=E2E_ROOT))
    # Searchable by the sandboxes' users, as /root/.dpsandbox's parent is not but
    # /srv or /var/lib would be: the gateway's own 0700 home and the spawner's
    # tmpfs over it are what must keep its files out of reach.
    os.chmod(E2E_ROOT, 0o755)  # noqa: S103
    os.chmod(path, 0o755)  # noqa: S103
    yield path
    if os.environ.get("DPSANDBOX_E2E_KEEP"):
        print(f"\nend-to-end files (gateway, hub logs) kept in {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def gateway(sandbox_env: Path, e2e_dir: Path) -> Iterator[Gateway]:
    """The real gateway, on a free port, with one account per role and one dataset."""
    home = e2e_dir / "dpsandbox-home"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DPSANDBOX_HOME": str(home),
        "DPSANDBOX_GATEWAY_URL": url,
        "RUST_BACKTRACE": "0",
    }
    env.pop("DPSANDBOX_DATABASE_URL", None)
    log = open(e2e_dir / "gateway.log", "wb")
    proc = subprocess.Popen(
        [str(DPSANDBOX), "gateway", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    gw = Gateway(home=home, url=url, env=env, proc=proc)
    try:
        wait_http(f"{url}/v1/datasets", proc=proc)
        yield gw
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def exam_dataset(gateway: Gateway, e2e_dir: Path) -> str:
    """The small demo dataset ``exam`` (4,059 rows), registered through the CLI."""
    from gateway.demo_data import LOADERS

    data = e2e_dir / "exam.parquet"
    LOADERS["exam"]().write_parquet(data)
    gateway.cli("dataset", "add", "exam", "--data", str(data))
    return "exam"


@pytest.fixture(scope="session")
def analysts(gateway: Gateway) -> Iterator[tuple[str, str]]:
    """Two researchers with fresh names; their system users are removed afterwards."""
    suffix = secrets.token_hex(3)
    names = (gateway.add_user(f"ana{suffix}", "researcher"), gateway.add_user(f"anb{suffix}", "researcher"))
    yield names
    for name in names:
        account = system_username(name)
        try:
            uid = pwd.getpwnam(account).pw_uid
        except KeyError:
            continue
        for pid in processes_of(uid):  # only if a test failed half-way
            os.kill(pid, 9)
        subprocess.run(["userdel", "--remove", account], capture_output=True, check=False)


@pytest.fixture(scope="module")
def hub(gateway: Gateway, sandbox_env: Path, e2e_dir: Path) -> Iterator[Hub]:
    """The real hub with the real configuration, talking to the real gateway."""
    from sandbox.hub.run import start_hub, stop_hub

    port = free_port()
    log_path = e2e_dir / f"hub-{port}.log"
    log = open(log_path, "wb")
    env = {**os.environ, "DPSANDBOX_SANDBOX_MEM_LIMIT": "1G", "DPSANDBOX_SANDBOX_CPU_LIMIT": "1"}
    for name in ("DPSANDBOX_HUB_SECRET", "DPSANDBOX_SANDBOX_ISOLATION"):
        env.pop(name, None)
    proc = start_hub(
        gateway.home,
        gateway.url,
        port,
        hub_api_port=free_port(),
        proxy_api_port=free_port(),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/hub/api", proc=proc, ready=(200,))
        yield Hub(url=url, proc=proc, log_path=log_path)
    finally:
        stop_hub(proc)
        log.close()

"""The sandbox's cgroup memory limit is enforced: a process that outgrows it is killed."""

from __future__ import annotations

import pwd
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.hub.isolation import system_username
from tests.e2e.hubclient import HubBrowser, KernelSession
from tests.e2e.support import PASSWORD, Gateway, Hub, remove_system_user, running_hub

pytestmark = pytest.mark.e2e
LIMIT = "384M"
PIDS = 96


@pytest.fixture(scope="module")
def small_hub(gateway: Gateway, sandbox_env: Path, e2e_dir: Path) -> Iterator[Hub]:
    env = {"DPSANDBOX_SANDBOX_MEM_LIMIT": LIMIT, "DPSANDBOX_SANDBOX_CPU_LIMIT": "1",
           "DPSANDBOX_SANDBOX_PIDS_LIMIT": str(PIDS), "DPSANDBOX_SANDBOX_HOME_SIZE": "64M"}
    with running_hub(gateway, e2e_dir, env=env) as hub:
        yield hub


def test_a_process_over_the_memory_limit_is_killed(small_hub: Hub, gateway: Gateway) -> None:
    name = gateway.add_user(f"mem{secrets.token_hex(3)}", "researcher")
    browser = HubBrowser(small_hub.url)
    kernel = None
    try:
        assert browser.login(name, PASSWORD).status_code == 302
        browser.start_server()
        account = pwd.getpwnam(system_username(name)).pw_name
        limit = Path(f"/sys/fs/cgroup/memory/dpsandbox/{account}/memory.limit_in_bytes")
        assert int(limit.read_text()) == 384 * 2**20
        kernel = KernelSession(small_hub.url, name, browser.server_token())
        out = kernel.execute(
            "import subprocess, sys\n"
            "grow = 'b = bytearray(768 * 2**20)\\nfor i in range(0, len(b), 4096): b[i] = 1'\n"
            "small = subprocess.run([sys.executable, '-c', 'print(sum(range(10)))'],\n"
            "                       capture_output=True, text=True)\n"
            "big = subprocess.run([sys.executable, '-c', grow])\n"
            "print('RESULT', small.stdout.strip(), big.returncode)"
        )
        line = next(x for x in out.splitlines() if x.startswith("RESULT"))
        assert line == "RESULT 45 -9", out  # the one over the limit was SIGKILLed (OOM)
        assert "RESULT" in kernel.execute("print('RESULT alive')")  # the kernel lives on
        # The pids limit holds: threads beyond it cannot start, and the kernel lives on.
        pids = Path(f"/sys/fs/cgroup/pids/dpsandbox/{account}/pids.max")
        assert int(pids.read_text()) == PIDS
        out = kernel.execute(
            "import threading, time\n"
            "stop, started = threading.Event(), 0\n"
            "try:\n"
            "    for _ in range(1000):\n"
            "        threading.Thread(target=stop.wait, daemon=True).start(); started += 1\n"
            "except RuntimeError as e:\n"
            "    print('REFUSED', started, e)\n"
            "stop.set()"
        )
        line = next(x for x in out.splitlines() if x.startswith("REFUSED"))
        assert 0 < int(line.split()[1]) < PIDS, out
        assert "RESULT" in kernel.execute("print('RESULT alive')")
        # The home has a size of its own (a loop-mounted image): writing past it fails in
        # the kernel, and the kernel and its way to the gateway carry on.
        homes = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                 if line.split()[1].endswith(f"/mnt/{account}")]
        assert len(homes) == 1, homes
        out = kernel.execute(
            "import errno, os, httpx\n"
            "path = os.path.expanduser('~/fill')\n"
            "try:\n"
            "    with open(path, 'wb') as f:\n"
            "        for _ in range(200):\n"
            "            f.write(b'x' * 2**20); f.flush(); os.fsync(f.fileno())\n"
            "    print('QUOTA none')\n"
            "except OSError as e:\n"
            "    print('QUOTA', errno.errorcode[e.errno])\n"
            "os.remove(path)\n"
            "me = httpx.get(os.environ['DPSANDBOX_GATEWAY_URL'] + '/v1/me',\n"
            "               headers={'Authorization': 'Bearer ' + os.environ['DPSANDBOX_TOKEN']})\n"
            "print('GATEWAY', me.status_code)"
        )
        assert "QUOTA ENOSPC" in out and "GATEWAY 200" in out, out
    finally:
        if kernel is not None:
            kernel.close()
        browser.close()
        remove_system_user(name)

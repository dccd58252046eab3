"""A researcher logs in to the real hub and works in a real, isolated sandbox.

Everything runs for real: the gateway and the hub as subprocesses, servers
spawned as per-analyst system users inside bubblewrap, code executed in real
kernels over the Jupyter server's REST and websocket APIs.  The tests run in
file order: the last ones stop a server and then the hub.
"""

from __future__ import annotations

import json
import pwd
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sandbox.hub.isolation import system_username
from tests.e2e.hubclient import HubBrowser, KernelError, KernelSession
from tests.e2e.support import PASSWORD, Gateway, Hub, processes_of, server_processes

# One worker runs them all, in order: they share one hub and the last ones stop it.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-hub")]


class Sandbox:
    """One analyst: browser session, running server, one kernel."""

    def __init__(self, hub: Hub, username: str) -> None:
        self.username = username
        self.hub = hub
        self.account: pwd.struct_passwd | None = None  # created by the spawner
        self.kernel: KernelSession | None = None
        self.browser = HubBrowser(hub.url)
        response = self.browser.login(username, PASSWORD)
        assert response.status_code == 302, response.text

    def start(self) -> Sandbox:
        """Spawn the server (the hub's API call blocks up to 10 s), then open a kernel."""
        self.browser.start_server()
        self.account = pwd.getpwnam(system_username(self.username))
        self.kernel = KernelSession(self.hub.url, self.username, self.browser.server_token())
        return self

    def run(self, code: str) -> str:
        assert self.kernel is not None
        return self.kernel.execute(code)

    def run_json(self, code: str) -> object:
        """Run ``code`` that prints one JSON document; return it."""
        return json.loads(self.run(code).strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sandboxes(hub: Hub, analysts: tuple[str, str], exam_dataset: str) -> Iterator[tuple[Sandbox, Sandbox]]:
    """Both analysts logged in through the form, their servers spawned side by side."""
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda name: Sandbox(hub, name).start(), analysts)
    yield first, second
    for box in (first, second):
        if box.kernel is not None:
            box.kernel.close()
        box.browser.close()


def test_idle_culler_runs_as_a_hub_service(hub: Hub) -> None:
    deadline = time.monotonic() + 90  # it calls the hub's API as it starts, then periodically
    while "(idle-culler@127.0.0.1)" not in hub.log() and time.monotonic() < deadline:
        time.sleep(0.5)
    culler_requests = [line for line in hub.log().splitlines() if "(idle-culler@127.0.0.1)" in line]
    assert culler_requests, "the idle culler never called the hub's API"
    assert all(" 200 GET /hub/api/" in line for line in culler_requests), culler_requests


def test_wrong_password_is_refused_on_the_login_form(hub: Hub, analysts: tuple[str, str]) -> None:
    browser = HubBrowser(hub.url)
    response = browser.login(analysts[0], "not-the-password")
    assert response.status_code == 403
    assert "Invalid username or password" in response.text
    browser.close()


@pytest.mark.parametrize("role", ["admin", "auditor"])
def test_admins_and_auditors_are_sent_to_the_console(hub: Hub, gateway: Gateway, role: str) -> None:
    name = gateway.add_user(f"{role}{int(time.time() * 1000) % 10**6}", role)
    browser = HubBrowser(hub.url)
    response = browser.login(name, PASSWORD)
    assert response.status_code == 403
    assert f"{gateway.url}/console" in response.text
    assert "no notebook sandbox" in response.text
    browser.close()


def test_scenario_notebooks_wait_in_the_new_analysts_home(
    sandboxes: tuple[Sandbox, Sandbox],
) -> None:
    listing = sandboxes[0].run_json(
        "import os, json; t = os.path.expanduser('~/templates'); "
        "print(json.dumps({'files': sorted(os.listdir(t)), 'mine': os.stat(t).st_uid == os.getuid()}))"
    )
    assert isinstance(listing, dict) and listing["mine"] is True
    assert "01_getting_started.ipynb" in listing["files"]
    assert "04_credit_risk_restricted.ipynb" in listing["files"]


def test_sandbox_runs_as_the_analysts_own_system_user(
    sandboxes: tuple[Sandbox, Sandbox], sandbox_env: Path
) -> None:
    first, second = sandboxes
    for box in sandboxes:
        seen = box.run_json(
            "import os, sys, json; print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), "
            "'home': os.environ['HOME'], 'exe': sys.executable, 'env': sorted(os.environ), "
            "'path': os.environ['PATH']}))"
        )
        assert isinstance(seen, dict)
        assert box.account is not None
        assert seen["uid"] == box.account.pw_uid != 0
        assert seen["gid"] == box.account.pw_gid
        assert seen["home"] == box.account.pw_dir
        assert seen["exe"].startswith(f"{sandbox_env}/")
        assert seen["path"].startswith(f"{sandbox_env}/bin:")
        assert ".venv" not in seen["path"]
        assert "VIRTUAL_ENV" not in seen["env"]
        assert {k for k in seen["env"] if k.startswith("DPSANDBOX_")} == {
            "DPSANDBOX_GATEWAY_URL",
            "DPSANDBOX_TOKEN",
            "DPSANDBOX_LANG",  # the client library's messages, from the browser's language
            "DPSANDBOX_GATEWAY_SOCKET",  # the hub's relay to the gateway, inside the sandbox
        }
    assert first.account is not None and second.account is not None
    assert first.account.pw_uid != second.account.pw_uid


def test_gateway_files_hub_state_and_other_homes_are_hidden(
    sandboxes: tuple[Sandbox, Sandbox], gateway: Gateway, sandbox_env: Path
) -> None:
    first, second = sandboxes
    assert second.account is not None
    # the other analyst's home on the host: its image's mount point (the account has no
    # home directory of its own with size-limited homes)
    [second_home] = [Path(line.split()[1]) for line in Path("/proc/mounts").read_text().splitlines()
                     if line.split()[1].endswith(f"/mnt/{second.account.pw_name}")]  # fmt: skip
    secrets_on_host = {
        "data dir": gateway.home / "data",
        "database": gateway.home / "dpsandbox.sqlite",
        "signing key": gateway.home / "state" / "signing_key.pem",
        "hub secret": gateway.home / "state" / "hub_secret",
        "hub database": gateway.home / "hub" / "jupyterhub.sqlite",
        "hub cookie secret": gateway.home / "hub" / "jupyterhub_cookie_secret",
        "proxy token": gateway.home / "hub" / "proxy_token",
        "other analyst's home": second_home,
        "root's home": Path("/root"),
    }
    for what, path in secrets_on_host.items():
        assert path.exists(), f"{what} should exist on the host: {path}"
    (second_home / "notes.txt").write_text("private")

    probe = """
import json, os
def look(p):
    try:
        if os.path.isdir(p):
            return sorted(os.listdir(p))
        with open(p, 'rb') as f:
            return f.read(64).hex()
    except OSError as e:
        return type(e).__name__
print(json.dumps({p: look(p) for p in %r}))
""" % [str(p) for p in secrets_on_host.values()]
    seen = first.run_json(probe)
    assert isinstance(seen, dict)
    for what, path in secrets_on_host.items():
        result = seen[str(path)]
        # Hidden: an empty directory, or no such file.
        assert result in ([], "FileNotFoundError"), f"{what} visible in the sandbox: {result!r}"
    # And nothing can be written outside the analyst's home and /tmp.
    with pytest.raises(KernelError, match=r"Read-only file system|Permission denied"):
        first.run(f"open('{sandbox_env}/evil.py', 'w')")
    with pytest.raises(KernelError, match=r"Read-only file system|No such file"):
        first.run(f"open('{gateway.home}/planted', 'w')")


def test_other_sandboxes_processes_are_invisible(sandboxes: tuple[Sandbox, Sandbox]) -> None:
    first, second = sandboxes
    assert first.account is not None and second.account is not None
    assert processes_of(second.account.pw_uid), "the other sandbox should be running"
    seen = first.run_json(
        "import os, json\n"
        "procs = {}\n"
        "for p in os.listdir('/proc'):\n"
        "    if p.isdigit():\n"
        "        status = open(f'/proc/{p}/status').read()\n"
        "        uid = [l for l in status.splitlines() if l.startswith('Uid:')][0].split()[1]\n"
        "        procs[p] = [int(uid), open(f'/proc/{p}/cmdline', 'rb').read().decode(errors='replace')]\n"
        "print(json.dumps(procs))"
    )
    assert isinstance(seen, dict)
    assert 0 < len(seen) < 10, seen  # bwrap's init, the server, its kernel(s)
    assert {uid for uid, _ in seen.values()} == {first.account.pw_uid}
    assert not any(second.username in cmd for _, cmd in seen.values())
    assert "1" in seen  # a PID namespace of its own


def test_sandbox_connects_to_the_gateway_and_nothing_else(
    sandboxes: tuple[Sandbox, Sandbox], gateway: Gateway
) -> None:
    # A service on the host's loopback that is not the gateway: a database that
    # trusts local TCP, another service's admin port, the proxy's API ...
    with socket.create_server(("127.0.0.1", 0)) as other_service:
        port = other_service.getsockname()[1]
        seen = sandboxes[0].run_json(
            "import json, socket\n"
            "def connect(port):\n"
            "    try:\n"
            "        socket.create_connection(('127.0.0.1', port), timeout=5).close()\n"
            "        return 'connected'\n"
            "    except OSError as e:\n"
            "        return type(e).__name__\n"
            f"print(json.dumps([connect({port}), connect({gateway.url.rsplit(':', 1)[1]})]))"
        )
    assert seen == ["ConnectionRefusedError", "connected"]


def test_kernels_talk_over_ipc_sockets(sandboxes: tuple[Sandbox, Sandbox]) -> None:
    seen = sandboxes[0].run_json(
        "import json, glob\n"
        "files = glob.glob('/tmp/jupyter-runtime/kernel-*.json')\n"
        "print(json.dumps(sorted({json.load(open(f))['transport'] for f in files})))"
    )
    assert seen == ["ipc"]


def test_cgroup_limits_apply_to_the_sandbox(sandboxes: tuple[Sandbox, Sandbox]) -> None:
    box = sandboxes[0]
    assert box.account is not None
    inside = box.run("import os; print(os.getpid(), open('/proc/self/cgroup').read())")
    # Its own cgroup namespace: the kernel sees its group as the root, no neighbours' names.
    assert "memory:/\n" in inside and "dpsandbox" not in inside
    kernels = [pid for pid, cmd in server_processes(box.username).items() if "ipykernel_launcher" in cmd]
    assert kernels
    on_host = Path(f"/proc/{kernels[0]}/cgroup").read_text()
    assert f"memory:/dpsandbox/{box.account.pw_name}" in on_host
    limit = Path(f"/sys/fs/cgroup/memory/dpsandbox/{box.account.pw_name}/memory.limit_in_bytes")
    if limit.exists():
        assert int(limit.read_text()) == 2**30


def test_sandbox_token_reaches_the_gateway_but_not_admin_endpoints(
    sandboxes: tuple[Sandbox, Sandbox], exam_dataset: str
) -> None:
    box = sandboxes[0]
    seen = box.run_json(
        "import os, json, httpx\n"
        "gw, token = os.environ['DPSANDBOX_GATEWAY_URL'], os.environ['DPSANDBOX_TOKEN']\n"
        "auth = {'Authorization': f'Bearer {token}'}\n"
        "me = httpx.get(f'{gw}/v1/me', headers=auth)\n"
        "users = httpx.get(f'{gw}/v1/users', headers=auth)\n"
        "datasets = httpx.get(f'{gw}/v1/datasets', headers=auth)\n"
        "print(json.dumps({'me': me.json(), 'users': [users.status_code, users.json()],\n"
        "                  'datasets': [d['name'] for d in datasets.json()]}))"
    )
    assert isinstance(seen, dict)
    assert seen["me"]["username"] == box.username
    assert seen["me"]["role"] == "researcher"
    assert seen["me"].get("scope") == "sandbox"
    assert seen["users"][0] == 403
    assert seen["users"][1]["error"]["code"] == "forbidden"
    assert exam_dataset in seen["datasets"]


def test_client_library_connects_from_the_sandbox(
    sandboxes: tuple[Sandbox, Sandbox], exam_dataset: str
) -> None:
    out = sandboxes[0].run("from sandbox import connect\ngw = connect()\nprint(gw.datasets().to_string())")
    assert exam_dataset in out
    # Straight over the hub's relay socket (DPSANDBOX_GATEWAY_SOCKET), not through the
    # sandbox's loopback forwarder: one hop less on every query.
    family = sandboxes[0].run(
        "with gw._session._http.stream('GET', '/v1/me') as r:\n"
        "    print(r.extensions['network_stream'].get_extra_info('socket').family.name)"
    )
    assert family.strip() == "AF_UNIX"


def test_a_query_from_the_kernel_is_released_and_audited_under_the_researcher(
    sandboxes: tuple[Sandbox, Sandbox], gateway: Gateway, exam_dataset: str
) -> None:
    """exam is an open dataset: the first query grants itself, is charged and released."""
    box = sandboxes[0]
    out = box.run(
        "from sandbox import connect\n"
        "gw = connect()\n"
        f"df = gw.dataset({exam_dataset!r}).count(by=['sex'], epsilon=0.1)\n"
        "print('QUERY', df.attrs['query_id'], sorted(df['sex']), df.attrs['epsilon_charged'])"
    )
    line = next(x for x in out.splitlines() if x.startswith("QUERY "))
    _, query_id, *rest = line.split(" ", 2)
    assert rest[0].startswith("['F', 'M']") and rest[0].endswith("0.1")
    exported = gateway.cli("audit", "export", "--format", "jsonl")
    entries = [json.loads(x) for x in exported.splitlines() if x.strip()]
    mine = [e for e in entries if e["query_id"] == query_id]
    assert {e["action"] for e in mine} >= {"query.charge", "query.release"}
    assert all(e["actor"] == box.username and e["role"] == "researcher" for e in mine)
    assert [e["epsilon"] for e in mine if e["action"] == "query.charge"] == ["0.1"]
    assert "audit log intact" in gateway.cli("audit", "verify")


def test_stopping_a_server_shuts_its_kernels_down_and_leaves_no_process(
    sandboxes: tuple[Sandbox, Sandbox], hub: Hub
) -> None:
    box = sandboxes[0]
    assert box.account is not None and box.kernel is not None
    kernel_id = box.kernel.kernel_id
    box.run("import time; x = 1")
    assert processes_of(box.account.pw_uid)
    box.browser.stop_server()
    assert processes_of(box.account.pw_uid) == []
    assert f"Kernel shutdown: {kernel_id}" in hub.log()  # the server shut it down, not a SIGKILL
    assert not Path(f"/sys/fs/cgroup/memory/dpsandbox/{box.account.pw_name}").exists()
    box.kernel.close()
    box.kernel = None


def test_stopping_the_hub_stops_every_sandbox(sandboxes: tuple[Sandbox, Sandbox], hub: Hub) -> None:
    from sandbox.hub.run import stop_hub

    second = sandboxes[1]
    assert second.account is not None
    assert processes_of(second.account.pw_uid)
    started = time.monotonic()
    assert stop_hub(hub.proc) == 0
    assert time.monotonic() - started < 20
    assert processes_of(second.account.pw_uid) == []

"""The bubblewrap fallback tried as an attacker would, from inside real kernels (issue 9).

Two analysts, their servers spawned by the real hub as their own system users in
bubblewrap; code runs in their kernels.  Each test is one thing a kernel must
not be able to do: read the host's files, listen where the host can connect,
reach any service but the gateway, make forbidden system calls, catch another
analyst's login by squatting the gateway's port, or keep using its token once
its server is gone.  Only loopback addresses and the sandboxes' own network
namespaces are ever contacted (the internet check fails for want of a route,
before any packet is sent).
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.hubclient import HubBrowser, KernelSession
from tests.e2e.support import (
    PASSWORD,
    REPO,
    Gateway,
    Hub,
    assert_tokens_refused,
    restart_gateway,
    server_environ,
    server_processes,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-hub")]


class Analyst:
    def __init__(self, hub: Hub, name: str) -> None:
        self.name = name
        self.browser = HubBrowser(hub.url)
        assert self.browser.login(name, PASSWORD).status_code == 302
        self.browser.start_server()
        self.kernel = KernelSession(hub.url, name, self.browser.server_token())

    def run_json(self, code: str) -> object:
        return json.loads(self.kernel.execute(code).strip().splitlines()[-1])

    def server_port(self) -> int:
        """The host port the proxy reaches this server on (handed into the sandbox)."""
        for cmdline in server_processes(self.name).values():
            if "--listen-fd" in cmdline:
                return int(cmdline[cmdline.index("--port") + 1])
        raise AssertionError(f"no server of {self.name}")

    def close(self) -> None:
        self.kernel.close()
        self.browser.close()


@pytest.fixture(scope="module")
def pair(hub: Hub, analysts: tuple[str, str], exam_dataset: str) -> Iterator[tuple[Analyst, Analyst]]:
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda name: Analyst(hub, name), analysts)
    yield first, second
    first.close()
    second.close()


CONNECT = """
import json, socket
def connect(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return 'connected'
    except OSError as e:
        return type(e).__name__
"""


def test_files_outside_the_allow_list_cannot_be_read_or_listed(pair: tuple[Analyst, Analyst]) -> None:
    token = secrets.token_hex(6)
    planted = [Path(root) / f"dps-secret-{token}" for root in
               ("/srv", "/var/lib", "/opt", REPO, REPO / ".venv")]  # fmt: skip
    try:
        for directory in planted:
            directory.mkdir(mode=0o755)
            (directory / "rows.csv").write_text("id,income\n1,52000\n")
            (directory / "rows.csv").chmod(0o644)
        seen = pair[0].run_json(
            "import json, os\n"
            "def look(p):\n"
            "    try:\n"
            "        return sorted(os.listdir(p)) if os.path.isdir(p) else open(p).read()\n"
            "    except OSError as e:\n"
            "        return type(e).__name__\n"
            f"paths = {[str(p) for p in planted]!r}\n"
            "out = {p: [look(p), look(p + '/rows.csv'), look(os.path.dirname(p))] for p in paths}\n"
            "print(json.dumps(out))"
        )
    finally:
        for directory in planted:
            shutil.rmtree(directory, ignore_errors=True)
    assert isinstance(seen, dict)
    for path in planted:
        directory, file, parent = seen[str(path)]
        assert directory == "FileNotFoundError" and file == "FileNotFoundError", (path, seen)
        assert path.name not in parent, (path, parent)  # not even its name shows
    # /opt holds only the path to the sandbox environment; the repository not at all.
    assert seen[str(planted[2])][2] == ["dpsandbox"]
    assert seen[str(planted[3])][2] == "FileNotFoundError"


def test_other_accounts_are_missing_from_passwd(pair: tuple[Analyst, Analyst]) -> None:
    first, second = pair
    seen = first.run_json(
        "import json, pwd, grp\n"
        "print(json.dumps([sorted(p.pw_name for p in pwd.getpwall()),"
        " sorted(g.gr_name for g in grp.getgrall())]))"
    )
    assert isinstance(seen, list)
    users, groups = seen
    assert second.name not in " ".join(users) and "postgres" not in users
    assert len(users) == 3 and "root" in users and "nobody" in users
    assert len(groups) == 3


def test_a_kernels_listener_is_unreachable_and_host_sockets_are_unseen(
    pair: tuple[Analyst, Analyst], hub: Hub, gateway: Gateway
) -> None:
    first = pair[0]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    host_only = socket.create_server(("127.0.0.1", 0))
    seen = first.run_json(
        "import json, socket, threading\n"
        f"listeners = [socket.create_server(('0.0.0.0', {port})),"
        f" socket.create_server(('::', {port}), family=socket.AF_INET6)]\n"
        "got = []\n"
        "def serve(s):\n"
        "    while True:\n"
        "        c, a = s.accept(); got.append(a); c.close()\n"
        "for s in listeners: threading.Thread(target=serve, args=(s,), daemon=True).start()\n"
        "tcp = open('/proc/net/tcp').read() + open('/proc/net/tcp6').read()\n"
        "print(json.dumps(tcp.split()))"
    )
    assert isinstance(seen, list)
    for host in ("127.0.0.1", "127.0.0.2", "::1"):
        try:
            socket.create_connection((host, port), timeout=3).close()
            reached = True
        except OSError:
            reached = False
        assert not reached, f"the kernel's listener answered on the host's {host}:{port}"
    # The host's listening sockets (the hub, the proxy's API, PostgreSQL, one made here)
    # are not in the kernel's /proc/net/tcp: only its own namespace's are.
    local = {entry for entry in seen if isinstance(entry, str) and entry.count(":") == 1}
    host_ports = (int(hub.url.rsplit(":", 1)[1]), hub.proxy_api_port, 5432, host_only.getsockname()[1])
    host_only.close()
    for host_port in host_ports:
        assert not any(entry.endswith(f":{host_port:04X}") for entry in local), host_port
    assert any(entry.endswith(f":{port:04X}") for entry in local)  # its own listener is there
    assert first.run_json("print(json.dumps(got))") == []


def test_no_way_out_but_the_gateway(pair: tuple[Analyst, Analyst], hub: Hub, gateway: Gateway) -> None:
    first, second = pair
    gateway_port = int(gateway.url.rsplit(":", 1)[1])
    targets = {
        "postgresql": 5432,
        "redis": 6379,
        "proxy api": hub.proxy_api_port,
        "hub (public)": int(hub.url.rsplit(":", 1)[1]),
        "other sandbox": second.server_port(),
    }
    seen = first.run_json(
        CONNECT + f"print(json.dumps({{k: connect('127.0.0.1', p) for k, p in {targets!r}.items()}}))"
    )
    assert seen == dict.fromkeys(targets, "ConnectionRefusedError")
    # The internet: the namespace has no route at all, so the connect fails before any
    # packet is sent (192.0.2.1 is a documentation address).
    internet = first.run_json(
        "import errno, json, socket\n"
        "s = socket.socket(); s.settimeout(3)\n"
        "try:\n"
        "    s.connect(('192.0.2.1', 80)); r = 'connected'\n"
        "except OSError as e:\n"
        "    r = errno.errorcode.get(e.errno, str(e))\n"
        "print(json.dumps(r))"
    )
    assert internet == "ENETUNREACH", internet
    with socket.create_connection(("127.0.0.1", 5432), timeout=3):
        pass  # PostgreSQL is there on the host: what stopped the kernel is its sandbox
    out = first.run_json(
        "import json, os, httpx\n"
        "r = httpx.get(os.environ['DPSANDBOX_GATEWAY_URL'] + '/v1/me',\n"
        "              headers={'Authorization': 'Bearer ' + os.environ['DPSANDBOX_TOKEN']})\n"
        f"print(json.dumps([r.status_code, r.json()['username'], {gateway_port}]))"
    )
    assert out == [200, first.name, gateway_port]


def test_forbidden_system_calls_are_refused(pair: tuple[Analyst, Analyst]) -> None:
    seen = pair[0].run_json(
        "import ctypes, errno, json, os, subprocess\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def call(f, *a):\n"
        "    r = f(*a)\n"
        "    return 'ok' if r >= 0 else errno.errorcode[ctypes.get_errno()]\n"
        "SYS_keyctl, SYS_bpf = 250, 321\n"
        "out = {\n"
        " 'mount': call(libc.mount, b'none', b'/tmp', b'tmpfs', 0, None),\n"
        " 'keyctl': call(libc.syscall, SYS_keyctl, 0, 0, 0, 0, 0),\n"
        " 'bpf': call(libc.syscall, SYS_bpf, 0, 0, 0),\n"
        " 'ptrace': call(libc.ptrace, 0, 0, 0, 0),\n"
        " 'unshare(CLONE_NEWUSER)': call(libc.unshare, 0x10000000),\n"
        " 'unshare(CLONE_NEWNET)': call(libc.unshare, 0x40000000),\n"
        "}\n"
        "p = subprocess.run(['unshare', '--user', '--map-root-user', 'true'], capture_output=True)\n"
        "out['unshare -U'] = p.returncode\n"
        "print(json.dumps(out))"
    )
    assert isinstance(seen, dict)
    assert seen.pop("unshare -U") != 0
    assert seen == dict.fromkeys(seen, "EPERM"), seen


def test_squatting_the_gateway_port_catches_nothing(
    pair: tuple[Analyst, Analyst], hub: Hub, gateway: Gateway, e2e_dir: Path
) -> None:
    """While the gateway is down, a kernel binds its port wherever it can; another
    analyst's login and spawn never reach it, and it gains nobody's rights."""
    squatter = pair[0]
    port = int(gateway.url.rsplit(":", 1)[1])
    victim = gateway.add_user(f"vic{secrets.token_hex(3)}", "researcher")
    gateway.proc.terminate()
    gateway.proc.wait(15)
    try:
        bound = squatter.run_json(
            "import json, socket, threading\n"
            "caught, bound = [], []\n"
            "def serve(s):\n"
            "    while True:\n"
            "        c, _ = s.accept(); caught.append(c.recv(65536).decode(errors='replace')); c.close()\n"
            "for fam, host in [(socket.AF_INET, '127.0.0.1'), (socket.AF_INET, '0.0.0.0'),\n"
            "                  (socket.AF_INET6, '::1'), (socket.AF_INET6, '::')]:\n"
            "    try:\n"
            f"        s = socket.create_server((host, {port}), family=fam)\n"
            "    except OSError as e:\n"
            "        continue\n"
            "    bound.append(host); threading.Thread(target=serve, args=(s,), daemon=True).start()\n"
            "print(json.dumps(bound))"
        )
        assert bound, "the kernel should be able to bind the port in its own namespace"
        # The hub checks a password with the gateway: down, so the login fails...
        browser = HubBrowser(hub.url)
        assert browser.login(victim, PASSWORD).status_code != 302
    finally:
        restart_gateway(gateway, e2e_dir)
    # ... and once it is back, the victim logs in and spawns.
    assert browser.login(victim, PASSWORD).status_code == 302
    browser.start_server()
    browser.stop_server()
    browser.close()
    caught = squatter.run_json("import json; print(json.dumps(caught))")
    assert caught == [], caught
    # Nothing it holds makes it anyone else: its token is its own and cannot mint others.
    out = squatter.run_json(
        "import json, os, httpx\n"
        "gw = os.environ['DPSANDBOX_GATEWAY_URL']\n"
        "auth = {'Authorization': 'Bearer ' + os.environ['DPSANDBOX_TOKEN']}\n"
        "me = httpx.get(gw + '/v1/me', headers=auth).json()['username']\n"
        f"mint = httpx.post(gw + '/v1/auth/sandbox-token', json={{'username': {victim!r}}}, headers=auth)\n"
        f"login = httpx.post(gw + '/v1/auth/token',\n"
        f"                   json={{'username': {victim!r}, 'password': 'guess-guess'}})\n"
        "print(json.dumps([me, mint.status_code, login.status_code]))"
    )
    assert out == [squatter.name, 401, 401]


def test_a_stopped_servers_token_and_its_refreshes_are_refused(
    pair: tuple[Analyst, Analyst], gateway: Gateway
) -> None:
    second = pair[1]
    token = server_environ(second.name)["DPSANDBOX_TOKEN"]
    refreshed = second.run_json(
        "import json, os, httpx\n"
        "r = httpx.post(os.environ['DPSANDBOX_GATEWAY_URL'] + '/v1/auth/refresh',\n"
        "               headers={'Authorization': 'Bearer ' + os.environ['DPSANDBOX_TOKEN']})\n"
        "print(json.dumps(r.json()['access_token']))"
    )
    assert isinstance(refreshed, str)
    for held in (token, refreshed):
        me = httpx.get(f"{gateway.url}/v1/me", headers={"Authorization": f"Bearer {held}"})
        assert me.status_code == 200
    second.kernel.close()
    second.browser.stop_server()
    assert_tokens_refused(gateway, [token, refreshed])


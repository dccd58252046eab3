"""Analysts' servers in real containers: what a kernel can see, reach, use and do.

A real gateway (of this module alone: the squatting test stops and restarts it), the
real hub with ``DPSANDBOX_ISOLATION=docker``, two analysts' containers from the sandbox
image built on this machine, code run in their kernels.  The tests run in file order.

Network safety: nothing here sends a packet beyond loopback and the hub's own Docker
network; "no way out" is shown by the missing route (a connect fails in the container
with ENETUNREACH, so no packet is ever sent).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from sandbox.hub.docker_network import network_names
from sandbox.hub.language import templates_source
from tests.e2e.docker_support import (
    Box,
    bridge_address,
    container_of,
    docker_client,
    docker_hub,
    restart_gateway,
    sandbox_image,
    stop_gateway,
)
from tests.e2e.hubclient import HubBrowser
from tests.e2e.support import (
    PASSWORD,
    REPO,
    Gateway,
    Hub,
    add_exam_dataset,
    free_port,
    run_directory,
    running_gateway,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-docker")]
TEMPLATES = REPO / "notebooks_templates"
NOTEBOOKS = sorted(
    str(p.relative_to(TEMPLATES)) for p in TEMPLATES.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
)


@pytest.fixture(scope="module")
def image() -> str:
    docker_client()
    return sandbox_image()


@pytest.fixture(scope="module")
def run_dir() -> Iterator[Path]:
    with run_directory("docker-", keep=bool(os.environ.get("DPSANDBOX_E2E_KEEP"))) as path:
        yield path


@pytest.fixture(scope="module")
def own_gateway(image: str, run_dir: Path) -> Iterator[Gateway]:
    with running_gateway(run_dir) as gw:
        add_exam_dataset(gw, run_dir)
        try:
            yield gw
        finally:
            if gw.proc.poll() is None:  # the one restarted by a test
                gw.proc.terminate()
                gw.proc.wait(15)


@pytest.fixture(scope="module")
def hub(own_gateway: Gateway, run_dir: Path) -> Iterator[Hub]:
    with docker_hub(own_gateway, run_dir) as hub:
        yield hub


@pytest.fixture(scope="module")
def boxes(hub: Hub, own_gateway: Gateway) -> Iterator[tuple[Box, Box]]:
    suffix = secrets.token_hex(3)
    names = [
        own_gateway.add_user(f"dka{suffix}", "researcher"),
        own_gateway.add_user(f"dkb{suffix}", "researcher"),
    ]
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda name: Box(hub, name).start(), names)
    yield first, second
    for box in (first, second):
        box.close()


def test_the_hub_says_it_runs_docker_sandboxes(hub: Hub) -> None:
    assert "isolation: docker" in hub.log()


def test_each_container_is_locked_down(boxes: tuple[Box, Box], own_gateway: Gateway, image: str) -> None:
    first, _ = boxes
    attrs = container_of(own_gateway, first.username).attrs
    host = attrs["HostConfig"]
    assert attrs["Config"]["Image"] == image
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert any(opt.startswith("seccomp=") for opt in host["SecurityOpt"])
    assert host["CgroupnsMode"] == "private"
    assert (host["Memory"], host["MemorySwap"]) == (640 * 2**20, 640 * 2**20)
    assert host["NanoCpus"] == 10**9 or host["CpuQuota"] == 100_000
    assert host["PidsLimit"] == 256
    assert host["Tmpfs"]["/tmp"].endswith(f"size={2**30}")
    assert host["Privileged"] is False
    names = network_names(str(own_gateway.home / "hub"))
    assert list(attrs["NetworkSettings"]["Networks"]) == [names.network]
    network = docker_client().networks.get(names.network).attrs
    assert network["Internal"] is True
    assert network["Options"]["com.docker.network.bridge.enable_icc"] == "false"

    seen = first.run_json(
        "import json, os\n"
        "lines = open('/proc/self/status').read().splitlines()\n"
        "status = dict(l.split(':\\t', 1) for l in lines if ':\\t' in l)\n"
        "def write(p):\n"
        "    try:\n"
        "        open(p, 'w').close(); return 'written'\n"
        "    except OSError as e:\n"
        "        return errno.errorcode[e.errno]\n"
        "import errno\n"
        "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'cap': status['CapEff'].strip(),\n"
        "  'nnp': status['NoNewPrivs'].strip(), 'seccomp': status['Seccomp'].strip(),\n"
        "  'cgroup': open('/proc/self/cgroup').read().splitlines()[:3],\n"
        "  'root': write('/usr/planted'), 'etc': write('/etc/planted'), 'home': os.path.expanduser('~'),\n"
        "  'home_write': write(os.path.expanduser('~/ok.txt')), 'tmp': write('/tmp/ok.txt')}))"
    )
    assert (seen["uid"], seen["gid"]) == (61000, 61000)
    assert seen["cap"] == "0000000000000000"
    assert (seen["nnp"], seen["seccomp"]) == ("1", "2")
    assert all(line.endswith(":/") for line in seen["cgroup"]), seen["cgroup"]  # own cgroup namespace
    assert seen["root"] == seen["etc"] == "EROFS"
    assert (seen["home"], seen["home_write"], seen["tmp"]) == ("/home/analyst", "written", "written")


def test_scenario_notebooks_wait_in_the_new_home(boxes: tuple[Box, Box]) -> None:
    source = templates_source(TEMPLATES, "en")  # no browser language, no DPSANDBOX_LANG: English
    expected = sorted(p.name for p in source.glob("*.ipynb"))
    seen = boxes[0].run_json(
        "import json, os, pathlib\n"
        "t = pathlib.Path.home() / 'templates'\n"
        "print(json.dumps([sorted(p.name for p in t.glob('*.ipynb')), os.environ['DPSANDBOX_LANG']]))"
    )
    assert expected and seen == [expected, "en"]


def test_host_files_are_not_there(boxes: tuple[Box, Box], own_gateway: Gateway) -> None:
    token = secrets.token_hex(6)
    planted = [
        Path(base) / f"dpsandbox-planted-{token}"
        for base in ("/srv", "/var/lib", "/opt", str(REPO), str(REPO / ".venv"), str(own_gateway.home))
    ]
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("secret rows")
    try:
        seen = boxes[0].run_json(
            "import json, os\n"
            "def look(p):\n"
            "    try:\n"
            "        return open(p).read()\n"
            "    except OSError as e:\n"
            "        return type(e).__name__\n"
            "def listed(d, name):\n"
            "    try:\n"
            "        return name in os.listdir(d)\n"
            "    except OSError:\n"
            "        return False\n"
            f"paths = {[str(p) for p in planted]!r}\n"
            "seen = {p: [look(p), listed(os.path.dirname(p), os.path.basename(p))] for p in paths}\n"
            "print(json.dumps(seen))"
        )
    finally:
        for path in planted:
            path.unlink(missing_ok=True)
    for path in planted:
        assert seen[str(path)] == ["FileNotFoundError", False], f"{path} is visible: {seen[str(path)]}"
    gateway_files = boxes[0].run_json(
        f"import json, os; print(json.dumps([os.path.exists(p) for p in "
        f"{[str(own_gateway.home / 'state' / 'hub_secret'), str(own_gateway.home / 'dpsandbox.sqlite')]!r}]))"
    )
    assert gateway_files == [False, False]


def test_a_listener_in_the_kernel_is_not_on_the_host(boxes: tuple[Box, Box], own_gateway: Gateway) -> None:
    port = free_port()
    first, _ = boxes
    first.run(f"import socket\nlistener = socket.create_server(('0.0.0.0', {port}))\nlistener.listen()")
    bridge = bridge_address(own_gateway)
    for address in ("127.0.0.1", bridge):
        with pytest.raises(OSError):
            socket.create_connection((address, port), timeout=2).close()
    # The kernel sees its own sockets only: not the gateway's, the hub's or the proxy's.
    host_ports = {int(own_gateway.url.rsplit(":", 1)[1]), int(first.hub.url.rsplit(":", 1)[1])}
    seen = first.run_json(
        "import json\n"
        "ports = set()\n"
        "for table in ('/proc/net/tcp', '/proc/net/tcp6'):\n"
        "    try:\n"
        "        lines = open(table).read().splitlines()[1:]\n"
        "    except OSError:\n"
        "        continue\n"
        "    ports |= {int(l.split()[1].rsplit(':', 1)[1], 16) for l in lines if l.split()[3] == '0A'}\n"
        "print(json.dumps(sorted(ports)))"
    )
    assert port in seen and 8888 in seen
    assert not host_ports & set(seen), seen
    first.run("listener.close()")


def test_no_way_out_but_the_gateway(boxes: tuple[Box, Box], own_gateway: Gateway, hub: Hub) -> None:
    first, second = boxes
    bridge = bridge_address(own_gateway)
    other = container_of(own_gateway, second.username).attrs["NetworkSettings"]["Networks"]
    other_ip = next(iter(other.values()))["IPAddress"]
    with socket.create_server((bridge, 0)) as host_service:  # a service on the bridge address
        host_port = host_service.getsockname()[1]
        targets = {
            "internet": ["192.0.2.1", 80],  # documentation address: must fail before any packet
            "postgres": [bridge, 5432],
            "redis": [bridge, 6379],
            "host service on the bridge": [bridge, host_port],
            "proxy api": [bridge, hub.proxy_api_port],
            "proxy": [bridge, int(hub.url.rsplit(":", 1)[1])],
            "other container": [other_ip, 8888],
        }
        seen = first.run_json(
            "import json, socket, errno\n"
            "def connect(host, port):\n"
            "    s = socket.socket(); s.settimeout(3)\n"
            "    try:\n"
            "        s.connect((host, port)); return 'connected'\n"
            "    except socket.timeout:\n"
            "        return 'timeout'\n"
            "    except OSError as e:\n"
            "        return errno.errorcode.get(e.errno, str(e))\n"
            "    finally:\n"
            "        s.close()\n"
            f"targets = {json.dumps(targets)}\n"
            "routes = [l.split() for l in open('/proc/net/route').read().splitlines()[1:]]\n"
            "print(json.dumps({'routes': [r[1] for r in routes],\n"
            "  'out': {k: connect(*v) for k, v in targets.items()}}))",
            timeout=90,
        )
    assert "00000000" not in seen["routes"], f"a default route: {seen['routes']}"
    assert seen["out"]["internet"] == "ENETUNREACH"
    for what, result in seen["out"].items():
        assert result != "connected", f"the kernel reached {what}"
    # ... and the gateway, through the hub's forwarder on the bridge address.
    released = first.run_json(
        "import json, os\n"
        "from sandbox import connect\n"
        "gw = connect()\n"
        "df = gw.dataset('exam').count(epsilon=0.1)\n"
        "print(json.dumps([os.environ['DPSANDBOX_GATEWAY_URL'], int(df.iloc[0, 0])]))"
    )
    assert released[0].startswith(f"http://{bridge}:")
    assert 3000 < released[1] < 5000


def test_syscalls_are_refused(boxes: tuple[Box, Box]) -> None:
    seen = boxes[0].run_json(
        "import ctypes, errno, json, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def call(name, *args):\n"
        "    rc = getattr(libc, name)(*args)\n"
        "    return 'ok' if rc == 0 else errno.errorcode[ctypes.get_errno()]\n"
        "SYS_keyctl, SYS_bpf = 250, 321\n"
        "res = {\n"
        "  'mount': call('mount', b'none', b'/tmp', b'tmpfs', 0, None),\n"
        "  'keyctl': call('syscall', SYS_keyctl, 0, 0, 0, 0, 0),\n"
        "  'bpf': call('syscall', SYS_bpf, 0, 0, 0),\n"
        "  'userns': call('unshare', 0x10000000),\n"
        "  'ptrace': call('ptrace', 16, os.getppid(), None, None),\n"  # PTRACE_ATTACH the server
        "}\n"
        "print(json.dumps(res))"
    )
    assert seen["mount"] == "EPERM"
    assert seen["keyctl"] in ("EPERM", "ENOSYS")
    assert seen["bpf"] == "EPERM"
    assert seen["userns"] == "EPERM"
    assert seen["ptrace"] == "EPERM"


def test_the_pids_limit_holds(boxes: tuple[Box, Box]) -> None:
    seen = boxes[0].run_json(
        "import json, threading\n"
        "stop = threading.Event(); started = []\n"
        "try:\n"
        "    for _ in range(1000):\n"
        "        t = threading.Thread(target=stop.wait); t.start(); started.append(t)\n"
        "    error = None\n"
        "except RuntimeError as e:\n"
        "    error = str(e)\n"
        "stop.set()\n"
        "for t in started: t.join()\n"
        "print(json.dumps([len(started), error]))",
        timeout=120,
    )
    assert seen[1] and "thread" in seen[1], seen
    assert 50 < seen[0] < 256


def test_writing_past_the_home_quota_fails_and_others_carry_on(boxes: tuple[Box, Box]) -> None:
    first, second = boxes
    seen = first.run_json(
        "import json, os\n"
        "written = 0\n"
        "try:\n"
        "    with open(os.path.expanduser('~/big.bin'), 'wb') as f:\n"
        "        for _ in range(256):\n"
        "            f.write(b'\\0' * 2**20); f.flush(); os.fsync(f.fileno()); written += 1\n"
        "    error = None\n"
        "except OSError as e:\n"
        "    error = e.strerror\n"
        "st = os.statvfs(os.path.expanduser('~'))\n"
        "print(json.dumps([written, error, st.f_blocks * st.f_frsize]))",
        timeout=120,
    )
    assert seen[1] == "No space left on device", seen
    assert 32 < seen[0] < 64 and seen[2] <= 64 * 2**20
    count = second.run(
        "from sandbox import connect\nprint(int(connect().dataset('exam').count(epsilon=0.1).iloc[0, 0]))"
    )
    assert int(count.strip().splitlines()[-1]) > 3000
    first.run("import os; os.remove(os.path.expanduser('~/big.bin'))")


def test_the_memory_limit_kills_a_big_allocation_and_the_server_lives(boxes: tuple[Box, Box]) -> None:
    first, _ = boxes
    out = first.run(
        "import subprocess, sys\n"
        "grow = 'b = bytearray(1280 * 2**20)\\nfor i in range(0, len(b), 4096): b[i] = 1'\n"
        "big = subprocess.run([sys.executable, '-c', grow])\n"
        "print('RESULT', big.returncode)",
        timeout=120,
    )
    assert "RESULT -9" in out  # twice the limit: killed by the OOM killer
    assert first.browser is not None
    model = first.browser.api("GET", f"/users/{first.username}").json()
    assert model["servers"][""]["ready"] is True
    assert "alive" in first.run("print('alive')")


@pytest.fixture(scope="module")
def scenario_ready(boxes: tuple[Box, Box], own_gateway: Gateway, run_dir: Path) -> Iterator[str]:
    """Every demo dataset, the analysts' grants, and an admin releasing held queries."""
    from gateway.demo_data import export_demo_data

    for name, path in export_demo_data(run_dir / "demo").items():
        if name != "exam":  # already registered
            own_gateway.cli("dataset", "add", name, "--data", str(path))
    admin = own_gateway.add_user(f"adm{secrets.token_hex(3)}", "admin")
    stop = threading.Event()

    def sign_in() -> dict[str, str]:
        login = httpx.post(f"{own_gateway.url}/v1/auth/token", json={"username": admin, "password": PASSWORD})
        login.raise_for_status()
        return {"Authorization": f"Bearer {login.json()['access_token']}"}

    headers = sign_in()

    def reviewer() -> None:  # restricted data: an admin releases each held query
        nonlocal headers
        while not stop.wait(0.3):
            try:
                held = httpx.get(f"{own_gateway.url}/v1/queries?status=pending_review", headers=headers)
                if held.status_code == 401:  # the admin's access token expired (a long, loaded run)
                    headers = sign_in()
                    continue
                held.raise_for_status()
                for query in held.json():
                    httpx.post(
                        f"{own_gateway.url}/v1/queries/{query['id']}/release",
                        json={"note": "ok"},
                        headers=headers,
                    )
            except httpx.HTTPError:
                continue

    thread = threading.Thread(target=reviewer, daemon=True)
    thread.start()
    try:
        yield admin
    finally:
        stop.set()
        thread.join(timeout=10)


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_scenario_notebook_runs_in_a_container(
    boxes: tuple[Box, Box], own_gateway: Gateway, scenario_ready: str, notebook: str
) -> None:
    """Each notebook in a container, run by an analyst of its own (fresh grants, own budget)."""
    user = own_gateway.add_user(f"nb{secrets.token_hex(3)}", "researcher")
    for dataset, epsilon in (("flights", "5"), ("credit", "3")):
        own_gateway.cli("grant", "add", "--user", user, "--dataset", dataset, "--epsilon", epsilon)
    secret = (own_gateway.home / "state" / "hub_secret").read_text().strip()
    token = httpx.post(
        f"{own_gateway.url}/v1/auth/sandbox-token", json={"username": user}, headers={"X-Hub-Secret": secret}
    ).json()["access_token"]
    seen = boxes[1].run_json(
        "import json, os, subprocess, pathlib\n"
        "src = pathlib.Path.home() / 'scenario.ipynb'\n"
        f"src.write_text({(TEMPLATES / notebook).read_text()!r})\n"
        "out = pathlib.Path('/tmp/executed.ipynb')\n"
        f"env = dict(os.environ, DPSANDBOX_TOKEN={token!r}, DPSANDBOX_TOKEN_FILE='/tmp/{user}.token')\n"
        "run = subprocess.run(['jupyter', 'nbconvert', '--to', 'notebook', '--execute',\n"
        "    '--ExecutePreprocessor.timeout=900', '--output', str(out), str(src)],\n"
        "    capture_output=True, text=True, cwd=str(src.parent), env=env)\n"
        "errors = []\n"
        "if run.returncode == 0:\n"
        "    nb = json.loads(out.read_text())\n"
        "    outputs = [o for c in nb['cells'] for o in c.get('outputs', [])]\n"
        "    errors = [o for o in outputs if o.get('output_type') == 'error']\n"
        "print(json.dumps([run.returncode, run.stderr[-3000:], len(errors)]))",
        timeout=1200,
    )
    assert seen[0] == 0 and seen[2] == 0, seen[1]


def test_squatting_the_gateway_port_catches_nothing(
    boxes: tuple[Box, Box], own_gateway: Gateway, hub: Hub
) -> None:
    first, second = boxes
    port = int(own_gateway.url.rsplit(":", 1)[1])
    stop_gateway(own_gateway)
    try:
        bound = first.run_json(
            "import json, socket, threading\n"
            "caught, squats = [], []\n"
            "addrs = {'0.0.0.0', '127.0.0.1', socket.gethostbyname(socket.gethostname())}\n"
            f"addrs |= {{'{bridge_address(own_gateway)}'}}\n"
            "result = {}\n"
            "for a in sorted(addrs):\n"
            "    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "    try:\n"
            f"        s.bind((a, {port})); s.listen(); squats.append(s); result[a] = 'bound'\n"
            "    except OSError as e:\n"
            "        result[a] = e.strerror\n"
            "def serve(s):\n"
            "    while True:\n"
            "        try:\n"
            "            c, _ = s.accept()\n"
            "        except OSError:\n"
            "            return\n"
            "        caught.append(c.recv(65536)); c.close()\n"
            "for s in squats:\n"
            "    threading.Thread(target=serve, args=(s,), daemon=True).start()\n"
            "print(json.dumps(result))"
        )
        assert "bound" in bound.values(), bound  # it could bind in its own network namespace
        assert bound.get(bridge_address(own_gateway)) != "bound"
        # Another analyst logs in and spawns meanwhile: the hub asks the gateway on loopback.
        late = HubBrowser(hub.url)
        try:
            response = late.login(second.username, PASSWORD)
            assert response.status_code != 302  # the gateway is down: no login
        finally:
            late.close()
        assert second.browser is not None
        stopped = second.browser.api("DELETE", f"/users/{second.username}/server")
        assert stopped.status_code in (202, 204)
        time.sleep(2)
        second.browser.api("POST", f"/users/{second.username}/server", json={})  # fails: no token
        time.sleep(3)
        caught = first.run_json("print(json.dumps([len(c) for c in caught]))")
        assert caught == [], f"the squatter received {len(caught)} connections"
    finally:
        restart_gateway(own_gateway)
    # What the kernel holds: its own token, nothing else.
    held = first.run_json(
        "import json, os\n"
        "names = [k for k in os.environ if 'SECRET' in k or 'PASSWORD' in k or k.startswith('DPSANDBOX')]\n"
        "print(json.dumps(sorted(names)))"
    )
    assert held == ["DPSANDBOX_GATEWAY_URL", "DPSANDBOX_LANG", "DPSANDBOX_TOKEN"]
    me = first.run_json(
        "import json, os, httpx\n"
        "url, token = os.environ['DPSANDBOX_GATEWAY_URL'], os.environ['DPSANDBOX_TOKEN']\n"
        "me = httpx.get(f'{url}/v1/me', headers={'Authorization': f'Bearer {token}'}).json()\n"
        f"other = httpx.post(f'{{url}}/v1/auth/sandbox-token', json={{'username': {second.username!r}}})\n"
        "print(json.dumps([me['username'], other.status_code]))"
    )
    assert me == [first.username, 401]


def test_tokens_die_with_the_container(boxes: tuple[Box, Box], own_gateway: Gateway) -> None:
    first, _ = boxes
    token = first.run("import os; print(os.environ['DPSANDBOX_TOKEN'])").strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{own_gateway.url}/v1/me", headers=headers).status_code == 200
    assert first.browser is not None
    if first.kernel is not None:
        first.kernel.close()
        first.kernel = None
    first.browser.stop_server()
    assert docker_client().containers.list(all=True, filters={"name": f"-{first.username}"}) == []
    assert httpx.get(f"{own_gateway.url}/v1/me", headers=headers).status_code == 401
    query = {"dataset": "exam", "select": [{"agg": "count"}], "epsilon": 0.1}
    assert httpx.post(f"{own_gateway.url}/v1/queries", json=query, headers=headers).status_code == 401
    assert httpx.post(f"{own_gateway.url}/v1/auth/refresh", headers=headers).status_code == 401


def test_a_new_server_gets_a_fresh_home_mount_and_keeps_the_files(
    boxes: tuple[Box, Box], own_gateway: Gateway
) -> None:
    """Self-contained: writes its own file, stops the server and starts a new one (it
    passes alone, whether or not an earlier test left the server stopped)."""
    first, _ = boxes
    assert first.browser is not None
    if first.kernel is None:  # test_tokens_die_with_the_container stopped the server
        first.start()
    name = f"kept-{secrets.token_hex(4)}.txt"
    first.run(f"import pathlib; (pathlib.Path.home() / {name!r}).write_text('kept')")
    before = container_of(own_gateway, first.username).id
    assert first.kernel is not None
    first.kernel.close()
    first.kernel = None
    first.browser.stop_server()
    first.start()
    assert container_of(own_gateway, first.username).id != before  # a new container
    read = f"import pathlib; print((pathlib.Path.home() / {name!r}).read_text())"
    assert first.run(read).strip().splitlines()[-1] == "kept"


def test_stopping_the_hub_removes_every_container(
    boxes: tuple[Box, Box], hub: Hub, own_gateway: Gateway
) -> None:
    from sandbox.hub.run import stop_hub

    names = network_names(str(own_gateway.home / "hub"))
    for box in boxes:
        box.close()
    stop_hub(hub.proc)
    deadline = time.monotonic() + 30
    while docker_client().containers.list(all=True, filters={"name": names.container_prefix}):
        assert time.monotonic() < deadline, "containers outlived the hub"
        time.sleep(0.5)
    mounts = Path("/proc/mounts").read_text()
    assert str(own_gateway.home / "hub" / "docker-homes" / "mnt") not in mounts

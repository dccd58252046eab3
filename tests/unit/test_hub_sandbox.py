"""The hub's building blocks without a hub: names, bubblewrap lines, cgroups, gateway login."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from tornado import web

from sandbox.hub import build_env
from sandbox.hub.authenticator import GatewayAuthenticator
from sandbox.hub.cgroups import CgroupLimits, SandboxCgroup
from sandbox.hub.firewall import SandboxFirewall, endpoint_of
from sandbox.hub.gateway_api import (
    GatewayClient,
    GatewayRefused,
    GatewayUnavailable,
    InvalidCredentials,
    Token,
)
from sandbox.hub.isolation import SandboxLayout, bwrap_command, children_of, system_username

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a loop of its own thread (another test may have left one running here)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


# -- system user names -------------------------------------------------------------


@pytest.mark.parametrize("name", ["alice", "bob_2", "x-y"])
def test_safe_names_map_to_prefix_plus_name(name: str) -> None:
    assert system_username(name) == f"dps-{name}"


@pytest.mark.parametrize(
    "name", ["Alice", "a.b", "名前", "a" * 40, "bob-1a2b3c4d", "-x", "ali ce", "../../etc"]
)
def test_other_names_get_a_safe_hashed_account(name: str) -> None:
    account = system_username(name)
    assert len(account) <= 32
    assert account.startswith("dps-")
    assert all(ch.isascii() and (ch.isalnum() or ch in "-_") for ch in account)
    assert account == system_username(name)  # stable across restarts


def test_distinct_hub_names_never_share_an_account() -> None:
    names = ["Alice", "alice", "a.lice", "a-lice", "a" * 40, "a" * 41, "bob", "bob-" + "0" * 8]
    assert len({system_username(n) for n in names}) == len(names)


def test_a_prefix_that_is_not_a_login_name_is_refused() -> None:
    with pytest.raises(ValueError, match="prefix"):
        system_username("alice", prefix="1bad/")


# -- bubblewrap ----------------------------------------------------------------------


def test_bwrap_command_is_an_allow_list_with_its_own_namespaces(tmp_path: Path) -> None:
    env = tmp_path / "env"
    home = tmp_path / "home"
    layout = SandboxLayout(
        home=home, sandbox_home=Path("/home/dps-alice"), readonly=(env,),
        run_dir=tmp_path / "run", tmp_size=2**20,
    )  # fmt: skip
    cmd = bwrap_command("/usr/bin/bwrap", layout, ["python", "init.py"],
                        data_fds={"/etc/passwd": 5, "/etc/group": 6}, seccomp_fd=7)
    line = " ".join(cmd)
    assert "--ro-bind / /" not in line  # nothing of the host unless named
    binds = [cmd[i + 1] for i, arg in enumerate(cmd) if arg in ("--ro-bind", "--bind")]
    allowed = ("/usr", "/etc/", "/sys/devices/system/cpu", "/lib", "/bin", "/sbin", str(tmp_path))
    assert all(src.startswith(allowed) for src in binds), binds
    assert not any(src.startswith(("/etc/passwd", "/etc/group", "/etc/shadow")) for src in binds)
    assert "--ro-bind-data 5 /etc/passwd" in line and "--ro-bind-data 6 /etc/group" in line
    assert f"--ro-bind {env} {env}" in line
    assert f"--ro-bind {tmp_path / 'run'} /run/dpsandbox" in line
    assert f"--bind {home} /home/dps-alice" in line
    assert f"--size {2**20} --tmpfs /tmp" in line and f"--size {2**20} --tmpfs /var/tmp" in line
    for flag in ("--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
                 "--unshare-cgroup-try", "--die-with-parent", "--new-session"):
        assert flag in cmd
    assert "--seccomp 7" in line
    # The root is made read-only after every mount point was created in it.
    assert line.index("--remount-ro /") > line.index("--bind")
    assert cmd[-3:] == ["--", "python", "init.py"]


def test_children_of_reads_the_process_tree(tmp_path: Path) -> None:
    for pid, ppid, comm in [(10, 1, "bwrap"), (11, 10, "b) w (rap"), (12, 11, "python"), (13, 10, "x")]:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} ({comm}) S {ppid} 1 1 0 -1\n")
    (tmp_path / "self").mkdir()
    assert children_of(10, tmp_path) == [11, 13]
    assert children_of(11, tmp_path) == [12]
    assert children_of(12, tmp_path) == []


# -- the egress filter ----------------------------------------------------------------


def test_firewall_rules_accept_only_the_named_endpoints_for_sandbox_users() -> None:
    rules = SandboxFirewall("dpsandbox_t").rules([("127.0.0.1", 8600), ("::1", 8081)]).splitlines()
    assert rules[:2] == ["add table inet dpsandbox_t", "add set inet dpsandbox_t uids { typeof meta skuid; }"]
    assert "add rule inet dpsandbox_t output meta skuid != @uids accept" in rules
    accepts = [r for r in rules if r.endswith(" accept") and "daddr" in r]
    assert accepts == [
        "add rule inet dpsandbox_t output ip daddr 127.0.0.1 tcp dport 8600 accept",
        "add rule inet dpsandbox_t output ip6 daddr ::1 tcp dport 8081 accept",
    ]
    assert rules[-1] == "add rule inet dpsandbox_t output reject"  # everything else
    assert "delete" not in " ".join(rules)  # reinstalling keeps the running sandboxes' uids


def test_endpoints_come_from_urls() -> None:
    assert endpoint_of("http://127.0.0.1:8600") == ("127.0.0.1", 8600)
    assert endpoint_of("https://gateway.internal/v1") == ("gateway.internal", 443)


# -- cgroups -------------------------------------------------------------------------


def fake_cgroup_root(root: Path) -> Path:
    for controller in ("memory", "cpu", "pids"):
        (root / controller).mkdir(parents=True)
        (root / controller / "tasks").write_text("")
    return root


@pytest.mark.skipif(os.geteuid() != 0, reason="the cgroup code refuses to run without root")
def test_cgroup_setup_writes_the_limits(tmp_path: Path) -> None:
    cgroup = SandboxCgroup("dps-alice", root=fake_cgroup_root(tmp_path))
    applied = cgroup.setup(CgroupLimits(memory_bytes=2**30, cpus=1.5, pids=100))
    assert applied == ["memory=1024M", "cpu=1.5", "pids=100"]
    group = tmp_path / "memory" / "dpsandbox" / "dps-alice"
    assert (group / "memory.limit_in_bytes").read_text() == str(2**30)
    assert (tmp_path / "cpu/dpsandbox/dps-alice/cpu.cfs_quota_us").read_text() == "150000"
    assert (tmp_path / "pids/dpsandbox/dps-alice/pids.max").read_text() == "100"


@pytest.mark.skipif(os.geteuid() != 0, reason="the cgroup code refuses to run without root")
def test_cgroup_v2_writes_the_unified_files(tmp_path: Path) -> None:
    """A temporary directory stands in for a v2 /sys/fs/cgroup (this host is v1)."""
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    cgroup = SandboxCgroup("dps-alice", root=tmp_path)
    assert cgroup.version == 2
    applied = cgroup.setup(CgroupLimits(memory_bytes=2**30, cpus=1.5, pids=100))
    assert applied == ["memory=1024M", "cpu=1.5", "pids=100"]
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    assert (tmp_path / "dpsandbox" / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    group = tmp_path / "dpsandbox" / "dps-alice"
    assert (group / "memory.max").read_text() == str(2**30)
    assert (group / "memory.swap.max").read_text() == "0"
    assert (group / "cpu.max").read_text() == "150000 100000"
    assert (group / "pids.max").read_text() == "100"
    (group / "cgroup.procs").write_text("")
    assert cgroup.pids() == set()
    assert not (tmp_path / "memory").exists()  # nothing of v1 written
    join = cgroup.join_fn()
    (group / "cgroup.procs").write_text("")
    join()
    procs = (group / "cgroup.procs").read_text().split()
    assert procs == [str(os.getpid())]


def test_cgroup_v1_is_preferred_where_it_carries_the_controllers(tmp_path: Path) -> None:
    root = fake_cgroup_root(tmp_path)
    (root / "cgroup.controllers").write_text("")  # a hybrid host's mount
    assert SandboxCgroup("dps-alice", root=root).version == 1
    assert SandboxCgroup("dps-alice", root=tmp_path / "none").version is None


# -- the gateway client and the authenticator ----------------------------------------


def fake_gateway(users: dict[str, tuple[str, str]]) -> httpx.MockTransport:
    """Users: name -> (password, role). Tokens are 'tok-<name>'."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/auth/token":
            body = json.loads(request.content)
            known = users.get(body["username"])
            if known is None or known[0] != body["password"]:
                return httpx.Response(
                    401, json={"error": {"code": "unauthenticated", "message": "bad login"}}
                )
            return httpx.Response(200, json={"access_token": f"tok-{body['username']}", "expires_in": 60})
        if request.url.path == "/v1/me":
            name = request.headers["Authorization"].removeprefix("Bearer tok-")
            return httpx.Response(200, json={"username": name, "role": users[name][1], "org": None})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})

    return httpx.MockTransport(handle)


def authenticator(users: dict[str, tuple[str, str]]) -> GatewayAuthenticator:
    auth = GatewayAuthenticator(gateway_url="http://gw.test")
    auth.http_transport = fake_gateway(users)
    return auth


USERS = {"alice": ("pw-alice", "researcher"), "acme1": ("pw-acme", "enterprise"),
         "root1": ("pw-root", "admin"), "audit1": ("pw-audit", "auditor")}  # fmt: skip


@pytest.mark.parametrize("name", ["alice", "acme1"])
def test_analysts_log_in_with_their_gateway_name(name: str) -> None:
    auth = authenticator(USERS)
    result = run_async(auth.authenticate(None, {"username": name, "password": USERS[name][0]}))
    assert result == {"name": name}


def test_wrong_password_or_empty_form_is_a_plain_failure() -> None:
    auth = authenticator(USERS)
    assert run_async(auth.authenticate(None, {"username": "alice", "password": "nope"})) is None
    assert run_async(auth.authenticate(None, {"username": "alice", "password": ""})) is None


@pytest.mark.parametrize("name", ["root1", "audit1"])
def test_admins_and_auditors_are_sent_to_the_console(name: str) -> None:
    auth = authenticator(USERS)
    with pytest.raises(web.HTTPError) as caught:
        run_async(auth.authenticate(None, {"username": name, "password": USERS[name][0]}))
    assert caught.value.status_code == 403
    assert "http://gw.test/console" in str(caught.value.log_message)


def test_an_unreachable_gateway_says_so() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    auth = GatewayAuthenticator(gateway_url="http://gw.test")
    auth.http_transport = httpx.MockTransport(down)
    with pytest.raises(web.HTTPError) as caught:
        run_async(auth.authenticate(None, {"username": "alice", "password": "pw-alice"}))
    assert caught.value.status_code == 503


def test_usernames_are_not_lowercased() -> None:
    assert authenticator(USERS).normalize_username("Alice") == "Alice"


def test_gateway_client_translates_errors() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        codes = {"/v1/auth/sandbox-token": 401, "/v1/me": 500}
        status = codes.get(request.url.path, 403)
        return httpx.Response(status, json={"error": {"code": "forbidden", "message": "m"}})

    client = GatewayClient("http://gw.test", transport=httpx.MockTransport(handle))
    with pytest.raises(InvalidCredentials):
        run_async(client.sandbox_token("alice", "wrong"))
    with pytest.raises(GatewayUnavailable):
        run_async(client.me(Token("t", 60)))
    with pytest.raises(GatewayRefused) as caught:
        run_async(client.login("a", "b"))
    assert caught.value.code == "forbidden"


# -- the sandbox environment build ---------------------------------------------------


def test_constraints_drop_pins_the_system_python_cannot_install(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("pandas==3.1.1\nsoupsieve==4.1.3\nrich==15.0.0\n")
    kept = build_env._sandbox_constraints(lock).split()
    assert kept == ["pandas==3.1.1", "rich==15.0.0"]


def test_client_sources_exclude_the_hub(tmp_path: Path) -> None:
    (tmp_path / "sandbox" / "client").mkdir(parents=True)
    (tmp_path / "sandbox" / "hub").mkdir()
    (tmp_path / "sandbox" / "__init__.py").write_text("")
    (tmp_path / "sandbox" / "client" / "__init__.py").write_text("")
    (tmp_path / "sandbox" / "hub" / "spawner.py").write_text("")
    sources = {p.relative_to(tmp_path).as_posix() for p in build_env._client_sources(tmp_path)}
    assert sources == {"sandbox/__init__.py", "sandbox/client/__init__.py"}
    before = build_env._client_hash(tmp_path)
    (tmp_path / "sandbox" / "client" / "__init__.py").write_text("x = 1")
    assert build_env._client_hash(tmp_path) != before


# -- the spawner's defaults ----------------------------------------------------------


def test_spawner_refuses_to_run_without_bubblewrap_unless_told() -> None:
    from sandbox.hub.isolation import SandboxError
    from sandbox.hub.spawner import SandboxSpawner

    spawner = SandboxSpawner(bwrap_path="/nonexistent/bwrap")
    assert spawner.isolation == "bubblewrap"
    with pytest.raises(SandboxError, match="isolation = 'none'"):
        spawner._bwrap()


def test_spawner_keeps_none_of_the_hubs_environment_and_uses_ipc_kernels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sandbox.hub.spawner import SandboxSpawner

    monkeypatch.setenv("DPSANDBOX_SANDBOX_ENV", "/srv/sandbox-env")
    spawner = SandboxSpawner()
    assert set(spawner.env_keep) <= {"LANG", "LC_ALL"}
    assert spawner.cmd == ["/srv/sandbox-env/bin/jupyterhub-singleuser"]
    assert "--KernelManager.transport=ipc" in spawner.get_args()


# -- the sandbox token dies with the server ------------------------------------------


def test_a_stopped_servers_token_is_revoked_even_after_a_hub_restart(
    tmp_path: Path, demo_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from sandbox.hub.spawner import SandboxSpawner
    from sandbox.hub.tokens import sandbox_token_for, token_id
    from tests.conftest import make_services
    from tests.live import serve_gateway

    monkeypatch.delenv("DPSANDBOX_HUB_SECRET", raising=False)
    services = make_services(tmp_path / "home", demo_files)
    secret_file = tmp_path / "hub_secret"
    secret_file.write_text(services.hub_secret)
    with serve_gateway(services) as url:
        token = run_async(sandbox_token_for("rita", gateway_url=url, hub_secret_file=secret_file))
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{url}/v1/me", headers=auth).status_code == 200
        # The spawner that gave the token saved its jti; a restarted hub loads it back.
        before = SandboxSpawner(gateway_url=url, hub_secret_file=str(secret_file))
        before.token_jti, before.filtered_uid, before.needs_sweep = token_id(token), 64123, True
        state = before.get_state()
        assert state["token_jti"] == token_id(token) and state["filtered_uid"] == 64123
        after = SandboxSpawner(gateway_url=url, hub_secret_file=str(secret_file))
        after.user = SimpleNamespace(name="rita")
        after.load_state(state)
        assert (after.token_jti, after.filtered_uid, after.needs_sweep) == (token_id(token), 64123, True)
        run_async(after._revoke_token())
        refused = httpx.get(f"{url}/v1/me", headers=auth)
        assert refused.status_code == 401
        assert httpx.post(f"{url}/v1/auth/refresh", headers=auth).status_code == 401
        assert after.token_jti == "" and "token_jti" not in after.get_state()
        # The process being gone (poll() clears the spawner's state) keeps what the sweep needs.
        after.token_jti = "1" * 32
        after.clear_state()
        assert after.get_state()["token_jti"] == "1" * 32


def test_revoking_without_the_gateway_is_a_warning_not_a_failed_stop(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from sandbox.hub.spawner import SandboxSpawner

    secret_file = tmp_path / "hub_secret"
    secret_file.write_text("s")
    spawner = SandboxSpawner(gateway_url="http://127.0.0.1:9", hub_secret_file=str(secret_file))
    spawner.user = SimpleNamespace(name="rita")
    spawner.token_jti = "0" * 32
    run_async(spawner._revoke_token())  # logged; the stop goes on
    assert spawner.token_jti == ""


# -- the bubblewrap fallback's pieces -------------------------------------------------


def test_generated_passwd_names_root_the_analyst_and_nobody_only() -> None:
    from sandbox.hub.isolation import account_files

    files = account_files(user="dps-rita", uid=1234, group="dps-rita", gid=1234,
                          home=Path("/home/dps-rita"), hosts=["gateway.example", "localhost"])
    passwd = files["/etc/passwd"].decode().splitlines()
    assert [line.split(":")[0] for line in passwd] == ["root", "dps-rita", "nobody"]
    assert "dps-rita:x:1234:1234::/home/dps-rita:/bin/bash" in passwd
    assert [g.split(":")[0] for g in files["/etc/group"].decode().splitlines()] == [
        "root", "dps-rita", "nogroup"]
    assert files["/etc/hosts"] == b"127.0.0.1 localhost gateway.example\n"


def test_seccomp_filter_compiles_to_a_bpf_program() -> None:
    from sandbox.hub.seccomp import seccomp_filter_fd

    fd = seccomp_filter_fd()
    try:
        program = os.read(fd, 1 << 16)
    finally:
        os.close(fd)
    assert program and len(program) % 8 == 0  # struct sock_filter: 8 bytes an instruction


def test_relay_carries_unix_socket_connections_to_the_service(tmp_path: Path) -> None:
    from sandbox.hub.relay import HostRelay

    async def scenario() -> bytes:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"service got " + await reader.read(100))
            await writer.drain()
            writer.close()

        service = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = service.sockets[0].getsockname()[1]
        relay = HostRelay(tmp_path / "run", gateway=("127.0.0.1", port), hub_api=("127.0.0.1", 9))
        await relay.start()
        assert oct((tmp_path / "run" / "gateway.sock").stat().st_mode & 0o777) == "0o666"
        assert (tmp_path / "run" / "sandbox_init.py").exists()
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "run" / "gateway.sock"))
        writer.write(b"hello")
        writer.write_eof()
        answer = await reader.read()
        await relay.close()
        service.close()
        return answer

    assert run_async(scenario()) == b"service got hello"

"""Each analyst's Jupyter server in a container of its own (DockerSpawner, hardened).

What one sandbox is under Docker (design.md, "Isolation"; docs/deploy/README.md):

- the image ``dpsandbox/sandbox:<hash>`` built on this machine (``sandbox/hub/image.py``),
  never pulled; the server runs as the image's unprivileged ``analyst`` (uid 61000);
- a read-only root filesystem, every capability dropped, ``no-new-privileges``,
  Docker's default seccomp profile with ``ptrace`` and ``process_vm_*`` also refused,
  a private cgroup namespace, memory (no swap), CPU and pids limits, a size-limited
  tmpfs ``/tmp``, ``docker-init`` as PID 1;
- a home of its own with a size the kernel enforces (a loop-mounted ext4 image,
  ``sandbox/hub/homes.py``, 5 GiB by default, under the 0700 ``homes_dir``), given
  the scenario notebooks on first use; the plain home of an analyst who used
  bubblewrap before (``/home/dps-<name>``) is moved in on the first start
  (``sandbox/hub/old_homes.py``; Docker homes were images from the start);
- the hub's internal network (``sandbox/hub/docker_network.py``): no route out, no
  other container, and on the host only the hub's forwarders to the gateway and the
  hub API, on the bridge's own address;
- the gateway URL and a short-lived ``scope: sandbox`` token, which the hub revokes
  at the gateway as soon as the server stops, is culled or dies.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from dockerspawner import DockerSpawner
from traitlets import Bool, Integer, List, Unicode, default

from .accounts import analyst_account
from .docker_network import DockerNetworkError, SandboxNetwork, drop_default_route, network_names
from .forwarder import TcpForwarder
from .gateway_link import GatewayLinkMixin
from .homes import HomesMixin, HomeVolumeError, OldHome, parse_size
from .image import IMAGE_DIR, ImageBuildError, image_exists, sandbox_image_tag
from .isolation import SandboxError, system_username
from .settings import SERVER_ARGS
from .tokens import token_id

__all__ = ["DockerSandboxSpawner"]

SANDBOX_HOME = "/home/analyst"
SANDBOX_ENV_BIN = "/opt/sandbox-env/bin"


def _port_of(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


class DockerSandboxSpawner(HomesMixin, GatewayLinkMixin, DockerSpawner):
    """DockerSpawner with dp-sandbox's image, limits, home, network and token."""

    # -- shared by every spawner of this hub process
    _networks: ClassVar[dict[str, SandboxNetwork]] = {}
    _forwarders: ClassVar[dict[tuple[str, int], TcpForwarder]] = {}
    _setup_lock: ClassVar[asyncio.Lock] = asyncio.Lock()
    _announced: ClassVar[set[str]] = set()
    _images_seen: ClassVar[set[str]] = set()  # found in the engine once: not asked again
    _engine: ClassVar[Any] = None  # docker.DockerClient (DockerSpawner.client is the low-level API)

    # -- this sandbox's state; what stop() needs is kept by get_state() across hub restarts
    # (sandbox_token and token_jti: GatewayLinkMixin)
    home_name = Unicode("", help="The analyst's mounted home volume (saved).")
    needs_cleanup = Bool(False, help="From start() until the sandbox is cleaned up (saved).")
    saved_traits: ClassVar[dict[str, Any]] = {"home_name": "", "needs_cleanup": False}

    tmp_size = Unicode("1G", help="Size of the container's private tmpfs /tmp.").tag(config=True)
    pids_limit = Integer(1024, help="Most processes and threads in one container (pids.max).").tag(
        config=True
    )
    sandbox_uid = Integer(61000, help="uid and gid the server runs as (the image's analyst).").tag(
        config=True
    )
    refused_syscalls = List(
        Unicode(),
        ["ptrace", "process_vm_readv", "process_vm_writev"],
        help="Syscalls refused on top of Docker's default seccomp profile.",
    ).tag(config=True)

    @default("image")
    def _image_default(self) -> str:
        try:
            return sandbox_image_tag()
        except ImageBuildError:
            return "dpsandbox/sandbox:missing"

    @default("pull_policy")
    def _pull_policy_default(self) -> str:
        return "never"  # there is no registry: the image is built here

    @default("remove")
    def _remove_default(self) -> bool:
        return True

    @default("network_name")
    def _network_name_default(self) -> str:
        return network_names(self.hub_state_dir).network

    @default("prefix")
    def _prefix_default(self) -> str:
        return network_names(self.hub_state_dir).container_prefix

    @default("cmd")
    def _cmd_default(self) -> list[str]:
        return [f"{SANDBOX_ENV_BIN}/jupyterhub-singleuser"]

    @default("notebook_dir")
    def _notebook_dir_default(self) -> str:
        return SANDBOX_HOME

    @default("default_url")
    def _default_url_default(self) -> str:
        return "/lab"

    # ------------------------------------------------------------------ configuration

    def _seccomp_profile(self) -> str:
        """Docker's default profile, less the syscalls this spawner also refuses."""
        profile = json.loads((IMAGE_DIR / "seccomp-docker-default.json").read_text())
        refused = set(self.refused_syscalls)
        for rule in profile["syscalls"]:
            if rule.get("action") == "SCMP_ACT_ALLOW":
                rule["names"] = [n for n in rule["names"] if n not in refused]
        profile["syscalls"] = [r for r in profile["syscalls"] if r["names"]]
        return json.dumps(profile, separators=(",", ":"))

    def _host_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "read_only": True,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true", f"seccomp={self._seccomp_profile()}"],
            "cgroupns": "private",
            "ipc_mode": "private",
            "pids_limit": self.pids_limit,
            "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={parse_size(self.tmp_size)}"},  # noqa: S108
            "init": True,  # docker-init reaps kernels' children and forwards SIGTERM
        }
        if self.mem_limit:
            config["memswap_limit"] = int(self.mem_limit)  # no swap on top of the memory
        return config

    def get_env(self) -> dict[str, Any]:
        env: dict[str, Any] = super().get_env()
        for key in [k for k in env if k.startswith("DPSANDBOX_")]:
            del env[key]
        network = self._networks.get(self.network_name)
        if network is not None and network.address:
            env["DPSANDBOX_GATEWAY_URL"] = f"http://{network.address}:{_port_of(self.gateway_url)[1]}"
        if self.sandbox_token:
            env["DPSANDBOX_TOKEN"] = self.sandbox_token
        env["HOME"] = SANDBOX_HOME
        env["DPSANDBOX_LANG"] = self._language()  # the client library's messages
        env["JUPYTER_RUNTIME_DIR"] = "/tmp/jupyter-runtime"  # noqa: S108
        return env

    def get_args(self) -> list[str]:
        return [*super().get_args(), *SERVER_ARGS, "--KernelManager.transport=ipc"]

    # ------------------------------------------------------------------ preparation

    @classmethod
    def engine(cls) -> Any:
        """The Docker SDK's high-level client (networks, images), one per hub process."""
        if cls._engine is None:
            import docker

            cls._engine = docker.from_env(timeout=120)
        return cls._engine

    def _announce(self) -> None:
        if "docker" not in self._announced:
            self._announced.add("docker")
            self.log.info(
                "Sandboxes: Docker containers from %s (read-only, no capabilities, seccomp, "
                "cgroup namespace, limits, %s homes, internal network)",
                self.image,
                self.home_size,
            )

    async def _ensure_network(self) -> SandboxNetwork:
        """The hub's network, its host filter and the two forwarders (once per hub)."""
        async with self._setup_lock:
            gateway, hub = _port_of(self.gateway_url), _port_of(self.hub.api_url)
            network = self._networks.get(self.network_name)
            if network is None or not network.address:  # set up once per hub process
                network = SandboxNetwork(self.engine(), self.hub_state_dir)
                await asyncio.to_thread(network.ensure)
                await asyncio.to_thread(network.install_filter, [gateway[1], hub[1]])
            address = network.address
            for target in (gateway, hub):
                listen = (address, target[1])
                forwarder = self._forwarders.get(listen)
                if forwarder is None or forwarder.target != target:
                    forwarder = self._forwarders[listen] = TcpForwarder(listen, target)
                await forwarder.start()
            self._networks[self.network_name] = network
            self.hub_connect_url = f"http://{address}:{hub[1]}"
            return network

    async def _prepare(self) -> None:
        self._announce()
        if self.image not in self._images_seen:
            if not await asyncio.to_thread(image_exists, self.image, self.engine()):
                raise SandboxError(
                    f"The sandbox image {self.image} is not built: run `dpsandbox image build`"
                )
            self._images_seen.add(self.image)
        await self._ensure_network()
        self.home_name = self.escaped_name
        if self._home_volumes() is None:
            raise SandboxError("c.DockerSandboxSpawner.home_size is empty: Docker homes need a size")
        uid = gid = self.sandbox_uid
        old = self._old_home()  # moved by run_pre_spawn_hook, unless start() is called alone
        home = await self._mount_home(
            self.home_name, uid=uid, gid=gid, old_home=old.path if old else None, old_owner=(uid, gid)
        )
        await asyncio.to_thread(self._provide_templates, home, uid=uid, gid=gid)
        self.volumes = {str(home): {"bind": SANDBOX_HOME, "mode": "rw"}}
        self.extra_host_config = self._host_config()
        self.extra_create_kwargs = {
            "user": f"{self.sandbox_uid}:{self.sandbox_uid}",
            "hostname": "sandbox",
            "working_dir": SANDBOX_HOME,
        }
        self.sandbox_token = await self._fetch_sandbox_token()
        self.token_jti = token_id(self.sandbox_token)

    def _old_home(self) -> OldHome | None:
        """The plain home of this analyst's bubblewrap account from before homes were images
        (Docker became the default where an engine answers): moved in before the first start,
        its owner's files becoming the container user's."""
        prefix = self.config.SandboxSpawner.get("system_user_prefix", "dps-")
        account = analyst_account(system_username(self.user.name, prefix), hub_user=self.user.name)
        if account is None:
            return None
        uid = self.sandbox_uid
        return OldHome(Path(account.pw_dir), self.escaped_name, uid, uid, owner=(uid, uid))

    async def _seal(self) -> None:
        """Take the container's default route away before anything of the analyst runs."""
        info = await self.docker("inspect_container", self.container_id)
        await asyncio.to_thread(drop_default_route, int(info["State"]["Pid"]))

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> tuple[str, int]:
        self.needs_cleanup = True
        try:
            await self._prepare()
            ip, port = await super().start()
            await self._seal()
        except (SandboxError, DockerNetworkError, HomeVolumeError) as exc:
            await self._cleanup(remove_container=True)
            raise SandboxError(str(exc)) from exc
        except BaseException:
            await self._cleanup(remove_container=True)
            raise
        self.log.info("Sandbox of %s: container %s at %s:%s", self.user.name, self.object_name, ip, port)
        await self._wait_listening((ip, port))
        return ip, port

    async def _wait_listening(self, address: tuple[str, int]) -> None:
        """Return once the server accepts connections, so the hub's first check succeeds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        tries = 0
        while loop.time() < deadline:
            try:
                _reader, writer = await asyncio.open_connection(*address)
            except OSError:
                tries += 1
                if tries % 40 == 0 and await super().poll() is not None:
                    return  # it died: the hub's own checks report it
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return

    async def poll(self) -> int | str | None:
        status = await super().poll()
        if status is not None and self.needs_cleanup:
            await self._cleanup()  # it ended by itself: the hub will not call stop()
        return status

    async def stop(self, now: bool = False) -> None:
        jti, home = self.token_jti, self.home_name  # DockerSpawner.stop() clears the state
        try:
            await super().stop(now)
        finally:
            self.token_jti, self.home_name = jti, home
            await self._cleanup()

    async def _cleanup(self, *, remove_container: bool = False) -> None:
        """End the token, remove a half-started container, unmount the home."""
        self.needs_cleanup = False
        await self._revoke_token()
        if remove_container and self.object_id:
            try:
                await self.remove_object()
            except Exception as exc:  # noqa: BLE001 (cleanup goes on)
                self.log.warning("Could not remove container %s: %s", self.object_name, exc)
        name, self.home_name = self.home_name, ""
        if name:
            await self._unmount_home(name)  # the engine may still be removing it

    # ------------------------------------------------------------------ state

    def clear_state(self) -> None:
        super().clear_state()
        self.token_jti = ""
        self.sandbox_token = ""
        self.home_name = ""
        self.needs_cleanup = False

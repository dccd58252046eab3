# JupyterHub configuration of dp-sandbox: analysts log in with their gateway
# account and each gets an isolated JupyterLab server (see sandbox/hub/spawner.py).
#
# Started by `dpsandbox hub` (sandbox/hub/run.py), which sets the environment:
#   DPSANDBOX_HOME              gateway's private dir; the hub's state is in $DPSANDBOX_HOME/hub
#   DPSANDBOX_GATEWAY_URL       gateway base URL (default http://127.0.0.1:8600)
#   DPSANDBOX_HUB_IP/_PORT      public address of the hub (default 127.0.0.1:8000)
#   DPSANDBOX_HUB_API_PORT      hub's internal API port (default 8081)
#   DPSANDBOX_PROXY_API_PORT    proxy's API port (default 8001)
#   DPSANDBOX_SANDBOX_ENV       the sandboxes' Python env (default /opt/dpsandbox/sandbox-env)
#   DPSANDBOX_ISOLATION         docker, bubblewrap or none (development only, logged loudly);
#                               default: docker where the engine answers (root), else bubblewrap
#                               (sandbox/hub/modes.py; DPSANDBOX_SANDBOX_ISOLATION is the older name)
#   DPSANDBOX_SANDBOX_HOME_SIZE size of each analyst's home, Docker or bubblewrap as root (5G)
#   DPSANDBOX_SANDBOX_MEM_LIMIT / _CPU_LIMIT / _PIDS_LIMIT   per-sandbox limits
#                               (default 4G, 1 CPU, 1024 processes and threads)
#   DPSANDBOX_IDLE_TIMEOUT      seconds before an idle server is culled (default 3600)
# The same file serves the production profiles in docs/deploy/, which override
# the spawner class.
import os
import secrets
import sys
from pathlib import Path

from sandbox.hub import pages
from sandbox.hub.modes import choose_isolation
from sandbox.hub.quiet import quiet_hub_log
from sandbox.hub.settings import HubSettings

c = get_config()  # type: ignore[name-defined]  # noqa: F821

settings = HubSettings.from_env()
state_dir = settings.ensure_state_dir()


def _private_secret(path: Path) -> str:
    """A random secret kept in a 0600 file of the hub's state, created on first start."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    os.chmod(path, 0o600)
    return path.read_text().strip()


hub_ip = os.environ.get("DPSANDBOX_HUB_IP", "127.0.0.1")
hub_port = int(os.environ.get("DPSANDBOX_HUB_PORT", "8000"))
hub_api_port = int(os.environ.get("DPSANDBOX_HUB_API_PORT", "8081"))
proxy_api_port = int(os.environ.get("DPSANDBOX_PROXY_API_PORT", "8001"))

# -- the hub and its private state ------------------------------------------------
c.JupyterHub.bind_url = f"http://{hub_ip}:{hub_port}/"
quiet_hub_log(hub_ip)  # no "without SSL" warning on loopback (sandbox/hub/quiet.py)
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{hub_api_port}"
c.JupyterHub.db_url = f"sqlite:///{state_dir / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state_dir / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(state_dir / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True  # stopping the hub stops every sandbox
pages.install(c, console_url=settings.console_url)  # sign-in and home in zh-CN / English

# -- the proxy: PyPI's configurable-http-proxy, passing websocket subprotocols through
# (sandbox/hub/proxy.py: without it every kernel connection first fails its handshake)
c.ConfigurableHTTPProxy.command = [sys.executable, "-m", "sandbox.hub.proxy"]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.auth_token = _private_secret(state_dir / "proxy_token")
c.ConfigurableHTTPProxy.pid_file = str(state_dir / "jupyterhub-proxy.pid")

# -- who may log in: the gateway decides -------------------------------------------
c.JupyterHub.authenticator_class = "gateway"
c.GatewayAuthenticator.gateway_url = settings.gateway_url
c.Authenticator.admin_users = set()  # hub administration is not an analyst's business

# -- the sandboxes: Docker wherever the engine answers, bubblewrap otherwise -------
isolation = choose_isolation(c.SandboxSpawner.isolation if "isolation" in c.SandboxSpawner else None)
c.JupyterHub.spawner_class = isolation.spawner_class
c.SandboxSpawner.gateway_url = settings.gateway_url
c.SandboxSpawner.dpsandbox_home = str(settings.home)
c.SandboxSpawner.hub_state_dir = str(state_dir)
c.SandboxSpawner.sandbox_env = str(settings.sandbox_env)
if isolation.mode != "docker":
    c.SandboxSpawner.isolation = isolation.mode
c.SandboxSpawner.mem_limit = os.environ.get("DPSANDBOX_SANDBOX_MEM_LIMIT", "4G")
c.SandboxSpawner.cpu_limit = float(os.environ.get("DPSANDBOX_SANDBOX_CPU_LIMIT", "1"))
c.SandboxSpawner.pids_limit = int(os.environ.get("DPSANDBOX_SANDBOX_PIDS_LIMIT", "1024"))
c.SandboxSpawner.home_size = os.environ.get("DPSANDBOX_SANDBOX_HOME_SIZE", "5G")
if os.environ.get("DPSANDBOX_SANDBOX_HOMES_DIR"):  # where bubblewrap's home images live
    c.SandboxSpawner.homes_dir = os.environ["DPSANDBOX_SANDBOX_HOMES_DIR"]
c.DockerSandboxSpawner.gateway_url = settings.gateway_url
c.DockerSandboxSpawner.dpsandbox_home = str(settings.home)
c.DockerSandboxSpawner.hub_state_dir = str(state_dir)
c.DockerSandboxSpawner.mem_limit = os.environ.get("DPSANDBOX_SANDBOX_MEM_LIMIT", "4G")
c.DockerSandboxSpawner.cpu_limit = float(os.environ.get("DPSANDBOX_SANDBOX_CPU_LIMIT", "1"))
c.DockerSandboxSpawner.home_size = os.environ.get("DPSANDBOX_SANDBOX_HOME_SIZE", "5G")
c.DockerSandboxSpawner.pids_limit = int(os.environ.get("DPSANDBOX_SANDBOX_PIDS_LIMIT", "1024"))
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60

# -- idle servers are stopped by jupyterhub-idle-culler, a hub-managed service -----
idle_timeout = int(os.environ.get("DPSANDBOX_IDLE_TIMEOUT", "3600"))
c.JupyterHub.load_roles = [
    {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }
]
c.JupyterHub.services = [
    {
        "name": "idle-culler",
        "command": [
            sys.executable,
            "-m",
            "sandbox.hub.culler",  # jupyterhub_idle_culler, less a start-up warning
            f"--timeout={idle_timeout}",
            f"--cull-every={max(10, min(300, idle_timeout // 4))}",
        ],
    }
]

if isolation.mode == "docker":
    print(
        f"[dpsandbox] isolation: docker ({isolation.reason}): one container per analyst from the "
        "locally built sandbox image; read-only, no capabilities, seccomp, limits, "
        "size-limited home, internal network reaching only the gateway and the hub",
        file=sys.stderr,
    )
elif isolation.mode == "none":
    print(
        "[dpsandbox] WARNING: sandbox isolation is DISABLED (DPSANDBOX_SANDBOX_ISOLATION=none): "
        "analysts' servers can read whatever their user can. Never use this with real data.",
        file=sys.stderr,
    )
elif os.geteuid() != 0:
    print(
        "[dpsandbox] isolation: bubblewrap without root: every sandbox runs as this user "
        "(allow-listed files, own network/PID namespaces, seccomp; no per-analyst users, "
        "no cgroup limits, no disk quota)",
        file=sys.stderr,
    )
else:
    print(
        f"[dpsandbox] isolation: bubblewrap as root ({isolation.reason}; one system user per "
        "analyst, allow-listed files, own network/PID/IPC/UTS/cgroup namespaces, seccomp, "
        "cgroup limits)",
        file=sys.stderr,
    )

# Production profile 1: one machine (or a Swarm), analysts' servers in containers.
#
# The hub loads dp-sandbox's own configuration (gateway login, proxy, state,
# idle culler) and replaces only the spawner: each analyst's server is a
# container of the sandbox image, on an *internal* Docker network whose only
# other members are the hub and the gateway, so a server can reach nothing but
# the gateway's API (and the hub, which it must report to).  See
# docker-compose.yml beside this file for the networks.
#
# Run in the hub container:  jupyterhub -f /srv/dpsandbox/dockerspawner_config.py
# Needs: pip install dockerspawner (in the hub image); the sandbox image built
# from the same requirements.lock as sandbox/hub/build_env.py (without the
# gateway and OpenDP).
import os
from pathlib import Path

import sandbox.hub
from sandbox.hub.tokens import add_sandbox_token, revoke_added_sandbox_token

c = get_config()  # type: ignore[name-defined]  # noqa: F821
load_subconfig(str(Path(sandbox.hub.__file__).with_name("jupyterhub_config.py")))  # type: ignore[name-defined]  # noqa: F821

network = os.environ.get("DPSANDBOX_SANDBOX_NETWORK", "dpsandbox-sandboxes")

# -- the hub inside the compose project ---------------------------------------------
c.JupyterHub.hub_bind_url = "http://0.0.0.0:8081"
c.JupyterHub.hub_connect_url = "http://hub:8081"  # the hub's name on the sandbox network
c.JupyterHub.bind_url = "http://0.0.0.0:8000/"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:8001"

# -- servers in containers on the internal network ------------------------------------
c.JupyterHub.spawner_class = "docker"
c.DockerSpawner.image = os.environ.get("DPSANDBOX_SANDBOX_IMAGE", "dpsandbox/sandbox:0.1.0")
c.DockerSpawner.network_name = network
c.DockerSpawner.use_internal_ip = True  # the proxy reaches servers on the internal network
c.DockerSpawner.remove = True  # a stopped server leaves no container behind
c.DockerSpawner.name_template = "dpsandbox-{username}"
c.DockerSpawner.notebook_dir = "/home/jovyan/work"
c.DockerSpawner.volumes = {"dpsandbox-home-{username}": "/home/jovyan/work"}  # own home only
c.DockerSpawner.mem_limit = os.environ.get("DPSANDBOX_SANDBOX_MEM_LIMIT", "4G")
c.DockerSpawner.cpu_limit = float(os.environ.get("DPSANDBOX_SANDBOX_CPU_LIMIT", "1"))
c.DockerSpawner.args = ["--KernelManager.transport=ipc"]
c.DockerSpawner.extra_create_kwargs = {"user": "1000:100", "hostname": "sandbox"}
c.DockerSpawner.extra_host_config = {
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges:true"],
    "pids_limit": 1024,
    "read_only": True,  # the image is read-only; writable: the home volume and /tmp
    "tmpfs": {"/tmp": "rw,nosuid,nodev,size=1g"},
    "init": True,  # reaps the kernels' children; stopping the container stops them all
}
# Nothing of the hub's environment is passed on; the gateway URL is the one the
# containers see, and the token is fetched per spawn (POST /v1/auth/sandbox-token).
c.DockerSpawner.env_keep = []
c.DockerSpawner.environment = {"DPSANDBOX_GATEWAY_URL": "http://gateway:8600"}
os.environ.setdefault("DPSANDBOX_SANDBOX_GATEWAY_URL", "http://gateway:8600")
c.Spawner.pre_spawn_hook = add_sandbox_token
c.Spawner.post_stop_hook = revoke_added_sandbox_token  # the token dies with the server

"""The hub configurations load, and the production profiles say what docs/deploy promises."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from traitlets.config import Config

from sandbox.hub import run
from sandbox.hub.tokens import add_sandbox_token, revoke_added_sandbox_token

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "docs" / "deploy"


def load_hub_config(path: Path, monkeypatch: pytest.MonkeyPatch, home: Path) -> Config:
    """Execute a JupyterHub config file the way JupyterHub does (get_config, load_subconfig)."""
    monkeypatch.setenv("DPSANDBOX_HOME", str(home))
    monkeypatch.setenv("DPSANDBOX_GATEWAY_URL", "http://127.0.0.1:8600")
    for name in ("DPSANDBOX_SANDBOX_ISOLATION", "DPSANDBOX_IDLE_TIMEOUT", "DPSANDBOX_HUB_PORT"):
        monkeypatch.delenv(name, raising=False)
    config = Config()

    def execute(file: str) -> None:
        namespace: dict[str, Any] = {
            "get_config": lambda: config,
            "load_subconfig": execute,
            "__file__": file,
        }
        exec(compile(Path(file).read_text(), file, "exec"), namespace)  # noqa: S102

    execute(str(path))
    return config


def test_embedded_config_wires_gateway_login_sandboxes_and_culler(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    c = load_hub_config(run.CONFIG_FILE, monkeypatch, home)
    assert c.JupyterHub.authenticator_class == "gateway"
    assert c.JupyterHub.spawner_class == "sandbox"
    assert c.SandboxSpawner.isolation == "bubblewrap"
    assert c.SandboxSpawner.dpsandbox_home == str(home)
    assert c.JupyterHub.db_url == f"sqlite:///{home / 'hub' / 'jupyterhub.sqlite'}"
    assert stat.S_IMODE(os.stat(home / "hub").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(home / "hub" / "proxy_token").st_mode) == 0o600
    # PyPI's configurable-http-proxy, passing websocket subprotocols (sandbox/hub/proxy.py)
    assert c.ConfigurableHTTPProxy.command[1:] == ["-m", "sandbox.hub.proxy"]
    assert c.JupyterHub.template_paths[0].endswith("sandbox/hub/templates")
    (culler,) = c.JupyterHub.services
    assert "--timeout=3600" in culler["command"]
    assert {"delete:servers", "read:users:activity"} <= set(c.JupyterHub.load_roles[0]["scopes"])


def test_dockerspawner_profile_puts_servers_on_the_internal_network(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    c = load_hub_config(DEPLOY / "dockerspawner_config.py", monkeypatch, tmp_path / "home")
    assert c.JupyterHub.spawner_class == "docker"
    assert c.JupyterHub.authenticator_class == "gateway"  # from the shared configuration
    assert c.DockerSpawner.network_name == "dpsandbox-sandboxes"
    assert c.DockerSpawner.use_internal_ip is True
    assert c.DockerSpawner.remove is True
    assert "ALL" in c.DockerSpawner.extra_host_config["cap_drop"]
    assert c.DockerSpawner.env_keep == []
    assert c.Spawner.pre_spawn_hook is add_sandbox_token
    assert c.Spawner.post_stop_hook is revoke_added_sandbox_token


def test_compose_sandbox_network_is_internal_with_hub_and_gateway_only() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    network = compose["networks"]["sandboxes"]
    assert network == {"name": "dpsandbox-sandboxes", "internal": True}
    members = {name for name, svc in compose["services"].items() if "sandboxes" in svc["networks"]}
    assert members == {"hub", "gateway"}
    assert compose["networks"]["store"]["internal"] is True
    assert compose["services"]["db"]["networks"] == ["store"]
    hub_env = compose["services"]["hub"]["environment"]
    assert hub_env["DPSANDBOX_SANDBOX_NETWORK"] == network["name"]


def test_z2jh_values_allow_user_pods_egress_to_the_gateway_only() -> None:
    values = yaml.safe_load((DEPLOY / "z2jh-values.yaml").read_text())
    assert set(values) >= {"hub", "singleuser", "cull"}
    assert values["hub"]["config"]["JupyterHub"]["authenticator_class"] == "gateway"
    for name, code in values["hub"]["extraConfig"].items():
        compile(code, name, "exec")
    policy = values["singleuser"]["networkPolicy"]
    assert policy["enabled"] is True
    assert not any(policy["egressAllowRules"][k] for k in ("nonPrivateIPs", "privateIPs"))
    assert not policy["egressAllowRules"]["cloudMetadataServer"]
    (rule,) = policy["egress"]
    (target,) = rule["to"]
    assert target == {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "dpsandbox-gateway"}}}
    assert rule["ports"] == [{"port": 8600, "protocol": "TCP"}]
    assert values["singleuser"]["allowPrivilegeEscalation"] is False
    assert values["cull"]["enabled"] is True

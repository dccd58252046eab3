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

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "docs" / "deploy"


def load_hub_config(
    path: Path, monkeypatch: pytest.MonkeyPatch, home: Path, *, isolation: str = "bubblewrap"
) -> Config:
    """Execute a JupyterHub config file the way JupyterHub does (get_config, load_subconfig).

    ``isolation`` is set, not left to what this machine would pick (Docker where it runs).
    """
    monkeypatch.setenv("DPSANDBOX_HOME", str(home))
    monkeypatch.setenv("DPSANDBOX_ISOLATION", isolation)
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


def test_embedded_config_runs_docker_sandboxes_when_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DPSANDBOX_SANDBOX_HOME_SIZE", "2G")
    home = tmp_path / "home"
    c = load_hub_config(run.CONFIG_FILE, monkeypatch, home, isolation="docker")
    assert c.JupyterHub.spawner_class == "sandbox-docker"
    assert c.DockerSandboxSpawner.hub_state_dir == str(home / "hub")
    assert c.DockerSandboxSpawner.home_size == "2G"
    assert c.DockerSandboxSpawner.mem_limit == "4G"
    assert "isolation" not in c.SandboxSpawner


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

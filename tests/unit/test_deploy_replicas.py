"""The replicas' deployment files say what the code does: the Kubernetes manifest's probes,
secrets, settings and command, and the nginx configuration (docs/deploy/replicas.md)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from gateway.adapters.secrets import HUB_SECRET, SECRETS, SECRETS_DIR_ENV
from gateway.cli import build_parser
from gateway.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy"


def manifest() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "gateway-k8s.yaml").read_text()) if d]
    return {d["kind"]: d for d in docs}


def gateway_container() -> tuple[dict[str, Any], dict[str, Any]]:
    pod = manifest()["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def test_probes_point_at_healthz_and_readyz_on_the_gateways_port() -> None:
    _, container = gateway_container()
    (port,) = container["ports"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    args = build_parser().parse_args(container["command"][1:])
    assert container["command"][0] == "dpsandbox" and args.command == "gateway"
    assert args.port == port["containerPort"] and args.host == "0.0.0.0"  # noqa: S104


def test_the_service_and_labels_are_what_the_hub_and_its_network_policy_use() -> None:
    kinds = manifest()
    service, deployment = kinds["Service"], kinds["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    values = yaml.safe_load((DEPLOY / "z2jh-values.yaml").read_text())
    (rule,) = values["singleuser"]["networkPolicy"]["egress"]
    assert rule["to"][0]["podSelector"]["matchLabels"].items() <= labels.items()
    assert rule["ports"][0]["port"] == port["port"]
    gateway_url = f"http://{service['metadata']['name']}:{port['port']}"
    assert values["hub"]["extraEnv"]["DPSANDBOX_GATEWAY_URL"] == gateway_url
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_secrets_are_mounted_where_the_gateway_reads_them() -> None:
    pod, container = gateway_container()
    env = {e["name"]: e for e in container["env"]}
    secrets_dir = env[SECRETS_DIR_ENV]["value"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == secrets_dir]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    sources = {s["secret"]["name"] for s in volume["projected"]["sources"]}
    # the hub's secret is the one z2jh-values.yaml gives the hub, under the file name read
    values = yaml.safe_load((DEPLOY / "z2jh-values.yaml").read_text())
    hub_ref = values["hub"]["extraEnv"][HUB_SECRET.env]["valueFrom"]["secretKeyRef"]
    assert hub_ref["name"] in sources and hub_ref["key"] == HUB_SECRET.file
    text = (DEPLOY / "gateway-k8s.yaml").read_text()
    for secret in SECRETS:  # every required secret is created, under its file name
        if secret.required and secret is not HUB_SECRET:
            assert re.search(rf"--from-(file|literal)={re.escape(secret.file)}\b", text), secret


def test_every_setting_in_the_manifest_is_one_the_gateway_reads() -> None:
    pod, container = gateway_container()
    known = {f"DPSANDBOX_{name.upper()}" for name in Settings.model_fields}
    known |= {s.env for s in SECRETS}
    env = {e["name"]: e for e in container["env"]}
    assert set(env) <= known, set(env) - known
    assert {"DPSANDBOX_DATABASE_URL", "DPSANDBOX_DATA_DIR", SECRETS_DIR_ENV} <= set(env)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[env["DPSANDBOX_DATA_DIR"]["value"]]["readOnly"] is True
    assert env["DPSANDBOX_HOME"]["value"] in mounts
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pause + 120  # the slowest query finishes


def test_nginx_sends_to_every_replica_and_tries_the_next_one() -> None:
    text = (DEPLOY / "nginx-replicas.conf").read_text()
    conf = "\n".join(line.split("#", 1)[0] for line in text.splitlines())  # directives only
    upstream = re.search(r"upstream dpsandbox_gateways \{(.+?)\}", conf, re.S)
    assert upstream
    assert len(re.findall(r"^\s*server \S+:8600", upstream.group(1), re.M)) >= 2
    keepalive = re.search(r"keepalive_timeout (\d+)s;", upstream.group(1))
    assert keepalive and int(keepalive.group(1)) < Settings().keep_alive_seconds
    assert re.search(r"proxy_next_upstream error timeout[^;]*http_503;", conf)
    assert "non_idempotent" not in conf  # a sent POST is never replayed by nginx
    assert re.search(r"client_max_body_size 1m;", conf)
    assert conf.count("{") == conf.count("}")

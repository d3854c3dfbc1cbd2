"""deploy/cluster/kubernetes: the example cannot rot silently. Its manifests parse, its agent
configuration loads with the agent's own loader and the environment the pod sets (every
``NFQ_MIP6_<SECTION>__<KEY>`` name must be a key of nfq_mip6/config.py), its scripts and
radvd.conf are deploy/cluster's, and the names that tie the pieces together (mount paths,
control socket, etcd members, Secret, ports) agree. It is not run on a real Kubernetes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from nfq_mip6.cli import main
from nfq_mip6.config import load_config

yaml = pytest.importorskip("yaml", reason="PyYAML (the dev extra) parses the manifests")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "cluster"
KUBERNETES = DEPLOY / "kubernetes"
TLS_KEYS = ("ca_file", "cert_file", "key_file")


def documents(name: str) -> dict[str, dict[str, Any]]:
    """``kind/name`` -> manifest."""
    docs = [d for d in yaml.safe_load_all((KUBERNETES / name).read_text()) if d]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


HA = documents("home-agent.yaml")
ETCD = documents("etcd.yaml")
CONFIG_MAP = HA["ConfigMap/nfq-mip6-vha1"]["data"]
POD = HA["DaemonSet/nfq-mip6-vha1"]["spec"]["template"]
CONTAINERS = {c["name"]: c for c in POD["spec"]["containers"]}
VOLUMES = {v["name"]: v for v in POD["spec"]["volumes"]}
TOML = tomllib.loads(CONFIG_MAP["nfq-mip6.toml"])


def env(container: str) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in CONTAINERS[container].get("env", [])}


def mount_of(container: str, path: str) -> dict[str, Any]:
    """The volume mount of ``container`` that holds ``path``."""
    for mount in CONTAINERS[container]["volumeMounts"]:
        if path == mount["mountPath"] or path.startswith(mount["mountPath"].rstrip("/") + "/"):
            return dict(mount)
    raise AssertionError(f"{path} is on no volume of {container}")


def tls_environment(tmp_path: Path) -> dict[str, str]:
    """The etcd client TLS files exist on a node; here they are stand-ins."""
    out = {}
    for key in TLS_KEYS:
        (tmp_path / key).touch()
        out[f"NFQ_MIP6_CLUSTER__{key.upper()}"] = str(tmp_path / key)
    return out


def test_manifests_parse_into_the_expected_objects() -> None:
    assert set(HA) == {"ConfigMap/nfq-mip6-vha1", "Secret/nfq-mip6-mn-keys",
                       "DaemonSet/nfq-mip6-vha1"}  # fmt: skip
    assert set(ETCD) == {"Namespace/nfq-mip6", "Service/nfq-mip6-etcd",
                         "StatefulSet/nfq-mip6-etcd"}  # fmt: skip
    for doc in [*HA.values(), *ETCD.values()]:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "nfq-mip6"


def test_the_agent_configuration_loads_with_the_pods_environment(tmp_path: Path) -> None:
    """The ConfigMap's nfq-mip6.toml through ``load_config`` with the container's
    environment: an unknown ``NFQ_MIP6_*__*`` name or key would raise ConfigError."""
    config_path = tmp_path / "nfq-mip6.toml"
    config_path.write_text(CONFIG_MAP["nfq-mip6.toml"])
    environment = {name: value.replace("$(NODE_IP)", "192.0.2.7")
                   for name, value in env("home-agent").items()}  # fmt: skip
    overrides = [name for name in environment if name.startswith("NFQ_MIP6_")]
    assert overrides and all("__" in name for name in overrides)
    config = load_config(config_path, environment | tls_environment(tmp_path))
    assert config.cluster is not None and config.ha is not None
    assert config.cluster.backend == "etcd" and config.cluster.role == "standby"
    assert config.cluster.name == "vha1"
    assert config.metrics_listen == ("192.0.2.7", 10135)
    assert config.interface == "vrrp.51"
    assert config.ha.preference == TOML["ha"]["preference"]


def test_keys_stay_out_of_the_config_map_and_come_from_the_secret() -> None:
    """The MN-HA keys never go into etcd nor into the ConfigMap: key *references* into the
    Secret's mount, which only the agent mounts, readable by its owner only."""
    assert not re.search(r"(?m)^\s*key\s*=", CONFIG_MAP["nfq-mip6.toml"])
    secret = HA["Secret/nfq-mip6-mn-keys"]
    volume = VOLUMES["mn-keys"]["secret"]
    assert volume["secretName"] == secret["metadata"]["name"]
    assert volume["defaultMode"] == 0o400
    for node in TOML["ha"]["mobile_nodes"]:
        mount = mount_of("home-agent", node["key_file"])
        assert mount["name"] == "mn-keys"
        assert Path(node["key_file"]).name in secret["stringData"]
    assert all(m["name"] != "mn-keys" for m in CONTAINERS["keepalived"]["volumeMounts"])
    for key in TLS_KEYS:
        assert mount_of("home-agent", TOML["cluster"][key])["name"] == "etcd-client"


def test_scripts_and_radvd_conf_are_deploy_clusters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert CONFIG_MAP["nfq-mip6-notify"] == (DEPLOY / "nfq-mip6-notify").read_text()
    assert CONFIG_MAP["nfq-mip6-vmac"] == (DEPLOY / "nfq-mip6-vmac").read_text()
    # radvd.conf is what nfq-mip6 radvd-config writes for this agent configuration
    for name, value in tls_environment(tmp_path).items():
        monkeypatch.setenv(name, value)
    config_path = tmp_path / "nfq-mip6.toml"
    config_path.write_text(CONFIG_MAP["nfq-mip6.toml"])
    out = tmp_path / "radvd.conf"
    argv = ["radvd-config", "--config", str(config_path), "--router-lifetime", "0"]
    assert main([*argv, "--output", str(out)]) == 0
    assert CONFIG_MAP["radvd.conf"] == out.read_text()


def test_keepalived_and_the_agent_agree() -> None:
    keepalived = CONFIG_MAP["keepalived.conf"]
    socket = TOML["control_socket"]
    cli = env("keepalived")["NFQ_MIP6_CLI"]
    assert f"use_vmac {TOML['interface']}" in keepalived
    assert f"virtual_router_id {TOML['interface'].removeprefix('vrrp.')}" in keepalived
    addresses = keepalived.split("virtual_ipaddress {")[1].split("}")[0].split()
    assert addresses == ["fe80::2/64", f"{TOML['ha']['address']}/64"]
    assert f'script "{cli} cluster status --agent-only --control-socket {socket}"' in keepalived
    assert env("keepalived")["NFQ_MIP6_CONTROL_SOCKET"] == socket
    for container in ("home-agent", "keepalived"):  # the control socket is shared
        assert mount_of(container, socket)["name"] == "run"
    # the notify script: where keepalived.conf calls it, and the variables it reads
    scripts = mount_of("keepalived", "/etc/nfq-mip6/scripts/nfq-mip6-notify")
    assert scripts["name"] == "scripts"
    for state in ("MASTER", "BACKUP", "FAULT", "STOP"):
        assert f'"{scripts["mountPath"]}/nfq-mip6-notify {state}"' in keepalived
    notify = CONFIG_MAP["nfq-mip6-notify"]
    for name in env("keepalived"):
        assert f"${{{name}:-" in notify, name
    radvd_conf = env("keepalived")["NFQ_MIP6_RADVD_CONF"]
    assert mount_of("keepalived", radvd_conf)["subPath"] == "radvd.conf"
    # vrrp.51 is made on the interface keepalived runs on
    (init,) = POD["spec"]["initContainers"]
    interface = re.search(r"(?m)^\s*interface (\S+)", keepalived.split("vrrp_instance")[1])
    assert interface is not None and init["command"][-2:] == [interface.group(1), "51"]


def directives(text: str) -> set[str]:
    """The configuration lines of a keepalived.conf, comments and spacing dropped."""
    lines = (" ".join(line.partition("#")[0].split()) for line in text.splitlines())
    return {line for line in lines if line}


def test_keepalived_has_every_setting_of_the_host_configuration() -> None:
    """The hosts' deploy/cluster/keepalived.conf is where settings are tuned (and tested on
    the test bed); the ConfigMap's must not fall behind. Paths, the host's priority and its
    router_id differ by design."""
    differ = ("priority", "router_id", "script", "notify_", "interface")
    hosts = directives((DEPLOY / "keepalived.conf").read_text())
    shared = [d for d in hosts if not d.startswith(differ)]
    assert [d for d in shared if d not in directives(CONFIG_MAP["keepalived.conf"])] == []


def test_the_agent_runs_with_two_capabilities_and_is_scraped() -> None:
    agent = CONTAINERS["home-agent"]
    assert POD["spec"]["hostNetwork"] is True
    capabilities = agent["securityContext"]["capabilities"]
    assert capabilities == {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}
    annotations = POD["metadata"]["annotations"]
    port = env("home-agent")["NFQ_MIP6_AGENT__METRICS_LISTEN"].rpartition(":")[2]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == port == str(agent["ports"][0]["containerPort"])


def test_the_endpoints_are_the_etcd_members() -> None:
    sts = ETCD["StatefulSet/nfq-mip6-etcd"]
    service = sts["spec"]["serviceName"]
    assert ETCD[f"Service/{service}"]["spec"]["clusterIP"] == "None"
    members = [f"{sts['metadata']['name']}-{i}" for i in range(sts["spec"]["replicas"])]
    assert len(members) == 3
    domain = f"{service}.{sts['metadata']['namespace']}.svc"
    assert TOML["cluster"]["endpoints"] == [f"https://{m}.{domain}:2379" for m in members]
    (etcd,) = sts["spec"]["template"]["spec"]["containers"]
    initial = next(a for a in etcd["args"] if a.startswith("--initial-cluster="))
    assert initial.partition("=")[2].split(",") == [
        f"{m}=https://{m}.{domain}:2380" for m in members
    ]

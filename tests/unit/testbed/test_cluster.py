"""The cluster test bed's layout and configurations (no root: renderings only)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from nfq_mip6.config import AgentConfig, load_config
from nfq_mip6.testbed.cluster import (
    VMAC,
    VMAC_INTERFACE,
    agent_config,
    cluster_hosts,
    cluster_nodes,
    etcd_argv,
    keepalived_config,
    mn_config,
    notify_script,
)
from nfq_mip6.testbed.topology import HA_ADDRESS, NODES


def test_three_hosts_on_home_and_management_links() -> None:
    nodes = {spec.name: spec for spec in cluster_nodes(3)}
    assert sorted(nodes) == ["ar", "ar2", "cn", "ha1", "ha2", "ha3", "mn", "r"]
    for index in (1, 2, 3):
        links = [(i.name, i.link) for i in nodes[f"ha{index}"].interfaces]
        assert links == [("eth0", "homenet"), ("eth1", "mgmt")]
        assert nodes[f"ha{index}"].radvd_interface is None  # standbys stay silent
    assert nodes["r"].radvd_interface == "eth1"  # the home router advertises the prefix
    # the single-HA test bed is untouched
    assert [n.name for n in NODES] == ["ha", "r", "ar", "ar2", "cn", "mn"]
    assert next(n for n in NODES if n.name == "r").radvd_interface is None


def test_host_addresses_and_priorities() -> None:
    hosts = cluster_hosts(3)
    assert [h.home_address for h in hosts] == [
        "fec0:106:2700::11",
        "fec0:106:2700::12",
        "fec0:106:2700::13",
    ]
    assert hosts[0].etcd_client_url == "http://[fd00:99::1]:2379"
    assert [h.priority for h in hosts] == [150, 100, 50]
    with pytest.raises(ValueError, match=r"2\.\.7"):
        cluster_hosts(1)


def test_virtual_mac_is_rfc5798_ipv6() -> None:
    assert VMAC == "00:00:5e:00:02:33" and VMAC_INTERFACE == "vrrp.51"


def test_etcd_member_command(tmp_path: Path) -> None:
    hosts = cluster_hosts(3)
    argv = etcd_argv(hosts[1], hosts, tmp_path, token="t")
    assert argv[argv.index("--name") + 1] == "ha2"
    assert argv[argv.index("--listen-client-urls") + 1] == "http://[fd00:99::2]:2379"
    assert argv[argv.index("--initial-cluster") + 1] == (
        "ha1=http://[fd00:99::1]:2380,ha2=http://[fd00:99::2]:2380,ha3=http://[fd00:99::3]:2380"
    )


def test_keepalived_instance(tmp_path: Path) -> None:
    text = keepalived_config(cluster_hosts(3)[0], tmp_path / "notify.sh", "status-cmd")
    for line in (
        "vrrp_version 3",
        "use_vmac vrrp.51",
        "vmac_xmit_base",
        "virtual_router_id 51",
        "priority 150",
        "advert_int 0.1",
        "nopreempt",
        "garp_master_refresh 1",
        "accept",
        f"{HA_ADDRESS}/64",
        'script "status-cmd"',
        f'notify_master "{tmp_path / "notify.sh"} MASTER"',
        f'notify_backup "{tmp_path / "notify.sh"} BACKUP"',
    ):
        assert line in text, line
    # RFC 5798 §5.2.9: the first IPv6 address is link-local
    addresses = text.split("virtual_ipaddress {")[1].split()
    assert addresses[0].startswith("fe80::")
    assert "track_script" not in keepalived_config(cluster_hosts(3)[0], tmp_path / "n", None)


def test_notify_script_maps_states_to_roles(tmp_path: Path) -> None:
    script = notify_script("/py", tmp_path / "a.sock", tmp_path / "n.log")
    assert "MASTER) role=active" in script and "flock 9" in script
    assert f"cluster active --control-socket {tmp_path / 'a.sock'}" in script
    assert f"cluster standby --control-socket {tmp_path / 'a.sock'}" in script


def load_config_text(tmp_path: Path, text: str) -> AgentConfig:
    path = tmp_path / "other.toml"
    path.write_text(text)
    return load_config(path)


def test_agent_and_mn_configs_load(tmp_path: Path) -> None:
    hosts = cluster_hosts(3)
    key = tmp_path / "mn1.key"
    key.write_text("00" * 16 + "\n")
    key.chmod(0o600)
    ha = tmp_path / "ha.toml"
    ha.write_text(agent_config(hosts[0], hosts, tmp_path, key))
    config = load_config(ha)
    assert config.interface == VMAC_INTERFACE
    assert config.cluster is not None and config.cluster.name == "vha1"
    assert config.cluster.endpoints == (  # its own member first
        "http://[fd00:99::1]:2379",
        "http://[fd00:99::2]:2379",
        "http://[fd00:99::3]:2379",
    )
    second = load_config_text(tmp_path, agent_config(hosts[1], hosts, tmp_path, key))
    assert second.cluster is not None
    assert second.cluster.endpoints[0] == "http://[fd00:99::2]:2379"
    assert config.cluster.role == "standby"
    assert config.ha is not None and str(config.ha.address) == HA_ADDRESS
    mn = tmp_path / "mn.toml"
    mn.write_text(mn_config(key, tmp_path))
    assert tomllib.loads(mn.read_text())["mn"]["home_agent"] == HA_ADDRESS
    assert load_config(mn).role == "mn"


def test_became_master_at_reads_the_notify_log(tmp_path: Path) -> None:
    from nfq_mip6.testbed import Testbed
    from nfq_mip6.testbed.cluster_processes import became_master_at, host_dir

    bed = Testbed("u1", run_dir=tmp_path, cluster=3)
    log = host_dir(bed, "ha2") / "notify.log"
    log.parent.mkdir(parents=True)
    assert became_master_at(bed, "ha2") is None
    log.write_text(
        "100.5 BACKUP (latest BACKUP) -> standby\n"
        "Role : standby\n"
        "103.25 MASTER (latest MASTER) -> active\n"
        "110.0 MASTER (latest MASTER) -> active\n"
    )
    assert became_master_at(bed, "ha2") == 103.25

"""Two Home Agent agents sharing their bindings through a real etcd (docs/cluster.md).

The test bed's HA namespace runs the **active** member; a second namespace on the home link
(``<prefix>-ha2``, its own address there) runs a **standby**; a third (``<prefix>-etcd``)
runs one etcd 3.4 member on a management bridge (IPv4 ``10.99.0.0/24``) that both HA
namespaces reach through their own ``mgmt0``, never through the home link. The MN is the
scripted one on visitnet, sending whole BUs with an HAO.

What a user sees: a BU to the active agent is answered once its binding is in etcd; the
standby holds the binding (``nfq-mip6 cache --json``) and the tunnel route in its kernel;
after the active agent is killed (-9) and the HA address moves to the standby (what VRRP
does), ``nfq-mip6 cluster active`` on it makes the MN's next BU (sequence + 1) answered with
status 0 without a new registration; with etcd stopped, a BU gets no BA and the agent counts
a commit timeout.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    AgentHandle,
    ScriptedMobileNode,
    binding_ack,
    flush_ha_kernel_state,
    mn_away,
    scripted_mobile_node,
    start_agent,
    stop_agent,
    wait_until,
    write_agent_config,
)

from nfq_mip6.testbed import Testbed
from nfq_mip6.testbed.netns import sysctl
from nfq_mip6.testbed.node import Node
from nfq_mip6.testbed.topology import (
    HA_ADDRESS,
    HOME_PREFIX,
    R_HOME_ADDRESS,
    interface_sysctls,
    node_spec,
    sysctls,
)
from nfq_mip6.wire import BAStatus, BindingUpdate, BUFlags, build_ipv6_packet, build_mh
from nfq_mip6.wire.mh import IPPROTO_MH
from tests.support.etcd import EtcdServer
from tests.support.howto import COA, HA, HOA

pytestmark = pytest.mark.netns
pytest.importorskip("etcd3gw", reason="optional extra nfq-mip6[cluster] not installed")

QUEUE_NUM = 23
STANDBY_ADDRESS = "fec0:106:2700::3"  # the standby host's own address on the home link
ETCD_ADDRESS = "10.99.0.1"
MGMT = {"ha": "10.99.0.2", "ha2": "10.99.0.3"}
TUNNEL_TABLE = "6275"


def home_bu(sequence: int) -> bytes:
    """A home-registration BU from the CoA with an HAO (A and H set, maximum lifetime)."""
    mh = build_mh(BindingUpdate(sequence, BUFlags.A | BUFlags.H, 0xFFFF), HOA, HA)
    return build_ipv6_packet(COA, HA, IPPROTO_MH, mh, home_address=HOA)


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """``nfq-mip6 ARGV`` as an operator (or keepalived) runs it."""
    return subprocess.run(
        [sys.executable, "-m", "nfq_mip6", *argv], capture_output=True, text=True, check=False
    )


def tunnel_route(node: Node) -> str:
    return node.run(["ip", "-6", "route", "show", "table", TUNNEL_TABLE]).stdout


@dataclass
class Cluster:
    testbed: Testbed
    etcd: EtcdServer
    etcd_node: Node
    standby_node: Node
    tmp: Path

    def stored(self, key: str) -> dict[str, Any] | None:
        """A record as etcd holds it (etcdctl in the etcd namespace)."""
        out = self.etcd_node.run(
            ["etcdctl", "--endpoints", self.etcd.url, "get", "--print-value-only", key],
            check=False,
        ).stdout.strip()
        return json.loads(out) if out else None


def _namespace(name: str) -> Node:
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    return Node(name.rsplit("-", 1)[-1], name)


@pytest.fixture(scope="module")
def cluster(testbed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cluster")
    ha = testbed.node("ha")
    sw = testbed.switch
    etcd_ns, ha2_ns = testbed.netns_name("etcd"), testbed.netns_name("ha2")
    created: list[str] = []
    server = EtcdServer(tmp / "etcd")
    server.host = ETCD_ADDRESS
    try:
        # The standby host: a home-link leg with its own address, the HA sysctls.
        ha2 = _namespace(ha2_ns)
        created.append(ha2_ns)
        spec = node_spec("ha")
        sysctl(ha2_ns, sysctls(spec))
        sw.run(["ip", "link", "add", "ha2-eth0", "type", "veth", "peer", "name", "eth0",
                "netns", ha2_ns])  # fmt: skip
        sysctl(ha2_ns, interface_sysctls(spec, "eth0") | {"net.ipv6.conf.eth0.ndisc_notify": "1"})
        ha2.run(["ip", "-6", "addr", "add", f"{STANDBY_ADDRESS}/64", "dev", "eth0", "nodad"])
        ha2.run(["ip", "link", "set", "eth0", "up"])
        sw.run(["ip", "link", "set", "ha2-eth0", "master", "homenet", "up"])
        ha2.run(["ip", "-6", "route", "add", "default", "via", R_HOME_ADDRESS])
        # The management link: a bridge in the etcd namespace, one leg per HA namespace.
        etcd_node = _namespace(etcd_ns)
        created.append(etcd_ns)
        etcd_node.run(["ip", "link", "add", "mgmt", "type", "bridge"])
        etcd_node.run(["ip", "addr", "add", f"{ETCD_ADDRESS}/24", "dev", "mgmt"])
        etcd_node.run(["ip", "link", "set", "mgmt", "up"])
        for name, node in (("ha", ha), ("ha2", ha2)):
            etcd_node.run(["ip", "link", "add", f"m-{name}", "type", "veth", "peer", "name",
                           "mgmt0", "netns", node.netns])  # fmt: skip
            etcd_node.run(["ip", "link", "set", f"m-{name}", "master", "mgmt", "up"])
            node.run(["ip", "addr", "add", f"{MGMT[name]}/24", "dev", "mgmt0"])
            node.run(["ip", "link", "set", "mgmt0", "up"])
        server.start(netns=etcd_ns)
        with mn_away(testbed, HOA):
            yield Cluster(testbed, server, etcd_node, ha2, tmp)
    finally:
        server.stop()
        for name in created:  # the veths (home link port, mgmt0 in the HA) go with them
            subprocess.run(["ip", "netns", "del", name], check=False)
        # the HA address back where the rest of the suite expects it
        ha.run(["ip", "-6", "addr", "add", f"{HA_ADDRESS}/64", "dev", "eth0", "nodad"],
               check=False)  # fmt: skip
        flush_ha_kernel_state(ha)
        testbed.node("r").run(["ip", "-6", "neigh", "flush", "to", HA_ADDRESS], check=False)


def _config(cluster: Cluster, name: str, extra_ha: str = "") -> tuple[Path, Path]:
    tmp = cluster.tmp / name
    tmp.mkdir(exist_ok=True)
    config = write_agent_config(
        tmp,
        "ha",
        QUEUE_NUM,
        f"""
[ha]
max_binding_lifetime = 400
require_authentication = false
{extra_ha}
[cluster]
endpoints = ["{cluster.etcd.url}"]
name = "vha1"
commit_timeout_ms = 1000
""",
    )
    return config, tmp / "ha.sock"


@pytest.fixture(scope="module")
def agents(cluster: Cluster) -> Iterator[tuple[AgentHandle, AgentHandle]]:
    ha = cluster.testbed.node("ha")
    flush_ha_kernel_state(ha)
    flush_ha_kernel_state(cluster.standby_node)
    config, sock = _config(cluster, "active")
    active = start_agent(ha, config, sock)
    # the standby serves the same HA address, not on its interface until it takes over
    config2, sock2 = _config(
        cluster, "standby", f'address = "{HA_ADDRESS}"\nhome_prefix = "{HOME_PREFIX}"\n'
    )
    standby = start_agent(
        cluster.standby_node, config2, sock2, extra_args=("--cluster-role", "standby")
    )
    try:
        yield active, standby
    finally:
        for handle in (standby, active):
            if handle.proc.poll() is None:
                stop_agent(handle)


@pytest.fixture(scope="module")
def mn(cluster: Cluster) -> Iterator[ScriptedMobileNode]:
    with scripted_mobile_node(cluster.testbed.node("mn"), HA) as scripted:
        yield scripted


def test_cluster_bu_takeover_and_store_loss(
    cluster: Cluster, agents: tuple[AgentHandle, AgentHandle], mn: ScriptedMobileNode
) -> None:
    active, standby = agents
    key = f"/nfq-mip6/v1/vha1/b/{HOA}"
    assert active.control("cluster")["role"] == "active"
    assert standby.control("cluster")["role"] == "standby"

    # 1. BU to the active member: BA 0, and by then the binding is in etcd.
    received = binding_ack(mn.exchange(home_bu(10), wait=6.0))
    assert (received.ba.status, received.ba.sequence) == (BAStatus.ACCEPTED, 10)
    record = cluster.stored(key)
    assert record is not None and (record["coa"], record["seq"]) == (str(COA), 10)
    assert active.control("cluster")["counters"]["commits"] >= 1

    # 2. The standby follows: binding in `nfq-mip6 cache --json`, tunnel route in its kernel,
    #    no proxy ND entry for the HoA (it answers nothing).
    def standby_cache() -> dict[str, Any]:
        done = cli("cache", "--json", "--control-socket", str(standby.socket_path))
        assert done.returncode == 0, done.stderr
        answer: dict[str, Any] = json.loads(done.stdout)
        return answer

    assert wait_until(
        lambda: any(
            b["home_address"] == str(HOA) and b["sequence"] == 10
            for b in standby_cache()["bindings"]
        ),
        10.0,
    ), standby_cache()
    assert standby_cache()["cluster"]["role"] == "standby"
    assert wait_until(lambda: str(HOA) in tunnel_route(cluster.standby_node), 5.0)
    assert str(COA) in tunnel_route(cluster.standby_node)
    proxies = cluster.standby_node.run(["ip", "-6", "neigh", "show", "proxy"]).stdout
    assert str(HOA) not in proxies
    status = cli("cluster", "status", "--json", "--control-socket", str(standby.socket_path))
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["store_reachable"] is True

    # 3. The active host dies: agent killed -9, its HA address moves to the standby (as VRRP
    #    would move it; the standby announces it with an unsolicited NA), then the operator's
    #    (keepalived's notify_master) `nfq-mip6 cluster active`.
    active.proc.send_signal(signal.SIGKILL)
    active.proc.wait(timeout=10)
    ha = cluster.testbed.node("ha")
    ha.run(["ip", "-6", "addr", "del", f"{HA_ADDRESS}/64", "dev", "eth0"])
    ha.run(["ip", "-6", "neigh", "flush", "proxy"], check=False)  # its proxies die with it
    cluster.standby_node.run(
        ["ip", "-6", "addr", "add", f"{HA_ADDRESS}/64", "dev", "eth0", "nodad"]
    )
    cluster.testbed.node("r").run(["ip", "-6", "neigh", "flush", "to", HA_ADDRESS], check=False)
    takeover = cli("cluster", "active", "--json", "--control-socket", str(standby.socket_path))
    assert takeover.returncode == 0, takeover.stderr
    answer = json.loads(takeover.stdout)
    assert answer["role"] == "active" and answer["caught_up"] is True
    # the proxy entries go in on the agent loop's next turns (BUs are served meanwhile)
    assert wait_until(
        lambda: str(HOA) in cluster.standby_node.run(["ip", "-6", "neigh", "show", "proxy"]).stdout,
        5.0,
    )

    # 4. The MN's next BU (sequence + 1): status 0 from the new active, a refresh of the
    #    replicated binding (no new registration: no proxy DAD, no DHAAD).
    before = standby.stats()
    received = binding_ack(mn.exchange(home_bu(11), wait=6.0))
    assert (received.ba.status, received.ba.sequence) == (BAStatus.ACCEPTED, 11)
    assert received.src == HA
    after = standby.stats()
    assert after["home_agent"]["nd_dad_ns_sent"] == before["home_agent"]["nd_dad_ns_sent"]
    record = cluster.stored(key)
    assert record is not None and record["seq"] == 11

    # 5. etcd stopped: the BU gets no BA (the MN would retransmit), a timeout is counted and
    #    `cluster status` (keepalived's track_script) fails.
    cluster.etcd.stop()
    assert mn.exchange(home_bu(12), wait=3.0) == []
    assert wait_until(lambda: standby.control("cluster")["counters"]["timeouts"] >= 1, 5.0)
    assert wait_until(
        lambda: (
            cli("cluster", "status", "--control-socket", str(standby.socket_path)).returncode == 3
        ),
        10.0,
    )

"""Draining a virtual HA (RFC 5142 Home Agent Switch) on the cluster test bed, and the Home
Agent Information preference that ranks home agents (RFC 6275 §7.4, §10.5.1).

The bed (``nfq-mip6 testbed up --cluster 2``: etcd, keepalived, an HA agent per host) serves
the virtual HA; a second, plain home agent (its own address, its own namespace on the home
link, the MN's key) joins the home link for this module. Two virtual HAs on one bed would
need one namespace per virtual HA on every host, which the bed does not build (docs/cluster.md).

* Both home agents advertise themselves with radvd: the plain one with the test bed's
  configuration at preference 10, the virtual HA from its active member's vrrp.51 with what
  ``nfq-mip6 radvd-config`` writes for that member's agent configuration at preference 100
  (as deploy/cluster's notify script does on MASTER). Each one's Home Agents List shows the
  other with the preference its RA carried; the active member takes the virtual HA's RA as
  its own (it ranks itself at 100). A DHAAD Request from the CN to the home agents anycast
  address gets a reply listing the virtual HA first, whichever of the two answers.
* ``nfq-mip6 cluster drain`` on the active member: the MN gets a Home Agent Switch listing the
  plain HA, de-registers from the virtual HA (every member drops the binding: the deletion
  goes through etcd), registers with the plain HA (status 0), and the CN's pings to the home
  address continue through it. The outage is printed, never asserted.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_bed import agent_log, cached, cluster_testbed, control, start_mn
from helpers import terminate, wait_until
from test_home_agent_switch import (
    HA2_ADDRESS,
    drain_status,
    second_home_agent,
    summary,
    switch_seen,
)
from test_journey import cache_shows, mipdiag, reachable
from test_mobile_node import running_agent

from nfq_mip6.control import request
from nfq_mip6.io.radvd import Radvd
from nfq_mip6.testbed import Testbed, care_of_address
from nfq_mip6.testbed import cluster_processes as cluster
from nfq_mip6.testbed.cluster import MN_SPI, VMAC_INTERFACE, cluster_hosts
from nfq_mip6.testbed.topology import CN_ADDRESS, HA_ADDRESS, HOME_PREFIX, MN_HOME_ADDRESS

pytestmark = pytest.mark.netns
pytest.importorskip("etcd3gw", reason="optional extra nfq-mip6[cluster] not installed")

HOSTS = 2
VIRTUAL_HA_PREFERENCE = 100
PLAIN_HA_PREFERENCE = 10


@pytest.fixture(scope="module")
def bed() -> Iterator[Testbed]:
    with cluster_testbed(HOSTS) as testbed:
        yield testbed


def plain_ha_config(bed: Testbed, path: Path) -> Path:
    """The plain HA: its own address on eth0, the MN's key (the MN authenticates its BUs,
    RFC 4285), ``[ha] preference`` as its radvd advertises it."""
    path.write_text(
        f"""role = "ha"
interface = "eth0"
queue_num = 7
metrics_listen = ""

[ha]
preference = {PLAIN_HA_PREFERENCE}

[[ha.mobile_nodes]]
home_address = "{MN_HOME_ADDRESS}"
spi = {MN_SPI}
key_file = "{bed.run_dir / "mn1.key"}"
"""
    )
    return path


def virtual_ha_radvd_config(bed: Testbed, host: str) -> str:
    """``nfq-mip6 radvd-config`` for the member's agent configuration, the virtual HA's
    preference given as an environment override ([ha] preference)."""
    done = subprocess.run(
        [sys.executable, "-m", "nfq_mip6", "radvd-config", "--router-lifetime", "0",
         "--config", str(cluster.host_dir(bed, host) / "agent.toml")],
        capture_output=True, text=True, timeout=30, check=False,
        env=os.environ | {"NFQ_MIP6_HA__PREFERENCE": str(VIRTUAL_HA_PREFERENCE)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"interface {VMAC_INTERFACE}" in done.stdout
    return done.stdout


# A DHAAD Request (RFC 6275 §6.5) from the CN to the home agents anycast address of the home
# prefix, through a raw ICMPv6 socket (the kernel fills the checksum); prints the Reply's
# source and home agents as JSON.
_DHAAD = r"""
import json, socket, sys
from ipaddress import IPv6Address, IPv6Network
from nfq_mip6.wire.icmp import (DhaadReply, DhaadRequest, build_icmpv6, home_agents_anycast,
                               parse_icmpv6)
src, prefix = IPv6Address(sys.argv[1]), IPv6Network(sys.argv[2])
anycast = home_agents_anycast(prefix)
sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
sock.bind((str(src), 0))
sock.settimeout(3.0)
sock.sendto(build_icmpv6(DhaadRequest(0x5151), src, anycast), (str(anycast), 0))
while True:
    data, address = sock.recvfrom(2048)
    message = parse_icmpv6(data)
    if isinstance(message, DhaadReply) and message.identifier == 0x5151:
        print(json.dumps([address[0], [str(a) for a in message.home_agents]]))
        break
"""


def dhaad_reply(bed: Testbed) -> tuple[str, list[str]] | None:
    """Who answered the CN's DHAAD Request, and the home agents it listed (None: no reply)."""
    done = bed.node("cn").run(
        [sys.executable, "-c", _DHAAD, CN_ADDRESS, HOME_PREFIX], check=False, timeout=10
    )
    if done.returncode != 0:
        return None
    source, listed = json.loads(done.stdout)
    return str(source), list(listed)


def heard(socket_path: Path, address: str) -> int | None:
    """The preference the agent's Home Agents List holds for ``address`` (None: not heard)."""
    for row in drain_status(socket_path).get("home_agents_list", []):  # type: ignore[union-attr]
        if address in row["addresses"]:
            return int(row["preference"])
    return None


def test_virtual_ha_drained_to_a_plain_home_agent(bed: Testbed, tmp_path: Path) -> None:
    hosts = [h.name for h in cluster_hosts(HOSTS)]
    active = cluster.active_host(bed)
    assert active == "ha1"
    active_socket = cluster.control_socket(bed, active)
    mn_socket = bed.run_dir / "mn.sock"
    plain_socket = tmp_path / "plain.sock"
    coa = care_of_address("visitnet")
    cn = bed.node("cn")
    log = (tmp_path / "mn.log").open("w")
    mn = start_mn(bed, log)
    vha_radvd = Radvd(tmp_path / "vha-radvd", ["ip", "netns", "exec", bed.netns_name(active)])
    try:
        bed.move("visitnet")
        for host in hosts:
            assert wait_until(lambda h=host: cached(bed, h) == [(MN_HOME_ADDRESS, coa)], 20.0), (
                host,
                cached(bed, host),
            )
        assert wait_until(lambda: reachable(cn), 10.0), "CN cannot reach the MN"
        with (
            second_home_agent(bed, tmp_path, "plainha", PLAIN_HA_PREFERENCE) as plain,
            running_agent(plain, plain_ha_config(bed, tmp_path / "plain.toml"), plain_socket),
        ):
            vha_radvd.start(virtual_ha_radvd_config(bed, active))
            # Each home agent lists the other with the preference its RA carried (§7.4).
            assert wait_until(lambda: heard(active_socket, HA2_ADDRESS) is not None, 10.0), (
                drain_status(active_socket)
            )
            assert heard(active_socket, HA2_ADDRESS) == PLAIN_HA_PREFERENCE
            assert wait_until(lambda: heard(plain_socket, HA_ADDRESS) is not None, 10.0), (
                drain_status(plain_socket)
            )
            assert heard(plain_socket, HA_ADDRESS) == VIRTUAL_HA_PREFERENCE
            assert drain_status(active_socket)["home_agents"] == [HA2_ADDRESS]
            # the member knows the virtual HA's RA as its own: it ranks itself by it
            assert wait_until(
                lambda: drain_status(active_socket)["preference"] == VIRTUAL_HA_PREFERENCE, 5.0
            ), drain_status(active_socket)
            assert heard(active_socket, HA_ADDRESS) is None
            # DHAAD (§10.5): whichever home agent answers, the preferred one comes first
            assert wait_until(lambda: dhaad_reply(bed) is not None, 10.0), "no DHAAD reply"
            reply = dhaad_reply(bed)
            assert reply is not None and reply[0] in (HA_ADDRESS, HA2_ADDRESS), reply
            assert reply[1] == [HA_ADDRESS, HA2_ADDRESS], reply

            stream = bed.ping_stream("cn", MN_HOME_ADDRESS, rate_pps=100)
            stream.start()
            try:
                with bed.capture("visitnet", tmp_path / "visitnet.pcap") as pcap:
                    time.sleep(0.3)
                    done = subprocess.run(
                        [sys.executable, "-m", "nfq_mip6", "cluster", "drain", "--rate", "5",
                         "--json", "--control-socket", str(active_socket)],
                        capture_output=True, text=True, timeout=15, check=False,
                    )  # fmt: skip
                    assert done.returncode == 0, done.stderr
                    assert json.loads(done.stdout)["drain"]["draining"] is True
                    moved = wait_until(functools.partial(cache_shows, plain_socket, coa), 30.0)
                    assert moved, (
                        mipdiag("-c", plain_socket),
                        request(mn_socket, {"cmd": "stats"})["mobile_node"]["events"],
                        agent_log(bed, active),
                    )
                    # the de-registration went through etcd: no member holds the binding
                    for host in hosts:
                        gone = wait_until(
                            lambda h=host: control(bed, h, "cache")["bindings"] == [], 10.0
                        )
                        assert gone, (host, cached(bed, host))
                    assert wait_until(lambda: reachable(cn), 10.0), "CN lost the MN"
                    seen = wait_until(lambda: switch_seen(pcap, coa), 10.0)
                    assert seen, summary(pcap)
                time.sleep(0.5)
            finally:
                result = stream.stop()
            drained: dict[str, Any] = request(active_socket, {"cmd": "stats"})["home_agent"]
            assert drained["drain_switch_sent"] >= 1 and drained["drain_switch_followed"] == 1
            mn_stats = request(mn_socket, {"cmd": "stats"})["mobile_node"]
            assert mn_stats["home_agent"] == HA2_ADDRESS
            assert mn_stats["home_agent_switch"]["switch_completed"] == 1
            assert result.received > 0, result.summary()
            print(
                json.dumps(
                    {
                        "test": "cluster_drain",
                        "hosts": HOSTS,
                        "dhaad_reply": {"from": reply[0], "home_agents": reply[1]},
                        "ping_100pps": {
                            "sent": result.sent,
                            "received": result.received,
                            "longest_gap_ms": round(result.max_gap_s * 1000),
                        },
                        "virtual_ha_drain": drain_status(active_socket),
                    }
                )
            )
    finally:
        vha_radvd.stop()
        terminate(mn)
        log.close()

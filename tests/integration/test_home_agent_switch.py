"""RFC 5142 Home Agent Switch with real agents: two home agents on the home link, the MN
registered with the first, ``nfq-mip6 cluster drain`` on it; the MN de-registers there and
registers with the second while the CN keeps pinging its home address.

The second home agent is a namespace added to the test bed's home link for this test only
(same sysctls and radvd configuration as the bed's HA, its own address), removed at the end.
"""

from __future__ import annotations

import contextlib
import functools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import IPv6Address
from pathlib import Path

import pytest
from test_journey import HA_CONFIG, MN_CONFIG, cache_line, cache_shows, mipdiag, reachable
from test_mobile_node import mobility_headers, running_agent, wait_until

from nfq_mip6.control import request
from nfq_mip6.testbed import Testbed, care_of_address
from nfq_mip6.testbed.netns import ip, sysctl
from nfq_mip6.testbed.node import Node
from nfq_mip6.testbed.radvd import HOWTO_HOME_AGENT_PREFERENCE, home_agent_config
from nfq_mip6.testbed.topology import (
    HA_ADDRESS,
    MN_HOME_ADDRESS,
    NODES,
    R_HOME_ADDRESS,
    interface_sysctls,
    sysctls,
)
from nfq_mip6.wire import BindingAck, BindingUpdate, HomeAgentSwitch

pytestmark = pytest.mark.netns

HA2_ADDRESS = "fec0:106:2700::3"
HA1, HA2, HOA = IPv6Address(HA_ADDRESS), IPv6Address(HA2_ADDRESS), IPv6Address(MN_HOME_ADDRESS)


@contextlib.contextmanager
def second_home_agent(
    bed: Testbed,
    run_dir: Path,
    name: str = "ha2",
    preference: int = HOWTO_HOME_AGENT_PREFERENCE,
) -> Iterator[Node]:
    """A namespace ``name`` on the home link with the HA's sysctls, ``HA2_ADDRESS`` on eth0, a
    default route through the home router and radvd advertising it as a home agent (H flag,
    ``preference`` in the Home Agent Information option, its address in the prefix option:
    the other HA learns it for its Home Agents List)."""
    spec = next(s for s in NODES if s.name == "ha")
    node = Node(name, bed.netns_name(name))
    switch = bed.switch.netns
    port = f"{name}-eth0"
    radvd: subprocess.Popen[str] | None = None
    subprocess.run(["ip", "netns", "add", node.netns], check=True)
    try:
        ip("link", "set", "lo", "up", netns=node.netns)
        sysctl(node.netns, sysctls(spec))
        ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", node.netns,
           netns=switch)  # fmt: skip
        sysctl(node.netns, interface_sysctls(spec, "eth0"))
        ip("-6", "addr", "add", f"{HA2_ADDRESS}/64", "dev", "eth0", "nodad", netns=node.netns)
        ip("link", "set", "eth0", "up", netns=node.netns)
        ip("link", "set", port, "master", "homenet", "up", netns=switch)
        ip("-6", "route", "add", "default", "via", R_HOME_ADDRESS, netns=node.netns)
        conf = run_dir / f"{name}-radvd.conf"
        conf.write_text(home_agent_config(address=HA2_ADDRESS, preference=preference))
        conf.chmod(0o644)
        pidfile = run_dir / f"{name}-radvd.pid"
        radvd = node.popen(
            ["radvd", "-n", "-C", str(conf), "-p", str(pidfile), "-m", "stderr"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        yield node
    finally:
        if radvd is not None:
            radvd.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                radvd.wait(5)
        ip("link", "del", port, netns=switch, check=False)
        subprocess.run(["ip", "netns", "del", node.netns], check=False)


def drain_status(socket_path: Path) -> dict[str, object]:
    answer = request(socket_path, {"cmd": "drain", "status": True})
    drain = answer.get("drain", {})
    assert isinstance(drain, dict)
    return drain


def switch_seen(pcap: Path, coa: str) -> bool:
    """HA1 → CoA Home Agent Switch (RH2 = HoA) listing HA2, the MN's de-registration BU to
    HA1 and a BA status 0 from HA2 to the CoA, on the visited link."""
    messages = mobility_headers(pcap)
    switch = any(
        p.src == HA1 and p.rh2_address == HOA and isinstance(m, HomeAgentSwitch)
        and HA2 in m.home_agents
        for p, m in messages
    )  # fmt: skip
    deregistration = any(
        p.dst == HA1 and isinstance(m, BindingUpdate) and m.lifetime == 0 for p, m in messages
    )
    accepted = any(
        p.src == HA2 and str(p.dst) == coa and isinstance(m, BindingAck) and m.status == 0
        for p, m in messages
    )
    return switch and deregistration and accepted


def summary(pcap: Path) -> list[str]:
    """The Mobility Headers of a capture, one short line each (for a failure message)."""
    return [f"{p.src} > {p.dst} rh2={p.rh2_address} {m!r}"[:160] for p, m in mobility_headers(pcap)]


def test_drain_moves_the_mobile_node_to_the_other_home_agent(
    testbed_home: Testbed, tmp_path: Path
) -> None:
    bed = testbed_home
    mn, ha, cn = bed.node("mn"), bed.node("ha"), bed.node("cn")
    ha_socket, ha2_socket, mn_socket = (tmp_path / f"{n}.sock" for n in ("ha", "ha2", "mn"))
    coa = care_of_address("visitnet")
    with (
        second_home_agent(bed, tmp_path) as ha2,
        running_agent(ha, HA_CONFIG, ha_socket),
        running_agent(ha2, HA_CONFIG, ha2_socket),
        running_agent(mn, MN_CONFIG, mn_socket),
    ):
        bed.move("visitnet")
        assert wait_until(functools.partial(cache_shows, ha_socket, coa), 15.0), mipdiag(
            "-c", ha_socket
        )
        assert wait_until(lambda: reachable(cn), 10.0), "CN cannot reach the MN through HA1"
        # HA1 heard HA2's Router Advertisements: its switch will list HA2
        listed = wait_until(lambda: HA2_ADDRESS in drain_status(ha_socket)["home_agents"], 10.0)
        assert listed, drain_status(ha_socket)
        stream = bed.ping_stream("cn", MN_HOME_ADDRESS, rate_pps=100)
        stream.start()
        try:
            with bed.capture("visitnet", tmp_path / "visitnet.pcap") as pcap:
                time.sleep(0.3)
                done = subprocess.run(
                    [sys.executable, "-m", "nfq_mip6", "cluster", "drain", "--rate", "5",
                     "--json", "--control-socket", str(ha_socket)],
                    capture_output=True, text=True, timeout=15, check=False,
                )  # fmt: skip
                assert done.returncode == 0, done.stderr
                assert json.loads(done.stdout)["drain"]["draining"] is True
                # the MN left HA1 (de-registration) and registered with HA2 (mipdiag -c)
                moved = wait_until(functools.partial(cache_shows, ha2_socket, coa), 20.0)
                assert moved, (mipdiag("-c", ha2_socket), mipdiag("-l", mn_socket))
                assert wait_until(lambda: cache_line(ha_socket) is None, 10.0)
                assert HA2_ADDRESS in mipdiag("-l", mn_socket)
                assert wait_until(lambda: reachable(cn), 10.0), "CN lost the MN after the switch"
                seen = wait_until(lambda: switch_seen(pcap, coa), 10.0)
                assert seen, summary(pcap)
            time.sleep(0.5)
        finally:
            result = stream.stop()
        ha_stats = request(ha_socket, {"cmd": "stats"})["home_agent"]
        assert ha_stats["drain_switch_sent"] >= 1 and ha_stats["drain_switch_followed"] == 1
        mn_stats = request(mn_socket, {"cmd": "stats"})["mobile_node"]
        assert mn_stats["home_agent"] == HA2_ADDRESS
        assert mn_stats["home_agent_switch"]["switch_completed"] == 1
        print(
            json.dumps(
                {
                    "test": "home_agent_switch",
                    "ping_100pps": {
                        "sent": result.sent,
                        "received": result.received,
                        "longest_gap_ms": round(result.max_gap_s * 1000),
                    },
                    "ha1_drain": drain_status(ha_socket),
                }
            )
        )

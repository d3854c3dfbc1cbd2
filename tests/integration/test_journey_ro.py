"""The HOWTO §5 journey with route optimization (HOWTO FAQ 4, RFC 6275 §5.2, §11.3, §11.6).

Real agents on all three sides: HA (``deploy/network-mip6.conf.ha``), MN
(``deploy/network-mip6.conf.mn``, route optimization on by default) and CN
(``deploy/nfq-mip6-cn.toml``). Data from the CN reaching the MN through the HA tunnel starts
return routability; afterwards the CN and the MN talk directly (RH2 one way, HAO the other,
both rewritten by NFQUEUE on a kernel without MIPv6). ``ro off`` on the MN sends the traffic
back through the tunnel; at home no binding is left anywhere.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import pytest
from test_journey import mipdiag, reachable
from test_mobile_node import running_agent, wait_until

from nfq_mip6.control import request
from nfq_mip6.testbed import Testbed, care_of_address
from nfq_mip6.testbed.testbed import Node
from nfq_mip6.testbed.topology import CN_ADDRESS, MN_HOME_ADDRESS
from nfq_mip6.wire import parse_ipv6
from tests.support.howto import CN, HOA

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
HA_CONFIG = REPO / "deploy" / "network-mip6.conf.ha"
MN_CONFIG = REPO / "deploy" / "network-mip6.conf.mn"
CN_CONFIG = REPO / "deploy" / "nfq-mip6-cn.toml"


def correspondent_binding(cn_socket: Path) -> str | None:
    """The CoA of the HoA's binding in the CN's cache (``mipdiag -c``, type 1), or None."""
    for row in request(cn_socket, {"cmd": "cache"})["bindings"]:
        if row["home_address"] == MN_HOME_ADDRESS:
            return str(row["care_of_address"])
    return None


def bound_to(cn_socket: Path, mn_socket: Path, coa: str) -> bool:
    """Both ends agree: the CN's binding names ``coa`` and the MN's BUL entry is in force."""
    entries = request(mn_socket, {"cmd": "bul"})["entries"]
    mn_side = any(e["recipient"] == CN_ADDRESS and e["state"] == 1 for e in entries)
    return mn_side and correspondent_binding(cn_socket) == coa


def both_ends_bound(cn: Node, sockets: dict[str, Path], coa: str) -> bool:
    return reachable(cn) and bound_to(sockets["cn"], sockets["mn"], coa)


def direct_packets(pcap: Path) -> tuple[int, int]:
    """(CN → CoA with an RH2 naming the HoA, CoA → CN with an HAO naming the HoA)."""
    from scapy.layers.inet6 import IPv6
    from scapy.utils import rdpcap

    rh2 = hao = 0
    for frame in rdpcap(str(pcap)):
        if IPv6 not in frame:
            continue
        packet = parse_ipv6(bytes(frame[IPv6]))
        if packet.src == CN and packet.rh2_address == HOA:
            rh2 += 1
        if packet.dst == CN and packet.home_address == HOA:
            hao += 1
    return rh2, hao


def test_route_optimized_journey(testbed_home: Testbed, tmp_path: Path) -> None:
    bed = testbed_home
    ha, mn, cn = bed.node("ha"), bed.node("mn"), bed.node("cn")
    sockets = {name: tmp_path / f"{name}.sock" for name in ("ha", "mn", "cn")}
    with (
        running_agent(ha, HA_CONFIG, sockets["ha"]),
        running_agent(mn, MN_CONFIG, sockets["mn"]),
        running_agent(cn, CN_CONFIG, sockets["cn"]),
    ):
        assert request(sockets["mn"], {"cmd": "ro"})["route_optimization"] is True
        for link in ("visitnet", "visitnet2"):
            coa = care_of_address(link)
            bed.move(link)
            # The CN's data reaches the MN through the tunnel first, which starts return
            # routability (HoTI through the HA, CoTI directly) and the CN registration.
            assert wait_until(lambda: reachable(cn), 10.0), f"CN lost the MN at {link}"
            converged = functools.partial(both_ends_bound, cn, sockets, coa)
            assert wait_until(converged, 20.0), (
                mipdiag("-c", sockets["cn"]),
                mipdiag("-l", sockets["mn"]),
            )
            # Now the CN and the MN talk directly: RH2 one way, HAO the other.
            with bed.capture(link, tmp_path / f"{link}.pcap") as pcap:
                pinged = cn.run(["ping", "-6", "-n", "-c", "3", "-i", "0.2", MN_HOME_ADDRESS])
                assert " 0% packet loss" in pinged.stdout, pinged.stdout
                assert wait_until(lambda: min(direct_packets(pcap)) >= 3, 5.0), direct_packets(pcap)
            listing = mipdiag("-l", sockets["mn"])
            assert f"Recipient CN: {CN_ADDRESS}" in listing, listing

        # ro off on the MN: its correspondent binding and rule go, its traffic to the CN
        # takes the tunnel again. (The CN keeps its binding, and so its RH2s, until it
        # expires: the MN core does not de-register at the CN on "ro off".)
        answer = request(sockets["mn"], {"cmd": "ro", "set": False})
        assert answer == {"ok": True, "route_optimization": False}
        entries = request(sockets["mn"], {"cmd": "bul"})["entries"]
        assert [e["recipient"] for e in entries] == [
            e["recipient"] for e in entries if e["home_registration"]
        ]
        with bed.capture("visitnet2", tmp_path / "tunnel.pcap") as pcap:
            assert wait_until(lambda: reachable(cn), 10.0)
            time.sleep(0.1)
        assert direct_packets(pcap)[1] == 0
        # ro on again: the CN's next packets start return routability again.
        request(sockets["mn"], {"cmd": "ro", "set": True})
        coa = care_of_address("visitnet2")
        assert wait_until(functools.partial(both_ends_bound, cn, sockets, coa), 20.0)

        # Home: no binding anywhere, the CN reaches the HoA directly on the home link.
        bed.move("home")
        assert wait_until(lambda: correspondent_binding(sockets["cn"]) is None, 15.0)
        assert wait_until(lambda: not request(sockets["ha"], {"cmd": "cache"})["bindings"], 15.0)
        assert wait_until(lambda: reachable(cn), 10.0)

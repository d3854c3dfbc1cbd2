"""Route optimization on the NFQUEUE data path (``ro_datapath = "nfqueue"``) with the real
agents carrying TCP.

HA, MN and CN agents on the HOWTO test bed, the MN on visitnet and bound at the CN, every
RO data packet rewritten in user space at both ends. What a user observes:

* both agents report the ``nfqueue`` data path;
* with each binding the host routes are in place: at the CN ``HoA/128`` with the interface
  MTU less 24, at the MN ``CN/128`` with ``src`` HoA and the same MTU, plus the rule that
  routes the packet rewritten to ``from CoA`` by the main table (RFC 6275 §9.3.2, §11.3.1);
* iperf3 TCP CN → HoA and MN → CN complete; the MN's client, not bound to an address,
  talks from the HoA;
* on visitnet the TCP segments go CN → CoA with an RH2 and CoA → CN with an HAO, none in
  the clear between CN and HoA, none over 1500 octets, and every TCP checksum is valid for
  the home address (§6.1.1: the pseudo-header holds the HoA at both ends);
* a 1500-octet ping crosses both ways (fragmented at the source by the route MTU);
* after a ``kill -9`` of the MN agent, the next one restores its CN binding from the state
  store: the NFQUEUE rule, the route and the re-route rule are there once each and RO
  traffic flows.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
from test_journey_ro import CN_CONFIG, HA_CONFIG, MN_CONFIG, both_ends_bound
from test_mobile_node import running_agent, wait_until

from nfq_mip6.control import request
from nfq_mip6.testbed import Testbed, care_of_address
from nfq_mip6.testbed.topology import CN_ADDRESS, MN_HOME_ADDRESS

pytestmark = pytest.mark.netns

COA = care_of_address("visitnet")
IPPROTO_TCP = 6


def ones_complement_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = int.from_bytes(data, "big") % 0xFFFF  # 2**16 == 1 (mod 0xFFFF)
    return total or 0xFFFF if data.strip(b"\0") else 0


def tcp_checksum_ok(source: str, destination: str, segment: bytes) -> bool:
    """The segment's checksum with the pseudo-header (source, destination) (RFC 8200 §8.1)."""
    from ipaddress import IPv6Address

    pseudo = IPv6Address(source).packed + IPv6Address(destination).packed
    pseudo += len(segment).to_bytes(4, "big") + bytes(3) + bytes([IPPROTO_TCP])
    return ones_complement_sum(pseudo + segment) == 0xFFFF


def tcp_on_the_wire(pcap: Path) -> dict[str, Any]:
    """TCP segments between the CN and the MN in a visitnet capture, as RO puts them."""
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import HAO, IPv6, IPv6ExtHdrRouting
    from scapy.utils import rdpcap

    found: dict[str, Any] = {"rh2": 0, "hao": 0, "plain": 0, "bad_checksum": 0, "largest": 0}
    for frame in rdpcap(str(pcap)):
        if IPv6 not in frame or TCP not in frame:
            continue
        ip = frame[IPv6]
        found["largest"] = max(found["largest"], 40 + ip.plen)
        segment = bytes(frame[TCP])
        if ip.src == CN_ADDRESS and ip.dst == COA and IPv6ExtHdrRouting in frame:
            assert frame[IPv6ExtHdrRouting].addresses == [MN_HOME_ADDRESS]
            found["rh2"] += 1
            found["bad_checksum"] += not tcp_checksum_ok(CN_ADDRESS, MN_HOME_ADDRESS, segment)
        elif ip.src == COA and ip.dst == CN_ADDRESS and HAO in frame:
            assert frame[HAO].hoa == MN_HOME_ADDRESS
            found["hao"] += 1
            found["bad_checksum"] += not tcp_checksum_ok(MN_HOME_ADDRESS, CN_ADDRESS, segment)
        elif {ip.src, ip.dst} & {MN_HOME_ADDRESS}:
            found["plain"] += 1
    return found


def test_tcp_over_the_nfqueue_data_path(
    testbed_home: Testbed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NFQ_MIP6_AGENT__RO_DATAPATH", "nfqueue")
    bed = testbed_home
    ha, mn, cn = bed.node("ha"), bed.node("mn"), bed.node("cn")
    sockets = {name: tmp_path / f"{name}.sock" for name in ("ha", "mn", "cn")}
    with (
        running_agent(ha, HA_CONFIG, sockets["ha"]),
        running_agent(cn, CN_CONFIG, sockets["cn"]),
    ):
        with running_agent(mn, MN_CONFIG, sockets["mn"]) as mn_agent:
            carry_tcp(bed, sockets, tmp_path)
            mn_agent.kill()  # kill -9: rule, route and rules stay in the kernel
            mn_agent.wait(timeout=10)
        with running_agent(mn, MN_CONFIG, sockets["mn"]):
            # restored from the state store: the CN binding's rule, route and re-route
            # rule are there once each (no duplicates), and RO traffic flows
            correspondents = [
                e for e in request(sockets["mn"], {"cmd": "bul"})["entries"]
                if e["recipient"] == CN_ADDRESS
            ]  # fmt: skip
            assert [e["state"] for e in correspondents] == [1], correspondents
            chain = mn.run(["ip6tables", "-t", "mangle", "-S", "NFQMIP6-MN-RO"]).stdout
            assert chain.count(f"-d {CN_ADDRESS}/128") == 1, chain
            routes = mn.run(["ip", "-6", "route", "show", "table", "6277", CN_ADDRESS]).stdout
            assert len(routes.strip().splitlines()) == 1, routes
            rules = mn.run(["ip", "-6", "rule", "show"]).stdout
            assert rules.count(f"from {COA} to {CN_ADDRESS} lookup main") == 1, rules
            assert rules.count(f"to {CN_ADDRESS} lookup 6277") == 1, rules
            ping = cn.run(["ping", "-6", "-n", "-c", "10", "-i", "0.05", MN_HOME_ADDRESS])
            assert " 0% packet loss" in ping.stdout, ping.stdout


def carry_tcp(bed: Testbed, sockets: dict[str, Path], tmp_path: Path) -> None:
    """Bound on visitnet over NFQUEUE; routes; TCP both ways; what the wire shows."""
    mn, cn = bed.node("mn"), bed.node("cn")
    converged = functools.partial(both_ends_bound, cn, sockets, COA)
    bed.move("visitnet")
    assert wait_until(converged, 40.0), request(sockets["cn"], {"cmd": "cache"})
    for name in ("cn", "mn"):
        datapath = request(sockets[name], {"cmd": "stats"})["ro_datapath"]
        assert datapath["datapath"] == "nfqueue", datapath

    cn_route = cn.run(["ip", "-6", "route", "show", f"{MN_HOME_ADDRESS}/128"]).stdout
    assert "mtu 1476" in cn_route, cn_route
    mn_route = mn.run(["ip", "-6", "route", "show", "table", "6277", CN_ADDRESS]).stdout
    assert f"src {MN_HOME_ADDRESS}" in mn_route and "mtu 1476" in mn_route, mn_route
    rules = mn.run(["ip", "-6", "rule", "show"]).stdout
    assert f"from {COA} to {CN_ADDRESS} lookup main" in rules, rules

    with bed.capture("visitnet", tmp_path / "visitnet-tcp.pcap") as pcap:
        to_mn = bed.iperf3("cn", "mn", MN_HOME_ADDRESS, seconds=2)
        to_cn = bed.iperf3("mn", "cn", CN_ADDRESS, seconds=2, port=5202)
        big_to_mn = cn.run(
            ["ping", "-6", "-n", "-c", "3", "-s", "1452", "-W", "2", MN_HOME_ADDRESS],
            check=False,
        )
        big_to_cn = mn.run(
            ["ping", "-6", "-n", "-c", "3", "-s", "1452", "-W", "2", CN_ADDRESS],
            check=False,
        )
    for report in (to_mn, to_cn):
        assert report["end"]["sum_received"]["bytes"] > 0, report["end"]
    assert to_cn["start"]["connected"][0]["local_host"] == MN_HOME_ADDRESS
    assert big_to_mn.returncode == 0, big_to_mn.stdout
    assert big_to_cn.returncode == 0, big_to_cn.stdout
    wire = tcp_on_the_wire(pcap)
    print("visitnet TCP:", wire, "Mbit/s:",
          round(to_mn["end"]["sum_received"]["bits_per_second"] / 1e6, 1),
          round(to_cn["end"]["sum_received"]["bits_per_second"] / 1e6, 1))  # fmt: skip
    assert wire["rh2"] > 100 and wire["hao"] > 100, wire
    assert wire["plain"] == 0 and wire["bad_checksum"] == 0, wire
    assert wire["largest"] <= 1500, wire

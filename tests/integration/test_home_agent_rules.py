"""rules/ha.rules on the real kernel: what ``--queue-bypass`` does while no agent listens,
and that unloading leaves the tables exactly as they were (rules/README.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv6Address

import pytest
from helpers import ip, ns_run

from nfq_mip6.wire import BindingUpdate, BUFlags, build_ipv6_packet, build_mh, parse_ipv6
from nfq_mip6.wire.mh import IPPROTO_MH
from tests.support.vectors import HA

pytestmark = pytest.mark.netns

TAG = f"h4r{os.getpid():x}"
NS_MN, NS_HA = f"{TAG}-mn", f"{TAG}-ha"
MN = IPv6Address("2001:db8:b::2")
HOA = IPv6Address("2001:db8:a::4")
QUEUE = 23

SEND_AND_LISTEN = r"""
import select, socket, sys, time
rx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
tx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
tx.setsockopt(socket.IPPROTO_IPV6, 36, 1)
tx.sendto(bytes.fromhex(sys.argv[1]), (sys.argv[2], 0))
deadline = time.monotonic() + float(sys.argv[3])
while (left := deadline - time.monotonic()) > 0 and select.select([rx], [], [], left)[0]:
    data, _ = rx.recvfrom(4096)
    if data[0] == 4:  # Parameter Problem
        print(data.hex())
        break
"""


@pytest.fixture(scope="module")
def pair() -> Iterator[None]:
    try:
        ip("netns", "add", NS_MN)
        ip("netns", "add", NS_HA)
        ip("-n", NS_MN, "link", "add", "m0", "type", "veth", "peer", "name", "h0", "netns", NS_HA)
        ip("-n", NS_HA, "link", "add", "hh0", "type", "veth", "peer", "name", "hh1")
        for ns, devs in ((NS_MN, ("lo", "m0")), (NS_HA, ("lo", "h0", "hh0", "hh1"))):
            for dev in devs:
                ip("-n", ns, "link", "set", dev, "up")
        ip("-n", NS_MN, "-6", "addr", "add", f"{MN}/64", "dev", "m0", "nodad")
        ip("-n", NS_MN, "-6", "route", "add", "2001:db8:a::/64", "via", "2001:db8:b::1")
        ip("-n", NS_HA, "-6", "addr", "add", "2001:db8:b::1/64", "dev", "h0", "nodad")
        ip("-n", NS_HA, "-6", "addr", "add", f"{HA}/64", "dev", "hh0", "nodad")
        yield
    finally:
        for ns in (NS_MN, NS_HA):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def rules(action: str, bypass: bool) -> None:
    script = (
        "import sys\n"
        "from nfq_mip6.io.iptables import RuleSet, rules_path\n"
        f"rs = RuleSet.from_file(rules_path('ha.rules'), dict(queue={QUEUE}, "
        f"bypass={' --queue-bypass' if bypass else ''!r}, ha_address='{HA}', "
        "home_prefix='2001:db8:a::/64', ha_anycast='2001:db8:a::fdff:ffff:ffff:fffe', "
        "mss=1400, mss_above=1401, seg6_only='', interface='h0', nd_mark='0x6275'))\n"
        f"rs.{action}()\n"
    )
    ns_run(NS_HA, sys.executable, "-c", script)


def bu_with_hao() -> bytes:
    mh = build_mh(BindingUpdate(1, BUFlags.A | BUFlags.H, 10), HOA, HA)
    return build_ipv6_packet(MN, HA, IPPROTO_MH, mh, home_address=HOA)


def send(wait: float) -> bytes | None:
    out = ns_run(NS_MN, sys.executable, "-c", SEND_AND_LISTEN, bu_with_hao().hex(), str(HA),
                 str(wait)).strip()  # fmt: skip
    return bytes.fromhex(out) if out else None


def test_queue_bypass_without_agent_lets_the_kernel_answer_parameter_problem(pair: None) -> None:
    rules("load", bypass=True)
    try:
        reply = send(2.0)
    finally:
        rules("unload", bypass=True)
    assert reply is not None, "no Parameter Problem: the packet did not reach the kernel"
    assert reply[1] == 2  # code 2: unrecognized IPv6 option (the HAO)
    assert int.from_bytes(reply[4:8], "big") == 46  # IPv6 header + 2 + PadN(4): the HAO type
    invoking = parse_ipv6(reply[8:])
    assert invoking.home_address == HOA


def test_without_bypass_and_without_agent_the_packet_is_silently_dropped(pair: None) -> None:
    rules("load", bypass=False)
    try:
        assert send(0.5) is None
        counters = ns_run(NS_HA, "ip6tables", "-t", "raw", "-L", "NFQMIP6-HA-PRE", "-v", "-x",
                          "-n")  # fmt: skip
    finally:
        rules("unload", bypass=False)
    first_rule = counters.splitlines()[2].split()
    assert int(first_rule[0]) == 1  # queued once (and dropped: nobody listens)


def test_unload_restores_the_tables_exactly(pair: None) -> None:
    def saved() -> str:
        text = ns_run(NS_HA, "ip6tables-save")
        return "\n".join(line for line in text.splitlines() if not line.startswith("#"))

    before = saved()
    rules("load", bypass=False)
    assert "NFQMIP6-HA" in saved()
    rules("unload", bypass=False)
    assert saved() == before


@pytest.mark.parametrize("per_request_pyroute2", [True, False], ids=["pyroute2", "rtnetlink"])
def test_both_install_paths_really_install_encap_red(
    pair: None, per_request_pyroute2: bool
) -> None:
    """pyroute2 0.9.7 silently turns mode "encap.red" into "encap" (an SRH on the wire)
    unless patched (docs/kernel-notes.md §4); the hand-packed path must say encap.red as well."""
    script = (
        "from ipaddress import IPv6Address as A, IPv6Network as N\n"
        "from nfq_mip6.dataplane.netlink import NetlinkDataplane\n"
        f"d = NetlinkDataplane('hh0', A('{HA}'), N('2001:db8:a::/64'), "
        f"per_request_pyroute2={per_request_pyroute2})\n"
        f"d.install_tunnel(A('{HOA}'), A('{MN}'))\n"
    )
    ns_run(NS_HA, "ip", "-6", "route", "flush", "table", "6275", check=False)
    ns_run(NS_HA, sys.executable, "-c", script)
    try:
        encap = ns_run(NS_HA, "ip", "-6", "route", "show", "table", "6275")
        decap = ns_run(NS_HA, "ip", "-6", "route", "show", "table", "6276")
    finally:
        ns_run(NS_HA, "ip", "-6", "route", "flush", "table", "6275", check=False)
        ns_run(NS_HA, "ip", "-6", "route", "flush", "table", "6276", check=False)
    assert f"{HOA}  encap seg6 mode encap.red segs 1 [ {MN} ]" in encap
    assert "proto 173" in encap
    assert f"{HA} from {MN}  encap seg6local action End.DX6 nh6 ::" in decap

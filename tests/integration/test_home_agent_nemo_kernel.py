"""Mobile network prefixes on the real kernel (RFC 3963 §6.4): the HA dataplane routes a
registered prefix into the seg6 encap.red tunnel to the mobile router's care-of address, a
correspondent's packet to a node of that network arrives there tunnelled, a CoA change moves
it, removal leaves nothing behind (route and policy rule)."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import IPv6Address

import pytest
from helpers import NemoHosts, ns_run

pytestmark = pytest.mark.netns

HA, HOA, CN = NemoHosts.HA, NemoHosts.HOA, NemoHosts.CN
COA, COA2 = NemoHosts.COA, NemoHosts.COA2
MNP, MNN = NemoHosts.MNP, NemoHosts.MNN  # MNN: a mobile network node

LISTEN = r"""
import select, socket, sys
rx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 41)  # IPv6-in-IPv6 to this CoA
print("ready", flush=True)
while select.select([rx], [], [], 10)[0]:
    data, peer = rx.recvfrom(4096)
    if data[0] >> 4 == 6:  # the inner packet (raw IPv6 sockets strip the outer header)
        print(peer[0], socket.inet_ntop(socket.AF_INET6, data[8:24]),
              socket.inet_ntop(socket.AF_INET6, data[24:40]), flush=True)
        break
"""


def dataplane(hosts: NemoHosts, *calls: str) -> None:
    """Run dataplane calls in the HA namespace (a fresh instance reads the kernel back)."""
    script = (
        "from ipaddress import IPv6Address as A, IPv6Network as N\n"
        "from nfq_mip6.dataplane.netlink import NetlinkDataplane\n"
        f"d = NetlinkDataplane('hh0', A('{HA}'), N('{NemoHosts.HOME_PREFIX}'))\n"
        "d.setup()\n" + "".join(f"{call}\n" for call in calls)
    )
    ns_run(hosts.ha, sys.executable, "-c", script)


def tunnelled_to(hosts: NemoHosts, dst: IPv6Address) -> list[str]:
    """Ping ``dst`` from the CN; what the mobile router's raw proto-41 socket saw."""
    listener = subprocess.Popen(
        ["ip", "netns", "exec", hosts.mr, sys.executable, "-c", LISTEN],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert listener.stdout is not None
    assert listener.stdout.readline().strip() == "ready"
    ns_run(hosts.cn, "ping", "-6", "-c", "2", "-i", "0.2", "-W", "1", str(dst), check=False)
    out, _ = listener.communicate(timeout=30)
    return out.split()


def test_rfc3963_6_4_prefix_follows_the_tunnel_and_is_removed(nemo_hosts: NemoHosts) -> None:
    hosts = nemo_hosts
    dataplane(
        hosts,
        f"d.install_tunnel(A('{HOA}'), A('{COA}'))",
        f"d.install_prefix_routes(A('{COA}'), [N('{MNP}')])",
    )
    routes = ns_run(hosts.ha, "ip", "-6", "route", "show", "table", "6275")
    assert f"{MNP}  encap seg6 mode encap.red segs 1 [ {COA} ]" in routes
    assert f"to {MNP} lookup 6275" in ns_run(hosts.ha, "ip", "-6", "rule")
    # the correspondent's packet to a mobile network node arrives tunnelled HA -> CoA
    assert tunnelled_to(hosts, MNN) == [str(HA), str(CN), str(MNN)]
    # a CoA change moves the prefix with the home address
    dataplane(
        hosts,
        f"d.install_tunnel(A('{HOA}'), A('{COA2}'))",
        f"d.install_prefix_routes(A('{COA2}'), [N('{MNP}')])",
        f"assert d.prefix_routes() == {{N('{MNP}'): A('{COA2}')}}, d.prefix_routes()",
        f"assert d.tunnels() == {{A('{HOA}'): A('{COA2}')}}, d.tunnels()",
    )
    # removal: no route, no rule; the home address's tunnel is untouched
    dataplane(
        hosts,
        f"d.remove_prefix_routes([N('{MNP}')])",
        "assert d.prefix_routes() == {}",
        f"d.remove_tunnel(A('{HOA}'))",
    )
    assert MNP not in ns_run(hosts.ha, "ip", "-6", "route", "show", "table", "6275")
    assert f"to {MNP}" not in ns_run(hosts.ha, "ip", "-6", "rule")


def test_reconcile_restores_a_lost_prefix_route_and_drops_a_stale_one(
    nemo_hosts: NemoHosts,
) -> None:
    hosts = nemo_hosts
    stale = "2001:db8:78::/48"
    dataplane(
        hosts,
        f"d.install_tunnel(A('{HOA}'), A('{COA}'))",
        f"d.install_prefix_routes(A('{COA}'), [N('{stale}')])",
        f"r = d.reconcile_prefixes({{N('{MNP}'): A('{COA}')}})",
        "assert (r.added, r.removed, r.failed) == (1, 1, 0), r",
        f"assert d.prefix_routes() == {{N('{MNP}'): A('{COA}')}}",
    )
    try:
        assert tunnelled_to(hosts, MNN) == [str(HA), str(CN), str(MNN)]
        assert f"to {stale}" not in ns_run(hosts.ha, "ip", "-6", "rule")
    finally:
        dataplane(hosts, f"d.remove_prefix_routes([N('{MNP}')])", f"d.remove_tunnel(A('{HOA}'))")


SEND_TUNNELLED = r"""
import ipaddress, socket, struct, sys
def echo(src, dst):
    s, d = ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed
    body = b"\x80\x00\x00\x00\x00\x01\x00\x01"
    data = s + d + struct.pack("!I", len(body)) + b"\0\0\0\x3a" + body
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    body = body[:2] + struct.pack("!H", ~total & 0xFFFF) + body[4:]
    return struct.pack("!IHBB", 6 << 28, len(body), 58, 64) + s + d + body
tx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 41)
tx.bind((sys.argv[1], 0))
for inner in sys.argv[3:]:
    tx.sendto(echo(inner, sys.argv[2]), (HA_ADDRESS, 0))
""".replace("HA_ADDRESS", repr(str(HA)))

LOAD_RULES = (
    "import sys\n"
    "from nfq_mip6.io.iptables import RuleSet, rules_path\n"
    "rs = RuleSet.from_file(rules_path('ha.rules'), dict(queue=31, bypass=' --queue-bypass', "
    f"ha_address='{HA}', home_prefix='{NemoHosts.HOME_PREFIX}', "
    "ha_anycast='2001:db8:a::fdff:ffff:ffff:fffe', mss=1400, mss_above=1401, seg6_only='', "
    "interface='hh0', nd_mark='0x6275'))\n"
    "getattr(rs, sys.argv[1])()\n"
)


def echo_requests_at_cn(hosts: NemoHosts) -> int:
    """Echo Requests the CN's interface received (its ICMPv6 input counter)."""
    out = ns_run(hosts.cn, "cat", "/proc/net/snmp6")
    return int(
        next(line.split()[1] for line in out.splitlines() if line.startswith("Icmp6InEchos "))
    )


def test_rfc3963_6_5_reverse_tunnel_accepts_only_the_routers_sources(nemo_hosts: NemoHosts) -> None:
    hosts = nemo_hosts
    """Inner source in the home address or a registered prefix: forwarded; anything else from
    the router's CoA: dropped and counted; a plain CoA's traffic is not affected."""
    ns_run(hosts.ha, sys.executable, "-c", LOAD_RULES, "load")
    check = (
        "from ipaddress import IPv6Address as A, IPv6Network as N\n"
        "from nfq_mip6.runtime.mobile_network_sources import MobileNetworkSourceCheck\n"
        f"c = MobileNetworkSourceCheck(A('{HA}'))\n"
    )
    try:
        dataplane(hosts, f"d.install_tunnel(A('{HOA}'), A('{COA}'))")
        ns_run(
            hosts.ha,
            sys.executable,
            "-c",
            check + f"assert c.install(A('{HOA}'), A('{COA}'), [N('{MNP}')])",
        )
        before = echo_requests_at_cn(hosts)
        ns_run(
            hosts.mr, sys.executable, "-c", SEND_TUNNELLED, str(COA), str(CN),
            str(MNN), "2001:db8:99::5", str(HOA), "2001:db8:77:2::9",
        )  # fmt: skip
        assert echo_requests_at_cn(hosts) - before == 3  # MNN, HoA and another MNP address
        dropped = ns_run(
            hosts.ha, "ip6tables", "-t", "filter", "-L", "NFQMIP6-HA-MRSRC", "-v", "-x", "-n"
        )
        assert int(dropped.splitlines()[-1].split()[0]) == 1  # the forged 2001:db8:99::5
        read = (
            "from nfq_mip6.runtime.mobile_network_sources import rejected_packets as r\nprint(r())"
        )
        assert ns_run(hosts.ha, sys.executable, "-c", read).strip() == "1"  # what the HA reports
    finally:
        dataplane(hosts, f"d.remove_tunnel(A('{HOA}'))")
        ns_run(hosts.ha, sys.executable, "-c", LOAD_RULES, "unload", check=False)

"""A mobile network through the tunnel on the real kernel (RFC 3963 §5.5, §6.4): the HA's
dataplane routes the prefix to the router's care-of address, the router's dataplane forwards
between the tunnel and its LAN; a correspondent pings a mobile network node and gets the
reply back through the HA, and back home the router's tunnel state goes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.netns

TAG = f"mr{os.getpid():x}"
NS_CN, NS_HA, NS_MR, NS_MNN = f"{TAG}-cn", f"{TAG}-ha", f"{TAG}-mr", f"{TAG}-mnn"
HA, HOA, CN, COA = "2001:db8:a::1", "2001:db8:a::4", "2001:db8:c::2", "2001:db8:b::2"
MNP, MR_LAN, MNN = "2001:db8:77::/48", "2001:db8:77:1::1", "2001:db8:77:1::5"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


def ns_run(ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{argv}: {done.stdout} {done.stderr}")
    return done


@pytest.fixture(scope="module")
def hosts() -> Iterator[None]:
    try:
        for ns in (NS_CN, NS_HA, NS_MR, NS_MNN):
            ip("netns", "add", ns)
        ip("-n", NS_CN, "link", "add", "c0", "type", "veth", "peer", "name", "hc0", "netns", NS_HA)
        ip("-n", NS_MR, "link", "add", "m0", "type", "veth", "peer", "name", "hm0", "netns", NS_HA)
        ip("-n", NS_MR, "link", "add", "l0", "type", "veth", "peer", "name", "n0", "netns", NS_MNN)
        ip("-n", NS_HA, "link", "add", "hh0", "type", "veth", "peer", "name", "hh1")
        for ns, devs in (
            (NS_CN, ("lo", "c0")),
            (NS_MR, ("lo", "m0", "l0")),
            (NS_MNN, ("lo", "n0")),
            (NS_HA, ("lo", "hc0", "hm0", "hh0", "hh1")),
        ):
            for dev in devs:
                ip("-n", ns, "link", "set", dev, "up")
        ip("-n", NS_CN, "-6", "addr", "add", f"{CN}/64", "dev", "c0", "nodad")
        ip("-n", NS_CN, "-6", "route", "add", "default", "via", "2001:db8:c::1")
        ip("-n", NS_HA, "-6", "addr", "add", "2001:db8:c::1/64", "dev", "hc0", "nodad")
        ip("-n", NS_HA, "-6", "addr", "add", "2001:db8:b::1/64", "dev", "hm0", "nodad")
        ip("-n", NS_HA, "-6", "addr", "add", f"{HA}/64", "dev", "hh0", "nodad")
        ip("-n", NS_MR, "-6", "addr", "add", f"{COA}/64", "dev", "m0", "nodad")
        ip("-n", NS_MR, "-6", "addr", "add", f"{MR_LAN}/64", "dev", "l0", "nodad")
        ip("-n", NS_MR, "-6", "route", "add", "default", "via", "2001:db8:b::1")
        ns_run(NS_MR, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        ip("-n", NS_MNN, "-6", "addr", "add", f"{MNN}/64", "dev", "n0", "nodad")
        ip("-n", NS_MNN, "-6", "route", "add", "default", "via", MR_LAN)
        yield
    finally:
        for ns in (NS_CN, NS_HA, NS_MR, NS_MNN):
            subprocess.run(["ip", "netns", "del", ns], check=False)


HA_SETUP = (
    "from ipaddress import IPv6Address as A, IPv6Network as N\n"
    "from nfq_mip6.dataplane.netlink import NetlinkDataplane\n"
    f"d = NetlinkDataplane('hh0', A('{HA}'), N('2001:db8:a::/64'))\n"
    "d.setup()\n"
    f"d.install_tunnel(A('{HOA}'), A('{COA}'))\n"
    f"d.install_prefix_routes(A('{COA}'), [N('{MNP}')])\n"
)

MR_SCRIPT = (
    "import sys\n"
    "from ipaddress import IPv6Address as A, IPv6Interface as I, IPv6Network as N\n"
    "from nfq_mip6.dataplane.mobile_node import MobileNodeDataplane\n"
    f"k = MobileNodeDataplane('m0', I('{HOA}/64'), mobile_network_prefixes=(N('{MNP}'),), "
    "mobile_network_interface='l0')\n"
    f"if sys.argv[1] == 'away':\n    k.install_reverse_tunnel(A('{COA}'), A('{HA}'))\n"
    "else:\n    k.remove_reverse_tunnel()\n"
)


def tunnelled(ns: str) -> int:
    out = ns_run(ns, "ip6tables", "-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n").stdout
    return int(out.splitlines()[-1].split()[0])


def test_rfc3963_cn_reaches_a_mobile_network_node_through_the_tunnel(hosts: None) -> None:
    ns_run(NS_HA, sys.executable, "-c", HA_SETUP)
    ns_run(NS_MR, sys.executable, "-c", MR_SCRIPT, "away")
    # the router: from-prefix rule into the reverse tunnel, a delivery route toward the LAN
    assert f"from {MNP} lookup" in ns_run(NS_MR, "ip", "-6", "rule").stdout
    assert MNP in ns_run(NS_MR, "ip", "-6", "route", "show", "table", "local").stdout
    # counting rules (no target) for the tunnelled packets each end receives
    ns_run(NS_HA, "ip6tables", "-t", "raw", "-A", "PREROUTING", "-p", "41", "-s", COA)
    ns_run(NS_MR, "ip6tables", "-t", "raw", "-A", "PREROUTING", "-p", "41", "-s", HA)
    ping = ns_run(NS_CN, "ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", MNN, check=False)
    assert " 0% packet loss" in ping.stdout, ping.stdout
    # both directions went through the tunnel: 3 requests HA -> CoA, 3 replies CoA -> HA
    assert tunnelled(NS_MR) == 3 and tunnelled(NS_HA) == 3
    assert MNP not in ns_run(NS_HA, "ip", "-6", "route", "show").stdout  # no other way
    # back home: the router forwards as a plain router; its tunnel state is gone
    ns_run(NS_MR, sys.executable, "-c", MR_SCRIPT, "home")
    assert f"from {MNP}" not in ns_run(NS_MR, "ip", "-6", "rule").stdout
    assert MNP not in ns_run(NS_MR, "ip", "-6", "route", "show", "table", "local").stdout

"""A mobile network through the tunnel on the real kernel (RFC 3963 §5.5, §6.4): the HA's
dataplane routes the prefix to the router's care-of address, the router's dataplane forwards
between the tunnel and its LAN; a correspondent pings a mobile network node and gets the
reply back through the HA, and back home the router's tunnel state goes."""

from __future__ import annotations

import sys

import pytest
from helpers import NemoHosts, ns_run

pytestmark = pytest.mark.netns

HA, HOA, CN, COA = NemoHosts.HA, NemoHosts.HOA, NemoHosts.CN, NemoHosts.COA
MNP, MNN = NemoHosts.MNP, NemoHosts.MNN


HA_SETUP = (
    "from ipaddress import IPv6Address as A, IPv6Network as N\n"
    "from nfq_mip6.dataplane.netlink import NetlinkDataplane\n"
    f"d = NetlinkDataplane('hh0', A('{HA}'), N('{NemoHosts.HOME_PREFIX}'))\n"
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
    out = ns_run(ns, "ip6tables", "-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n")
    return int(out.splitlines()[-1].split()[0])


def test_rfc3963_cn_reaches_a_mobile_network_node_through_the_tunnel(
    nemo_hosts: NemoHosts,
) -> None:
    ha, mr, cn = nemo_hosts.ha, nemo_hosts.mr, nemo_hosts.cn
    ns_run(mr, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    ns_run(ha, sys.executable, "-c", HA_SETUP)
    ns_run(mr, sys.executable, "-c", MR_SCRIPT, "away")
    # the router: from-prefix rule into the reverse tunnel, a delivery route toward the LAN
    assert f"from {MNP} lookup" in ns_run(mr, "ip", "-6", "rule")
    assert MNP in ns_run(mr, "ip", "-6", "route", "show", "table", "local")
    # counting rules (no target) for the tunnelled packets each end receives
    ns_run(ha, "ip6tables", "-t", "raw", "-A", "PREROUTING", "-p", "41", "-s", str(COA))
    ns_run(mr, "ip6tables", "-t", "raw", "-A", "PREROUTING", "-p", "41", "-s", str(HA))
    ping = ns_run(cn, "ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", str(MNN), check=False)
    assert " 0% packet loss" in ping, ping
    # both directions went through the tunnel: 3 requests HA -> CoA, 3 replies CoA -> HA
    assert tunnelled(mr) == 3 and tunnelled(ha) == 3
    assert MNP not in ns_run(ha, "ip", "-6", "route", "show")  # no other way
    # back home: the router forwards as a plain router; its tunnel state is gone
    ns_run(mr, sys.executable, "-c", MR_SCRIPT, "home")
    assert f"from {MNP}" not in ns_run(mr, "ip", "-6", "rule")
    assert MNP not in ns_run(mr, "ip", "-6", "route", "show", "table", "local")

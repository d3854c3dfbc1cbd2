"""Mobile Node core as a mobile router (RFC 3963 §5): the home registration BUs it sends."""

from __future__ import annotations

from ipaddress import IPv6Network

from nfq_mip6.mobility.events import MovedToForeignLink, SendMobilityMessage
from nfq_mip6.mobility.mobile_node import MobileNode, MobileNodeConfig
from nfq_mip6.wire.mh import BindingUpdate, BUFlags
from nfq_mip6.wire.options import AlternateCareofAddress, MobileNetworkPrefix
from tests.support.vectors import COA, HA, HOA, PREFIX

MNP = IPv6Network("2001:db8:77::/48")
MNP2 = IPv6Network("2001:db8:78:1::/64")


def first_home_bu(**router: object) -> BindingUpdate:
    config = MobileNodeConfig(home_address=HOA, home_prefix=PREFIX, home_agent=HA, **router)  # type: ignore[arg-type]
    mn = MobileNode(config)
    actions = mn.handle(MovedToForeignLink(COA), 0.0)
    [bu] = [
        a.message
        for a in actions
        if isinstance(a, SendMobilityMessage) and isinstance(a.message, BindingUpdate)
    ]
    assert isinstance(bu, BindingUpdate)
    return bu


def test_rfc3963_5_2_explicit_mode_sends_r_and_one_prefix_option_each() -> None:
    bu = first_home_bu(mobile_router=True, mobile_network_prefixes=(MNP, MNP2))
    assert bu.flags & BUFlags.R and bu.flags & BUFlags.H
    assert bu.options == (
        AlternateCareofAddress(COA),
        MobileNetworkPrefix.of(MNP),
        MobileNetworkPrefix.of(MNP2),
    )


def test_rfc3963_5_2_implicit_mode_sends_r_without_prefix_options() -> None:
    bu = first_home_bu(mobile_router=True, mobile_network_prefixes=(MNP,), explicit_prefixes=False)
    assert bu.flags & BUFlags.R
    assert bu.options == (AlternateCareofAddress(COA),)


def test_a_plain_mobile_node_sends_neither() -> None:
    bu = first_home_bu()
    assert not bu.flags & BUFlags.R and bu.options == (AlternateCareofAddress(COA),)


def test_rfc3963_5_5_a_mobile_router_forwards_and_still_hears_router_advertisements() -> None:
    from nfq_mip6.runtime.mobile_node import node_sysctls

    plain = dict(node_sysctls("eth0", False))
    assert plain["/proc/sys/net/ipv6/conf/eth0/accept_ra"] == "1"
    assert "/proc/sys/net/ipv6/conf/all/forwarding" not in plain
    router = node_sysctls("eth0", True)
    assert dict(router)["/proc/sys/net/ipv6/conf/eth0/accept_ra"] == "2"
    assert router[-1] == ("/proc/sys/net/ipv6/conf/all/forwarding", "1")  # after accept_ra

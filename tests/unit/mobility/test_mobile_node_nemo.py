"""Mobile Node core as a mobile router (RFC 3963 §5): the home registration BUs it sends."""

from __future__ import annotations

from ipaddress import IPv6Network

from nfq_mip6.mobility.events import (
    Action,
    BindingRegistered,
    BindingRejected,
    InstallReverseTunnel,
    MobileRouterNotAcknowledged,
    MobilityMessageReceived,
    MovedToForeignLink,
    SendDhaadRequest,
    SendMobilityMessage,
)
from nfq_mip6.mobility.mobile_node import MobileNode, MobileNodeConfig
from nfq_mip6.wire.mh import BAFlags, BAStatus, BindingAck, BindingUpdate, BUFlags
from nfq_mip6.wire.options import AlternateCareofAddress, MobileNetworkPrefix
from tests.support.vectors import COA, HA, HOA, PREFIX

MNP = IPv6Network("2001:db8:77::/48")
MNP2 = IPv6Network("2001:db8:78:1::/64")


def first_home_bu(**router: object) -> BindingUpdate:
    return registration(**router)[1]


def registration(**router: object) -> tuple[MobileNode, BindingUpdate]:
    """A mobile node configured with ``router`` that moved away: its first home BU."""
    config = MobileNodeConfig(home_address=HOA, home_prefix=PREFIX, home_agent=HA, **router)  # type: ignore[arg-type]
    mn = MobileNode(config)
    actions = mn.handle(MovedToForeignLink(COA), 0.0)
    [bu] = [
        a.message
        for a in actions
        if isinstance(a, SendMobilityMessage) and isinstance(a.message, BindingUpdate)
    ]
    assert isinstance(bu, BindingUpdate)
    return mn, bu


def answer(mn: MobileNode, bu: BindingUpdate, status: int, flags: BAFlags) -> list[Action]:
    ba = BindingAck(status, flags, bu.sequence, 0 if status >= 128 else bu.lifetime)
    return mn.handle(MobilityMessageReceived(ba, HA, COA, routing_address=HOA), 1.0)


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
    router = node_sysctls("eth0", True, "lan0")
    assert dict(router)["/proc/sys/net/ipv6/conf/eth0/accept_ra"] == "2"
    # per interface, after accept_ra: the moving interface stays a host (optimistic DAD)
    assert router[-2:] == [
        ("/proc/sys/net/ipv6/conf/eth0/force_forwarding", "1"),
        ("/proc/sys/net/ipv6/conf/lan0/force_forwarding", "1"),
    ]
    assert not any(path.endswith("all/forwarding") for path, _value in router)


def test_rfc3963_5_3_an_acceptance_with_r_is_a_plain_registration() -> None:
    mn, bu = registration(mobile_router=True, mobile_network_prefixes=(MNP,))
    actions = answer(mn, bu, BAStatus.ACCEPTED, BAFlags.R)
    assert any(isinstance(a, BindingRegistered) for a in actions)
    assert any(isinstance(a, InstallReverseTunnel) for a in actions)
    assert not any(isinstance(a, MobileRouterNotAcknowledged) for a in actions)


def test_rfc3963_5_3_an_acceptance_without_r_is_reported() -> None:
    """The HA took the BU as a plain mobile node's: the binding holds (the home address is
    served), and the core says that the mobile network is not."""
    mn, bu = registration(mobile_router=True, mobile_network_prefixes=(MNP,))
    actions = answer(mn, bu, BAStatus.ACCEPTED, BAFlags.NONE)
    assert any(isinstance(a, BindingRegistered) for a in actions)
    [report] = [a for a in actions if isinstance(a, MobileRouterNotAcknowledged)]
    assert (report.home_address, report.peer, report.status) == (HOA, HA, 0)


def test_a_plain_mobile_node_ignores_r_in_the_acknowledgement() -> None:
    mn, bu = registration()
    actions = answer(mn, bu, BAStatus.ACCEPTED, BAFlags.NONE)
    assert not any(isinstance(a, MobileRouterNotAcknowledged) for a in actions)


def test_rfc3963_5_3_statuses_140_to_143_end_the_registration() -> None:
    for status in range(140, 144):
        mn, bu = registration(mobile_router=True, mobile_network_prefixes=(MNP,))
        actions = answer(mn, bu, status, BAFlags.NONE)
        [rejected] = [a for a in actions if isinstance(a, BindingRejected)]
        assert rejected.status == status
        assert not any(isinstance(a, InstallReverseTunnel) for a in actions)
        assert mn.binding_update_list_rows(2.0) == []


def test_rfc3963_7_1_a_mobile_router_sets_r_in_its_dhaad_requests() -> None:
    """Without a configured home agent the router asks for one that supports mobile routers,
    in the first request and in the retransmissions; a plain mobile node does not."""
    for router, expected in ((True, True), (False, False)):
        config = MobileNodeConfig(
            home_address=HOA,
            home_prefix=PREFIX,
            home_agent=None,
            mobile_router=router,
            mobile_network_prefixes=(MNP,) if router else (),
        )
        mn = MobileNode(config)
        first = [
            a for a in mn.handle(MovedToForeignLink(COA), 0.0) if isinstance(a, SendDhaadRequest)
        ]
        again = [a for a in mn.handle_timer(10.0) if isinstance(a, SendDhaadRequest)]
        assert first and again
        assert all(request.mobile_router is expected for request in first + again)

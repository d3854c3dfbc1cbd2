"""Home Agent core, NEMO Basic Support (RFC 3963 §6, §7): one rule per test."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

from nfq_mip6.mobility.events import (
    Action,
    BindingRegistered,
    BindingRejected,
    DhaadRequestReceived,
    ForwardingSetupFailed,
    InstallHomeTunnel,
    MobilityMessageReceived,
    RemoveHomeTunnel,
    SendDhaadReply,
    SendMobilityMessage,
)
from nfq_mip6.mobility.home_agent import HomeAgent, HomeAgentConfig
from nfq_mip6.mobility.nemo import MobileRouterPolicy
from nfq_mip6.wire.mh import BAFlags, BAStatus, BindingAck, BindingUpdate, BUFlags
from nfq_mip6.wire.options import AlternateCareofAddress, MobileNetworkPrefix
from tests.support.vectors import COA, COA2, HA, HOA, PREFIX

MNP = IPv6Network("2001:db8:77::/48")
MNP_SUB = IPv6Network("2001:db8:77:5::/64")
OTHER_HOA = IPv6Address(int(HOA) + 1)
ROUTER_FLAGS = BUFlags.A | BUFlags.H | BUFlags.R


def make_ha(*, routers: bool = True) -> HomeAgent:
    policies = (
        (
            MobileRouterPolicy((IPv6Network(f"{HOA}/128"),), (MNP,)),
            MobileRouterPolicy((IPv6Network(f"{OTHER_HOA}/128"),), (IPv6Network("2001:db8::/40"),)),
        )
        if routers
        else ()
    )
    return HomeAgent(
        HomeAgentConfig(
            address=HA, home_prefixes=(PREFIX,), proxy_dad=False, mobile_routers=policies
        )
    )


def bu(
    *prefixes: MobileNetworkPrefix,
    seq: int = 1,
    lifetime: int = 100,
    coa: IPv6Address = COA,
    hoa: IPv6Address = HOA,
    flags: BUFlags = ROUTER_FLAGS,
) -> MobilityMessageReceived:
    message = BindingUpdate(seq, flags, lifetime, (AlternateCareofAddress(coa), *prefixes))
    return MobilityMessageReceived(message, coa, HA, home_address=hoa)


def the_ba(actions: list[Action]) -> BindingAck:
    sends = [a.message for a in actions if isinstance(a, SendMobilityMessage)]
    assert len(sends) == 1, actions
    assert isinstance(sends[0], BindingAck)
    return sends[0]


def tunnels(actions: list[Action]) -> list[InstallHomeTunnel]:
    return [a for a in actions if isinstance(a, InstallHomeTunnel)]


def test_rfc3963_6_2_implicit_mode_registers_the_configured_prefixes() -> None:
    ha = make_ha()
    actions = ha.handle(bu(), 0.0)
    ba = the_ba(actions)
    assert ba.status == BAStatus.ACCEPTED
    assert tunnels(actions) == [InstallHomeTunnel(HOA, COA, (MNP,), ())]
    entry = ha.cache.get(HOA)
    assert entry is not None and entry.prefixes == (MNP,)
    assert ha.binding_cache_rows(0.0)[0].prefixes == (MNP,)
    assert ha.binding_cache_rows(0.0)[0].control_json()["prefixes"] == [str(MNP)]


def test_rfc3963_6_2_explicit_mode_registers_the_prefixes_in_the_bu() -> None:
    ha = make_ha()
    actions = ha.handle(bu(MobileNetworkPrefix.of(MNP_SUB)), 0.0)
    assert the_ba(actions).status == BAStatus.ACCEPTED
    assert tunnels(actions) == [InstallHomeTunnel(HOA, COA, (MNP_SUB,), ())]


def test_rfc3963_4_2_accepted_router_bu_gets_r_in_the_ba() -> None:
    ha = make_ha()
    assert the_ba(ha.handle(bu(), 0.0)).flags & BAFlags.R


def test_rfc3963_4_2_plain_bu_gets_no_r_and_no_prefixes() -> None:
    ha = make_ha()
    actions = ha.handle(bu(flags=BUFlags.A | BUFlags.H), 0.0)
    assert not the_ba(actions).flags & BAFlags.R
    assert tunnels(actions) == [InstallHomeTunnel(HOA, COA)]


def test_rfc3963_6_2_status_140_when_not_allowed_to_act_as_router() -> None:
    ha = make_ha(routers=False)
    actions = ha.handle(bu(), 0.0)
    ba = the_ba(actions)
    assert ba.status == BAStatus.MOBILE_ROUTER_OPERATION_NOT_PERMITTED
    assert not ba.flags & BAFlags.R
    assert not tunnels(actions) and ha.cache.get(HOA) is None


def test_rfc3963_6_2_status_140_for_a_home_address_without_router_policy() -> None:
    ha = make_ha()
    stranger = IPv6Address(int(HOA) + 7)
    ba = the_ba(ha.handle(bu(hoa=stranger), 0.0))
    assert ba.status == BAStatus.MOBILE_ROUTER_OPERATION_NOT_PERMITTED


def test_rfc3963_6_2_status_141_for_invalid_prefixes() -> None:
    invalid = [
        MobileNetworkPrefix(IPv6Address("fe80::"), 64),  # link-local
        MobileNetworkPrefix(IPv6Address("ff0e::"), 16),  # multicast
        MobileNetworkPrefix(IPv6Address("2001:db8:77::"), 129),  # bad length
        MobileNetworkPrefix(IPv6Address("2001:db8:77::"), 0),  # no prefix at all
        MobileNetworkPrefix(IPv6Address("2001:db8:77::1"), 64),  # bits beyond the length
        MobileNetworkPrefix.of(PREFIX),  # the home link itself
    ]
    for option in invalid:
        ha = make_ha()
        actions = ha.handle(bu(option), 0.0)
        assert the_ba(actions).status == BAStatus.INVALID_PREFIX, option
        assert not tunnels(actions) and ha.cache.get(HOA) is None


def test_rfc3963_6_2_status_142_for_a_prefix_outside_the_policy() -> None:
    ha = make_ha()
    outside = MobileNetworkPrefix(IPv6Address("2001:db8:99::"), 48)
    actions = ha.handle(bu(MobileNetworkPrefix.of(MNP), outside), 0.0)
    assert the_ba(actions).status == BAStatus.NOT_AUTHORIZED_FOR_PREFIX
    assert not tunnels(actions)


def test_rfc3963_6_2_status_142_for_a_prefix_another_router_holds() -> None:
    ha = make_ha()
    assert the_ba(ha.handle(bu(), 0.0)).status == BAStatus.ACCEPTED
    # the other router's policy (/40) covers MNP, but MNP is registered by HOA
    actions = ha.handle(bu(MobileNetworkPrefix.of(MNP_SUB), hoa=OTHER_HOA, coa=COA2), 1.0)
    assert the_ba(actions).status == BAStatus.NOT_AUTHORIZED_FOR_PREFIX
    other = IPv6Network("2001:db8:78::/48")
    actions = ha.handle(bu(MobileNetworkPrefix.of(other), hoa=OTHER_HOA, coa=COA2), 2.0)
    assert the_ba(actions).status == BAStatus.ACCEPTED


def test_rfc3963_6_2_status_143_when_forwarding_setup_fails() -> None:
    ha = make_ha()
    ha.handle(bu(seq=3), 0.0)
    actions = ha.handle(ForwardingSetupFailed(HOA, "ENOMEM"), 0.0)
    ba = the_ba(actions)
    assert ba.status == BAStatus.FORWARDING_SETUP_FAILED and ba.sequence == 3
    assert RemoveHomeTunnel(HOA, (MNP,)) in actions
    assert any(isinstance(a, BindingRejected) and a.status == 143 for a in actions)
    assert ha.cache.get(HOA) is None or not ha.cache.get(HOA).live  # type: ignore[union-attr]
    # a second report without a pending registration is only noted
    assert not [
        a for a in ha.handle(ForwardingSetupFailed(HOA), 0.0) if isinstance(a, SendMobilityMessage)
    ]


def test_rfc3963_6_4_coa_change_replaces_tunnel_and_prefixes_in_one_step() -> None:
    ha = make_ha()
    ha.handle(bu(seq=1), 0.0)
    actions = ha.handle(bu(seq=2, coa=COA2), 1.0)
    assert tunnels(actions) == [InstallHomeTunnel(HOA, COA2, (MNP,), ())]
    assert the_ba(actions).flags & BAFlags.R


def test_rfc3963_6_2_refresh_with_fewer_prefixes_withdraws_the_others() -> None:
    ha = make_ha()
    second = IPv6Network("2001:db8:77:9::/64")
    ha.handle(bu(MobileNetworkPrefix.of(MNP_SUB), MobileNetworkPrefix.of(second), seq=1), 0.0)
    actions = ha.handle(bu(MobileNetworkPrefix.of(MNP_SUB), seq=2), 1.0)
    assert tunnels(actions) == [InstallHomeTunnel(HOA, COA, (MNP_SUB,), (second,))]
    # the same set again changes no route
    assert tunnels(ha.handle(bu(MobileNetworkPrefix.of(MNP_SUB), seq=3), 2.0)) == []
    # dropping R withdraws every prefix
    actions = ha.handle(bu(seq=4, flags=BUFlags.A | BUFlags.H), 3.0)
    assert tunnels(actions) == [InstallHomeTunnel(HOA, COA, (), (MNP_SUB,))]


def test_rfc3963_6_2_deregistration_removes_the_prefix_routes() -> None:
    ha = make_ha()
    ha.handle(bu(seq=1), 0.0)
    actions = ha.handle(bu(seq=2, lifetime=0), 1.0)
    assert the_ba(actions).status == BAStatus.ACCEPTED
    assert RemoveHomeTunnel(HOA, (MNP,)) in actions


def test_rfc3963_6_2_expiry_removes_the_prefix_routes() -> None:
    ha = make_ha()
    ha.handle(bu(seq=1, lifetime=1), 0.0)
    actions = ha.handle_timer(10.0)
    assert RemoveHomeTunnel(HOA, (MNP,)) in actions
    # the prefix is free again for another router
    actions = ha.handle(bu(MobileNetworkPrefix.of(MNP), hoa=OTHER_HOA, coa=COA2), 11.0)
    assert the_ba(actions).status == BAStatus.ACCEPTED


def test_rfc3963_6_2_first_registration_after_proxy_dad_keeps_the_prefixes() -> None:
    from nfq_mip6.mobility.events import ProxyDadCompleted

    ha = HomeAgent(
        HomeAgentConfig(
            address=HA,
            home_prefixes=(PREFIX,),
            mobile_routers=(MobileRouterPolicy((IPv6Network(f"{HOA}/128"),), (MNP,)),),
        )
    )
    ha.handle(bu(), 0.0)
    actions = ha.handle(ProxyDadCompleted(HOA, duplicate=False), 1.0)
    assert tunnels(actions) == [InstallHomeTunnel(HOA, COA, (MNP,), ())]
    assert the_ba(actions).flags & BAFlags.R
    assert any(isinstance(a, BindingRegistered) for a in actions)


def test_rfc3963_7_dhaad_with_r_lists_only_router_capable_home_agents() -> None:
    ha = make_ha()
    [reply] = ha.handle(DhaadRequestReceived(5, COA, HA, mobile_router=True), 0.0)
    assert reply == SendDhaadReply(5, HA, COA, (HA,), True)
    plain = make_ha(routers=False)
    [reply] = plain.handle(DhaadRequestReceived(6, COA, HA, mobile_router=True), 0.0)
    assert reply == SendDhaadReply(6, HA, COA, (), True)
    [reply] = plain.handle(DhaadRequestReceived(7, COA, HA), 0.0)
    assert reply == SendDhaadReply(7, HA, COA, (HA,), False)

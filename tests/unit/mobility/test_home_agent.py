"""Home Agent core: RFC 6275 §10.3 check order and statuses, one rule per test."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv6Address

import pytest

from nfq_mip6.mobility.binding import BindingState
from nfq_mip6.mobility.correspondent import CorrespondentConfig, CorrespondentNode
from nfq_mip6.mobility.events import (
    Action,
    BindingDeleted,
    BindingExpired,
    BindingRegistered,
    DhaadRequestReceived,
    HomePrefixAdvertised,
    InstallHomeTunnel,
    InstallRouteOptimization,
    MessageDiscarded,
    MobilePrefixSolicitationReceived,
    MobilityHeaderRejected,
    MobilityMessageReceived,
    OwnHomeAgentInformation,
    ProxyDadCompleted,
    RemoveHomeTunnel,
    RemoveRouteOptimization,
    RouterAdvertisementReceived,
    SendDhaadReply,
    SendMobilePrefixAdvertisement,
    SendMobilityMessage,
    StartProxyDad,
    StartProxyNeighbor,
    StopProxyNeighbor,
)
from nfq_mip6.mobility.home_agent import HomeAgent, HomeAgentConfig
from nfq_mip6.wire.mh import (
    BAStatus,
    BindingAck,
    BindingError,
    BindingUpdate,
    BUFlags,
    UnknownMobilityMessage,
)
from nfq_mip6.wire.options import (
    AlternateCareofAddress,
    BindingRefreshAdvice,
    NonceIndices,
)
from tests.support.vectors import COA, COA2, HA, HOA, PREFIX


def make_ha(**kwargs: object) -> HomeAgent:
    config = HomeAgentConfig(address=HA, home_prefixes=(PREFIX,), **kwargs)  # type: ignore[arg-type]
    return HomeAgent(config)


def home_bu(
    seq: int = 1,
    lifetime_units: int = 100,
    coa: IPv6Address = COA,
    hoa: IPv6Address = HOA,
    flags: BUFlags = BUFlags.A | BUFlags.H,
    extra: tuple[object, ...] = (),
    src: IPv6Address | None = None,
    hao: bool = True,
) -> MobilityMessageReceived:
    options = (AlternateCareofAddress(coa), *extra)
    message = BindingUpdate(seq, flags, lifetime_units, options)  # type: ignore[arg-type]
    return MobilityMessageReceived(message, src or coa, HA, home_address=hoa if hao else None)


def only_ba(actions: list[Action]) -> SendMobilityMessage:
    sends = [a for a in actions if isinstance(a, SendMobilityMessage)]
    assert len(sends) == 1, actions
    assert isinstance(sends[0].message, BindingAck)
    return sends[0]


def ba_of(actions: list[Action]) -> BindingAck:
    message = only_ba(actions).message
    assert isinstance(message, BindingAck)
    return message


def registered(ha: HomeAgent, now: float = 0.0, **kwargs: object) -> list[Action]:
    actions = ha.handle(home_bu(**kwargs), now)  # type: ignore[arg-type]
    assert actions == [StartProxyDad(HOA, None)]
    return ha.handle(ProxyDadCompleted(HOA, duplicate=False), now + 1)


def test_ha_first_registration_starts_proxy_dad_then_ba_after_dad() -> None:
    ha = make_ha()
    actions = ha.handle(home_bu(), 0.0)
    assert actions == [StartProxyDad(HOA, None)]
    assert ha.cache.get(HOA).state is BindingState.DAD_PENDING  # type: ignore[union-attr]
    actions = ha.handle(ProxyDadCompleted(HOA, duplicate=False), 1.0)
    assert actions[0] == InstallHomeTunnel(HOA, COA)
    assert actions[1] == InstallRouteOptimization(HOA, COA)
    assert actions[2] == StartProxyNeighbor(HOA, None)
    ba = ba_of(actions)
    assert (ba.status, ba.sequence, ba.lifetime) == (0, 1, 100)
    assert isinstance(actions[-1], BindingRegistered)
    assert ha.cache.get(HOA).expires_at == 1.0 + 400  # type: ignore[union-attr]


def test_ha_ba_goes_to_bu_source_with_rh2_home_address() -> None:
    send = only_ba(registered(make_ha()))
    assert (send.src, send.dst, send.routing_address, send.home_address) == (HA, COA, HOA, None)


def test_ha_retransmitted_bu_during_dad_is_ignored() -> None:
    ha = make_ha()
    ha.handle(home_bu(seq=1), 0.0)
    actions = ha.handle(home_bu(seq=2), 0.5)
    assert all(isinstance(a, MessageDiscarded) for a in actions)


def test_ha_dad_failure_gets_134_and_no_binding() -> None:
    ha = make_ha()
    ha.handle(home_bu(flags=BUFlags.H), 0.0)  # A = 0: the BA is sent anyway
    actions = ha.handle(ProxyDadCompleted(HOA, duplicate=True), 1.0)
    assert ba_of(actions).status == BAStatus.DUPLICATE_ADDRESS_DETECTION_FAILED
    assert HOA not in ha.cache


def test_ha_link_local_compatibility_proxies_derived_link_local() -> None:
    ha = make_ha()
    actions = ha.handle(home_bu(flags=BUFlags.A | BUFlags.H | BUFlags.L), 0.0)
    assert actions == [StartProxyDad(HOA, IPv6Address("fe80::100"))]


def test_ha_ba_sent_regardless_of_a_bit() -> None:
    ha = make_ha(proxy_dad=False)
    assert ba_of(ha.handle(home_bu(flags=BUFlags.H), 0.0)).status == 0


def test_ha_not_configured_as_home_agent_gets_131() -> None:
    ha = make_ha(enabled=False)
    assert ba_of(ha.handle(home_bu(), 0.0)).status == BAStatus.HOME_REGISTRATION_NOT_SUPPORTED


def test_ha_home_address_not_on_home_prefix_gets_132() -> None:
    ha = make_ha()
    actions = ha.handle(home_bu(hoa=IPv6Address("2001:db8:b::100")), 0.0)
    send = only_ba(actions)
    assert ba_of(actions).status == BAStatus.NOT_HOME_SUBNET
    assert send.routing_address == IPv6Address("2001:db8:b::100")


def test_ha_dereg_without_binding_gets_133() -> None:
    ha = make_ha()
    assert ba_of(ha.handle(home_bu(lifetime_units=0), 0.0)).status == 133


def test_ha_dereg_coa_equals_hoa_without_binding_gets_133_without_rh2() -> None:
    ha = make_ha()
    actions = ha.handle(home_bu(coa=HOA, src=HOA, hao=False), 0.0)
    send = only_ba(actions)
    assert ba_of(actions).status == 133
    assert (send.dst, send.routing_address) == (HOA, None)


@pytest.mark.parametrize("old_seq", [1, 0, 32770])
def test_ha_sequence_not_newer_gets_135_with_last_accepted(old_seq: int) -> None:
    ha = make_ha()
    registered(ha, seq=1)
    ba = ba_of(ha.handle(home_bu(seq=old_seq), 5.0))
    assert (ba.status, ba.sequence) == (BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, 1)
    assert ha.cache.get(HOA).care_of_address == COA  # type: ignore[union-attr]


def test_ha_dereg_with_old_sequence_gets_135_and_keeps_binding() -> None:
    ha = make_ha()
    registered(ha, seq=10)
    actions = ha.handle(home_bu(seq=9, coa=HOA, src=HOA, hao=False, lifetime_units=0), 5.0)
    assert ba_of(actions).status == 135 and only_ba(actions).routing_address is None
    assert HOA in ha.cache


MN_MAC = bytes.fromhex("02000000000a")


def from_home_link(event: MobilityMessageReceived, interface: int = 3) -> MobilityMessageReceived:
    return replace(event, interface_index=interface, link_source=MN_MAC)


def test_ha_answers_a_bu_from_the_home_link_on_the_home_link() -> None:
    """§10.3.2: the MN at home (no HAO, source = HoA, in on the home interface) gets its BA
    in a frame to its link-layer address; routing would use the tunnel to the old CoA."""
    ha = make_ha(home_interface_index=3)
    registered(ha, seq=10)
    stale = from_home_link(home_bu(seq=9, coa=HOA, src=HOA, hao=False, lifetime_units=0))
    assert only_ba(ha.handle(stale, 5.0)).link_destination == MN_MAC
    dereg = from_home_link(home_bu(seq=11, coa=HOA, src=HOA, hao=False, lifetime_units=0))
    actions = ha.handle(dereg, 6.0)
    assert ba_of(actions).status == 0 and only_ba(actions).link_destination == MN_MAC


def test_ha_routes_the_answer_to_a_bu_from_elsewhere() -> None:
    dereg = home_bu(coa=HOA, src=HOA, hao=False, lifetime_units=0)
    other_interface = from_home_link(dereg, interface=4)
    assert (
        only_ba(make_ha(home_interface_index=3).handle(other_interface, 0.0)).link_destination
        is None
    )
    unknown_home_interface = from_home_link(dereg)
    assert only_ba(make_ha().handle(unknown_home_interface, 0.0)).link_destination is None
    with_hao = from_home_link(home_bu(lifetime_units=0))
    assert only_ba(make_ha(home_interface_index=3).handle(with_hao, 0.0)).link_destination is None


def test_ha_max_binding_lifetime_reconfigured_for_the_next_registrations() -> None:
    ha = make_ha()
    ha.set_max_binding_lifetime(8)
    assert ba_of(registered(ha)).lifetime == 2  # 8 s in 4 s units


def test_ha_any_sequence_accepted_without_binding() -> None:
    for seq in (0, 32768, 65535):
        ha = make_ha(proxy_dad=False)
        assert ba_of(ha.handle(home_bu(seq=seq), 0.0)).status == 0


def test_ha_registration_type_change_gets_139() -> None:
    cn = CorrespondentNode(CorrespondentConfig(address=HA), random_bytes=lambda n: bytes(n))
    ha = HomeAgent(HomeAgentConfig(address=HA, home_prefixes=(PREFIX,)), correspondent=cn)
    from nfq_mip6.mobility.binding import BindingCacheEntry

    cn.cache.insert(
        BindingCacheEntry(
            HOA, COA, sequence=3, flags=0, lifetime=100, now=0.0, home_registration=False
        )
    )
    ba = ba_of(ha.handle(home_bu(), 1.0))
    assert ba.status == BAStatus.REGISTRATION_TYPE_CHANGE_DISALLOWED
    assert cn.cache.get(HOA).home_registration is False  # type: ignore[union-attr]


def test_ha_insufficient_resources_gets_130() -> None:
    ha = make_ha(proxy_dad=False, max_bindings=1)
    ha.handle(home_bu(), 0.0)
    other = IPv6Address("2001:db8:a::200")
    assert ba_of(ha.handle(home_bu(hoa=other), 0.0)).status == 130


@pytest.mark.parametrize(
    "bad",
    [IPv6Address("fe80::1"), IPv6Address("ff02::1"), IPv6Address("::")],
)
def test_ha_link_local_or_multicast_home_address_silently_discarded(bad: IPv6Address) -> None:
    ha = make_ha()
    actions = ha.handle(home_bu(hoa=bad), 0.0)
    assert all(isinstance(a, MessageDiscarded) for a in actions) and actions
    assert ha.stats.NBindUpdatesDropInvalid == 1


@pytest.mark.parametrize("bad", [IPv6Address("fe80::1"), IPv6Address("ff05::2")])
def test_ha_link_local_or_multicast_coa_silently_discarded_binding_kept(bad: IPv6Address) -> None:
    ha = make_ha()
    registered(ha)
    actions = ha.handle(home_bu(seq=2, coa=bad, src=COA), 5.0)
    assert all(isinstance(a, MessageDiscarded) for a in actions)
    assert ha.cache.get(HOA).care_of_address == COA  # type: ignore[union-attr]


def test_ha_nonce_indices_in_home_bu_silently_discarded() -> None:
    ha = make_ha()
    actions = ha.handle(home_bu(extra=(NonceIndices(1, 2),)), 0.0)
    assert all(isinstance(a, MessageDiscarded) for a in actions)
    assert HOA not in ha.cache


def test_ha_unprotected_bu_silently_discarded() -> None:
    ha = make_ha()
    event = home_bu()
    unprotected = MobilityMessageReceived(
        event.message, event.src, event.dst, event.home_address, ipsec_protected=False
    )
    assert all(isinstance(a, MessageDiscarded) for a in ha.handle(unprotected, 0.0))
    assert ha.stats.NBindUpdatesDropAuth == 1


def test_ha_lifetime_capped_by_policy_default_262140() -> None:
    ha = make_ha(proxy_dad=False)
    assert ba_of(ha.handle(home_bu(lifetime_units=0xFFFF), 0.0)).lifetime == 0xFFFF


def test_ha_lifetime_capped_by_mipl_policy_1000s() -> None:
    ha = make_ha(proxy_dad=False, max_binding_lifetime=1000)
    assert ba_of(ha.handle(home_bu(lifetime_units=0xFFFF), 0.0)).lifetime == 250


def test_ha_lifetime_capped_by_prefix_valid_lifetime() -> None:
    ha = make_ha(proxy_dad=False)
    ha.handle(HomePrefixAdvertised(PREFIX, valid_lifetime=86400, preferred_lifetime=None), 0.0)
    ba = ba_of(ha.handle(home_bu(lifetime_units=0xFFFF), 0.0))
    assert ba.lifetime * 4 <= 86400 and ba.status == 0


def test_ha_deprecated_prefix_gets_status_1() -> None:
    ha = make_ha(proxy_dad=False)
    ha.handle(HomePrefixAdvertised(PREFIX, valid_lifetime=1000, preferred_lifetime=100), 0.0)
    ba = ba_of(ha.handle(home_bu(lifetime_units=100), 0.0))
    assert ba.status == BAStatus.ACCEPTED_PREFIX_DISCOVERY_NECESSARY and ba.lifetime == 100


def test_ha_refresh_advice_included_when_shorter_than_lifetime() -> None:
    ha = make_ha(proxy_dad=False, refresh_advice=200)
    assert ba_of(ha.handle(home_bu(lifetime_units=100), 0.0)).options == (BindingRefreshAdvice(50),)
    ha2 = make_ha(proxy_dad=False, refresh_advice=2000)
    assert ba_of(ha2.handle(home_bu(lifetime_units=100), 0.0)).options == ()


def test_ha_new_coa_replaces_tunnel() -> None:
    ha = make_ha()
    registered(ha)
    actions = ha.handle(home_bu(seq=2, coa=COA2), 10.0)
    assert actions[:2] == [InstallHomeTunnel(HOA, COA2), InstallRouteOptimization(HOA, COA2)]
    assert ba_of(actions).status == 0
    assert only_ba(actions).dst == COA2


def test_ha_dereg_removes_tunnel_and_proxy_ba_lifetime_zero_no_bra() -> None:
    ha = make_ha(refresh_advice=40)
    registered(ha)
    actions = ha.handle(home_bu(seq=2, coa=HOA, src=HOA, hao=False, lifetime_units=0), 10.0)
    assert actions[:2] == [RemoveHomeTunnel(HOA), StopProxyNeighbor(HOA, None)]
    ba = ba_of(actions)
    assert (ba.status, ba.lifetime, ba.options, ba.sequence) == (0, 0, (), 2)
    send = only_ba(actions)
    assert (send.dst, send.routing_address) == (HOA, None)
    assert isinstance(actions[-1], BindingDeleted) and HOA not in ha.cache


def test_ha_dereg_lifetime_zero_from_coa_uses_rh2() -> None:
    ha = make_ha()
    registered(ha)
    actions = ha.handle(home_bu(seq=2, lifetime_units=0), 10.0)
    assert only_ba(actions).routing_address == HOA and ba_of(actions).status == 0


def test_ha_binding_expiry_tears_down() -> None:
    ha = make_ha()
    registered(ha, lifetime_units=10)  # 40 s from DAD completion at t = 1
    assert ha.next_deadline() == 41.0
    assert ha.handle_timer(40.9) == []
    actions = ha.handle_timer(41.0)
    assert actions[:3] == [
        RemoveHomeTunnel(HOA),
        StopProxyNeighbor(HOA, None),
        RemoveRouteOptimization(HOA),
    ]
    assert isinstance(actions[3], BindingExpired)
    assert ha.next_deadline() is None


def test_ha_after_dereg_hao_packet_gets_be1() -> None:
    ha = make_ha()
    registered(ha)
    assert ha.check_home_address_option(COA, HOA, 2.0) == []
    ha.handle(home_bu(seq=2, lifetime_units=0), 3.0)
    actions = ha.check_home_address_option(COA, HOA, 4.0)
    assert isinstance(actions[0], SendMobilityMessage)
    error = actions[0].message
    assert isinstance(error, BindingError) and error.status == 1 and error.home_address == HOA


def test_ha_unknown_mh_type_gets_be2_to_source() -> None:
    ha = make_ha()
    event = MobilityMessageReceived(UnknownMobilityMessage(0xFF, b""), COA, HA)
    (send,) = ha.handle(event, 0.0)
    assert isinstance(send, SendMobilityMessage) and send.dst == COA
    assert isinstance(send.message, BindingError) and send.message.status == 2
    assert send.message.home_address == IPv6Address("::")


def test_ha_unknown_mh_type_from_multicast_source_no_be() -> None:
    ha = make_ha()
    event = MobilityMessageReceived(UnknownMobilityMessage(8, b""), IPv6Address("ff02::1"), HA)
    assert ha.handle(event, 0.0) == []


def test_ha_dhaad_reply_decreasing_preference_at_most_77() -> None:
    ha = make_ha(preference=50)
    for i in range(100):
        ha.handle(
            RouterAdvertisementReceived(
                IPv6Address(f"fe80::{i + 2:x}"),
                home_agent_flag=True,
                router_lifetime=1800,
                ha_preference=i,
                global_addresses=(IPv6Address(f"2001:db8:a::{i + 2:x}"),),
            ),
            0.0,
        )
    (reply,) = ha.handle(
        DhaadRequestReceived(7, COA, IPv6Address("2001:db8:a::fdff:ffff:ffff:fffe")), 1.0
    )
    assert isinstance(reply, SendDhaadReply) and reply.identifier == 7 and reply.dst == COA
    assert len(reply.home_agents) == 77
    assert reply.home_agents[0] == IPv6Address("2001:db8:a::65")  # preference 99
    assert HA in reply.home_agents  # own preference 50 is in the top 77
    assert IPv6Address("2001:db8:a::2") not in reply.home_agents  # preference 0 truncated
    assert reply.home_agents.index(HA) == reply.home_agents.index(IPv6Address("2001:db8:a::34")) - 1


def test_ha_home_agent_list_h0_or_lifetime0_removes_entry() -> None:
    ha = make_ha()
    ra = RouterAdvertisementReceived(
        IPv6Address("fe80::2"), True, 1800, 5, None, (IPv6Address("2001:db8:a::2"),)
    )
    ha.handle(ra, 0.0)
    assert len(ha.home_agent_list_rows(0.0)) == 1
    ha.handle(RouterAdvertisementReceived(IPv6Address("fe80::2"), False, 1800), 1.0)
    assert ha.home_agent_list_rows(1.0) == []
    ha.handle(ra, 2.0)
    ha.handle(RouterAdvertisementReceived(IPv6Address("fe80::2"), True, 1800, 5, 0), 3.0)
    assert ha.home_agent_list_rows(3.0) == []


def test_ha_home_agent_list_entry_expires() -> None:
    ha = make_ha()
    ha.handle(
        RouterAdvertisementReceived(
            IPv6Address("fe80::2"), True, 30, None, None, (IPv6Address("2001:db8:a::2"),)
        ),
        0.0,
    )
    assert ha.next_deadline() == 30.0
    ha.handle_timer(30.0)
    assert ha.home_agent_list_rows(30.0) == []


def test_ha_mps_answered_with_mpa_valid_lifetime_not_below_binding() -> None:
    ha = make_ha()
    registered(ha, lifetime_units=1000)
    ha.handle(HomePrefixAdvertised(PREFIX, valid_lifetime=5000, preferred_lifetime=3000), 2.0)
    (mpa,) = ha.handle(MobilePrefixSolicitationReceived(9, COA, HOA), 3.0)
    assert isinstance(mpa, SendMobilePrefixAdvertisement)
    assert (mpa.identifier, mpa.dst, mpa.home_address) == (9, COA, HOA)
    ((prefix, valid, preferred),) = mpa.prefixes
    assert (prefix, valid, preferred) == (PREFIX, 5000, 3000)  # as the RA advertises them


def test_ha_mps_without_binding_gets_be1() -> None:
    ha = make_ha()
    (be,) = ha.handle(MobilePrefixSolicitationReceived(9, COA, HOA), 3.0)
    assert isinstance(be, SendMobilityMessage) and isinstance(be.message, BindingError)


def test_ha_binding_cache_rows_snapshot() -> None:
    ha = make_ha()
    registered(ha, lifetime_units=250)
    (row,) = ha.binding_cache_rows(30.0)
    assert (row.home_address, row.care_of_address, row.lifetime_remaining) == (HOA, COA, 971)
    assert (row.mipl_type, row.flags, row.sequence, row.state) == (2, "AH", 1, "registered")


def test_ha_counts_bus_and_acks() -> None:
    ha = make_ha()
    registered(ha)
    ha.handle(home_bu(seq=1), 2.0)  # 135
    assert ha.stats.NBindUpdatesRcvd == 2
    assert ha.stats.NBindAcksSent == 1 and ha.stats.NBindNAcksSent == 1


def test_ha_own_packets_to_a_registered_home_address_go_directly_with_rh2() -> None:
    """RFC 6275 §9.3.2, §10.3.1: with a home registration in force the HA's own packets to
    the HoA go to the CoA with an RH2 (the runtime rewrites them); a refresh with the same
    CoA changes nothing, a new CoA replaces it, de-registration and expiry remove it."""
    ha = make_ha()
    assert InstallRouteOptimization(HOA, COA) in registered(ha)
    assert ha.route_optimizations() == [InstallRouteOptimization(HOA, COA)]
    refresh = ha.handle(home_bu(seq=2), 5.0)
    assert not [a for a in refresh if isinstance(a, InstallRouteOptimization)]
    moved = ha.handle(home_bu(seq=3, coa=COA2), 6.0)
    assert InstallRouteOptimization(HOA, COA2) in moved
    assert ha.route_optimizations() == [InstallRouteOptimization(HOA, COA2)]
    gone = ha.handle(home_bu(seq=4, coa=HOA, src=HOA, hao=False, lifetime_units=0), 7.0)
    assert RemoveRouteOptimization(HOA) in gone
    assert ha.route_optimizations() == []
    expiring = make_ha()
    registered(expiring, lifetime_units=10)
    assert RemoveRouteOptimization(HOA) in expiring.handle_timer(41.0)


def test_ha_binding_still_waiting_for_dad_has_no_direct_delivery() -> None:
    ha = make_ha()
    ha.handle(home_bu(), 0.0)
    assert ha.route_optimizations() == []


def test_ha_answers_a_bu_from_the_home_address_with_hao_without_rh2() -> None:
    """§9.5.4, §10.3.2 (TAHI HA_3_2_2/3/7/8): the MN at home de-registers from its HoA with
    an HAO naming that same HoA (CoA = HoA); the BA goes straight to the HoA, no RH2, and
    from the home link in a frame to the MN's link-layer address."""
    at_home = home_bu(coa=HOA, src=HOA, lifetime_units=0)
    send = only_ba(make_ha().handle(at_home, 0.0))
    assert (send.dst, send.routing_address) == (HOA, None)
    assert ba_of([send]).status == BAStatus.NOT_HOME_AGENT_FOR_THIS_MOBILE_NODE
    ha = make_ha(home_interface_index=3)
    registered(ha, seq=10)
    actions = ha.handle(from_home_link(home_bu(seq=11, coa=HOA, src=HOA, lifetime_units=0)), 5.0)
    send = only_ba(actions)
    assert ba_of(actions).status == 0 and HOA not in ha.cache
    assert (send.dst, send.routing_address, send.link_destination) == (HOA, None, MN_MAC)


def test_ha_hao_with_multicast_home_address_silently_dropped() -> None:
    """§9.3.1: an HAO naming a multicast home address → dropped, no Binding Error 1."""
    from nfq_mip6.mobility.common import unknown_binding_error
    from nfq_mip6.mobility.events import MessageDiscarded

    actions = unknown_binding_error(
        IPv6Address("2001:db8:f::1"), IPv6Address("ff0e::1"), IPv6Address("2001:db8:a::1")
    )
    assert actions and all(isinstance(a, MessageDiscarded) for a in actions)


def test_ha_ranks_itself_by_its_configured_then_its_advertised_preference() -> None:
    """§7.4, §10.5.1 (TAHI HA_7_2_3/4): the HA's own entry in its DHAAD reply is ranked
    with its Home Agent Information preference: [ha] preference, then what its own RA
    (radvd) advertises, against the other home agents heard on the link."""
    ha0, ha1 = IPv6Address("2001:db8:a::a0"), IPv6Address("2001:db8:a::a1")
    ha = make_ha(preference=3)
    for link_local, preference, address in (("fe80::a0", 5, ha0), ("fe80::a1", 1, ha1)):
        ha.handle(
            RouterAdvertisementReceived(
                IPv6Address(link_local), True, 1800, preference, 1800, (address,)
            ),
            0.0,
        )
    request = DhaadRequestReceived(1, COA, IPv6Address("2001:db8:a::fdff:ffff:ffff:fffe"))
    (reply,) = ha.handle(request, 1.0)
    assert isinstance(reply, SendDhaadReply) and reply.home_agents == (ha0, HA, ha1)
    assert ha.handle(OwnHomeAgentInformation(preference=10), 2.0) == []
    (reply,) = ha.handle(request, 3.0)
    assert isinstance(reply, SendDhaadReply) and reply.home_agents == (HA, ha0, ha1)


def test_ha_binding_lifetime_never_exceeds_the_mpa_valid_lifetime() -> None:
    """§10.3.1, §10.6.2 (TAHI HA_8_1_7): the own RA advertises the prefix valid for 86400 s;
    a BU asking for 0xffff units a second later gets at most the remaining 86399 s (86396 in
    4-s units), and an MPS nine seconds after that gets the prefix as the RA advertises it
    (86400 s), never less than the granted binding lifetime."""
    ha = make_ha(max_binding_lifetime=262140)
    ha.handle(HomePrefixAdvertised(PREFIX, valid_lifetime=86400, preferred_lifetime=14400), 0.0)
    ha.handle(home_bu(lifetime_units=0xFFFF), 1.0)
    actions = ha.handle(ProxyDadCompleted(HOA, duplicate=False), 1.0)
    granted = ba_of(actions).lifetime * 4
    assert granted == 86396
    (mpa,) = ha.handle(MobilePrefixSolicitationReceived(9, COA, HOA), 10.0)
    assert isinstance(mpa, SendMobilePrefixAdvertisement)
    ((_prefix, valid, preferred),) = mpa.prefixes
    assert (valid, preferred) == (86400, 14400) and valid >= granted
    # Once the prefix ran out (no RA renewed it), the MPA says so.
    expired = make_ha()
    registered(expired, lifetime_units=10)
    expired.handle(HomePrefixAdvertised(PREFIX, valid_lifetime=30, preferred_lifetime=20), 2.0)
    (mpa,) = expired.handle(MobilePrefixSolicitationReceived(9, COA, HOA), 25.0)
    assert isinstance(mpa, SendMobilePrefixAdvertisement)
    assert mpa.prefixes[0][1:] == (30, 0)


def test_ha_relays_tunnel_icmp_errors_to_the_original_source() -> None:
    """RFC 2473 §8.1, RFC 6275 §10.4.2 (TAHI HA_5_1_3): a Time Exceeded from a router on the
    tunnel path about our HA -> CoA encapsulation of CN -> HoA becomes a Destination
    Unreachable, code 3, to the CN carrying the inner packet; errors about other packets
    are not relayed."""
    from nfq_mip6.wire import build_ipv6_packet, encapsulate

    ha = make_ha()
    cn = IPv6Address("2001:db8:c::1")
    inner = build_ipv6_packet(cn, HOA, 58, b"\x80\x00\x00\x00\x00\x01\x00\x01")
    tunnelled = encapsulate(inner, HA, COA)
    relay = ha.tunnel_error_relay(3, tunnelled)
    assert relay is not None
    assert (relay.dst, relay.icmp_type, relay.code, relay.invoking_packet) == (cn, 1, 3, inner)
    assert ha.tunnel_error_relay(1, tunnelled) is not None  # Destination Unreachable too
    assert ha.tunnel_error_relay(2, tunnelled) is None  # Packet Too Big: not this mapping
    assert ha.tunnel_error_relay(3, inner) is None  # not tunnelled
    assert ha.tunnel_error_relay(3, encapsulate(inner, COA2, COA)) is None  # not our tunnel
    off_home = build_ipv6_packet(cn, IPv6Address("2001:db8:9::1"), 59, b"")
    assert ha.tunnel_error_relay(3, encapsulate(off_home, HA, COA)) is None
    from_multicast = build_ipv6_packet(IPv6Address("ff02::1"), HOA, 59, b"")
    assert ha.tunnel_error_relay(3, encapsulate(from_multicast, HA, COA)) is None


def test_ha_counts_a_binding_update_that_failed_the_section_9_2_checks() -> None:
    """§9.2: the runtime reports a silently discarded MH; the core keeps the counters."""
    ha = make_ha()
    assert ha.handle(MobilityHeaderRejected(COA, 5, "bad checksum"), 0.0) == []
    assert ha.handle(MobilityHeaderRejected(COA, 1, "bad checksum"), 0.0) == []  # a HoTI
    assert (ha.stats.NBindUpdatesRcvd, ha.stats.NBindUpdatesDropInvalid) == (1, 1)

"""Mobile node core: RFC 6275 §11 rules, one rule per test."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv6Address

import pytest

from nfq_mip6.mobility.events import (
    Action,
    BindingRejected,
    DataPacketFromCorrespondent,
    HomeAddressAtHome,
    HomeAddressAway,
    HomeAgentDiscovered,
    IcmpErrorReceived,
    InstallReverseTunnel,
    InstallRouteOptimization,
    MessageDiscarded,
    MobilePrefixAdvertisementReceived,
    MobilityMessageReceived,
    MovedToForeignLink,
    PrepareCareOfAddress,
    ProxyDadCompleted,
    RemoveReverseTunnel,
    RemoveRouteOptimization,
    RestoreHomeLink,
    ReturnedToHomeLink,
    RouteOptimizationSwitched,
    RouterLost,
    SendDhaadRequest,
    SendMobilePrefixSolicitation,
    SendMobilityMessage,
    SendNeighborAdvertisement,
    SendRouterSolicitation,
)
from nfq_mip6.mobility.mobile_node import BindingAckCheck, BulState, MobileNode, MobileNodeConfig
from nfq_mip6.mobility.rr import encode_bu_or_ba, with_authenticator
from nfq_mip6.wire.mh import (
    BAFlags,
    BEStatus,
    BindingAck,
    BindingError,
    BindingRefreshRequest,
    BindingUpdate,
    BUFlags,
    CareofTest,
    CareofTestInit,
    HomeTest,
    HomeTestInit,
)
from nfq_mip6.wire.options import AlternateCareofAddress, BindingRefreshAdvice, MessageIdentifier
from tests.support.factories import counter_bytes
from tests.support.vectors import CN, COA, COA2, HA, HA2, HOA, PREFIX


def make_mn(home_agent: IPv6Address | None = HA, **kwargs: object) -> MobileNode:
    config = MobileNodeConfig(
        home_address=HOA,
        home_prefix=PREFIX,
        home_agent=home_agent,
        **kwargs,  # type: ignore[arg-type]
    )
    return MobileNode(config, random_bytes=counter_bytes(1))


def sent_bus(actions: list[Action]) -> list[SendMobilityMessage]:
    return [
        a
        for a in actions
        if isinstance(a, SendMobilityMessage) and isinstance(a.message, BindingUpdate)
    ]


def the_bu(actions: list[Action]) -> tuple[SendMobilityMessage, BindingUpdate]:
    (send,) = sent_bus(actions)
    assert isinstance(send.message, BindingUpdate)
    return send, send.message


def ba_event(
    status: int,
    seq: int,
    lifetime: int = 100,
    src: IPv6Address = HA,
    options: tuple[BindingRefreshAdvice, ...] = (),
) -> MobilityMessageReceived:
    ba = BindingAck(status, BAFlags.NONE, seq, lifetime, options)
    return MobilityMessageReceived(ba, src, COA, routing_address=HOA)


def away(mn: MobileNode, now: float = 0.0, lifetime: float | None = None) -> BindingUpdate:
    return the_bu(mn.handle(MovedToForeignLink(COA, lifetime), now))[1]


def bound(mn: MobileNode) -> BindingUpdate:
    bu = away(mn)
    mn.handle(ba_event(0, bu.sequence, bu.lifetime), 1.0)
    return bu


def test_mn_home_bu_has_a_h_hao_and_altcoa() -> None:
    mn = make_mn()
    send, bu = the_bu(mn.handle(MovedToForeignLink(COA, None), 0.0))
    assert (send.src, send.dst, send.home_address, send.routing_address) == (COA, HA, HOA, None)
    assert bu.flags == BUFlags.A | BUFlags.H
    assert bu.options == (AlternateCareofAddress(COA),)


def test_mn_home_bu_l_flag_when_configured() -> None:
    mn = make_mn(link_local_compatibility=True)
    assert away(mn).flags & BUFlags.L


def test_mn_home_bu_lifetime_bounded_by_coa_lifetime() -> None:
    mn = make_mn()
    assert away(mn, lifetime=100.0).lifetime == 25


def test_mn_home_bu_lifetime_bounded_by_configuration() -> None:
    mn = make_mn(home_registration_lifetime=1000)
    assert away(mn).lifetime == 250


def test_mn_ba_accepted_installs_reverse_tunnel() -> None:
    mn = make_mn()
    bu = away(mn)
    actions = mn.handle(ba_event(0, bu.sequence), 1.0)
    assert InstallReverseTunnel(HOA, COA, HA) in actions
    assert mn.home_entry is not None and mn.home_entry.state is BulState.BOUND


@pytest.mark.parametrize("status", [2, 64, 127])
def test_mn_ba_status_below_128_is_accepted(status: int) -> None:
    mn = make_mn()
    bu = away(mn)
    mn.handle(ba_event(status, bu.sequence), 1.0)
    assert mn.home_entry is not None and mn.home_entry.state is BulState.BOUND


@pytest.mark.parametrize("status", [128, 132, 255])
def test_mn_ba_status_128_or_more_is_rejected(status: int) -> None:
    mn = make_mn()
    bu = away(mn)
    actions = mn.handle(ba_event(status, bu.sequence), 1.0)
    assert BindingRejected(HOA, HA, True, status) in actions
    assert mn.home_entry is None and mn.next_deadline() is None


def test_mn_ba_mismatched_sequence_ignored() -> None:
    mn = make_mn()
    bu = away(mn)
    actions = mn.handle(ba_event(0, (bu.sequence + 1) & 0xFFFF), 1.0)
    assert all(isinstance(a, MessageDiscarded) for a in actions)
    assert mn.home_entry is not None and mn.home_entry.state is BulState.REGISTERING


@pytest.mark.parametrize(("last", "expected"), [(500, 501), (65535, 0)])
def test_mn_ba_135_resends_with_last_accepted_plus_one(last: int, expected: int) -> None:
    mn = make_mn()
    away(mn)
    actions = mn.handle(ba_event(135, last, 0), 0.5)
    _, bu = the_bu(actions)
    assert bu.sequence == expected


def test_mn_ba_status_1_sends_mobile_prefix_solicitation() -> None:
    mn = make_mn()
    bu = away(mn)
    actions = mn.handle(ba_event(1, bu.sequence), 1.0)
    (mps,) = [a for a in actions if isinstance(a, SendMobilePrefixSolicitation)]
    assert (mps.src, mps.dst, mps.home_address) == (COA, HA, HOA)


def test_mn_shorter_granted_lifetime_refreshes_earlier() -> None:
    mn = make_mn()
    bu = away(mn)  # requested 262140 s
    mn.handle(ba_event(0, bu.sequence, lifetime=25), 1.0)  # granted 100 s
    assert mn.home_entry is not None
    assert mn.home_entry.refresh_at == pytest.approx(80.0)
    assert mn.next_deadline() == pytest.approx(80.0)
    _, refresh = the_bu(mn.handle_timer(80.0))
    assert refresh.sequence == (bu.sequence + 1) & 0xFFFF


def test_mn_binding_refresh_advice_honoured() -> None:
    mn = make_mn()
    bu = away(mn)
    mn.handle(ba_event(0, bu.sequence, lifetime=100, options=(BindingRefreshAdvice(10),)), 1.0)
    assert mn.home_entry is not None and mn.home_entry.refresh_at == pytest.approx(40.0)


def test_mn_brr_answered_with_new_bu() -> None:
    mn = make_mn()
    bu = bound(mn)
    brr = MobilityMessageReceived(BindingRefreshRequest(), HA, HOA, via_tunnel=True)
    _, refresh = the_bu(mn.handle(brr, 5.0))
    assert refresh.sequence == (bu.sequence + 1) & 0xFFFF
    assert mn.stats.NBindRqsRcvd == 1


def test_mn_brr_from_unknown_node_ignored() -> None:
    mn = make_mn()
    bound(mn)
    brr = MobilityMessageReceived(BindingRefreshRequest(), CN, HOA)
    assert all(isinstance(a, MessageDiscarded) for a in mn.handle(brr, 5.0))


def test_mn_retransmission_first_registration_1_5s_then_doubling() -> None:
    mn = make_mn()
    away(mn)
    assert mn.next_deadline() == pytest.approx(1.5)
    mn.handle_timer(1.5)
    assert mn.next_deadline() == pytest.approx(4.5)


def test_mn_retransmission_not_first_registration_1s() -> None:
    mn = make_mn()
    bound(mn)
    mn.handle(MovedToForeignLink(IPv6Address("2001:db8:e::1"), None), 10.0)
    assert mn.next_deadline() == pytest.approx(11.0)


def test_mn_max_update_rate_three_per_second() -> None:
    mn = make_mn()
    sent = 0
    for i in range(5):
        actions = mn.handle(MovedToForeignLink(IPv6Address(f"2001:db8:e::{i + 1}"), None), i * 0.1)
        sent += len(sent_bus(actions))
    assert sent == 3
    assert mn.next_deadline() == pytest.approx(1.0)
    assert len(sent_bus(mn.handle_timer(1.0))) == 1


def test_mn_returning_home_sends_deregistration_from_home_address() -> None:
    mn = make_mn()
    bound(mn)
    send, bu = the_bu(mn.handle(ReturnedToHomeLink(), 10.0))
    assert (send.src, send.dst, send.home_address) == (HOA, HA, None)
    assert (bu.lifetime, bu.flags & (BUFlags.A | BUFlags.H)) == (0, BUFlags.A | BUFlags.H)
    actions = mn.handle(ba_event(0, bu.sequence, 0), 10.1)
    assert actions[:3] == [
        RemoveReverseTunnel(HOA),
        HomeAddressAtHome(HOA),
        SendNeighborAdvertisement(HOA),
    ]
    assert mn.bul == {}


def test_mn_deregistration_ba_133_still_means_home() -> None:
    mn = make_mn()
    bound(mn)
    _, bu = the_bu(mn.handle(ReturnedToHomeLink(), 10.0))
    actions = mn.handle(ba_event(133, bu.sequence, 0), 10.1)
    assert HomeAddressAtHome(HOA) in actions


def test_mn_back_home_after_a_run_that_ended_away_deregisters_the_binding_the_ha_may_hold() -> None:
    """§11.5.5: a previous run ended away (kernel leftovers, no BUL): back on the home link a
    stale binding would keep the HA tunnelling the HoA away: one de-registration BU; 133
    (nothing to delete) or an accepted BA both end it."""
    for status in (0, 133):
        mn = make_mn()
        send, bu = the_bu(mn.handle(ReturnedToHomeLink(), 5.0))
        assert (send.src, send.dst, send.home_address) == (HOA, HA, None)
        assert (bu.lifetime, bu.flags & (BUFlags.A | BUFlags.H)) == (0, BUFlags.A | BUFlags.H)
        actions = mn.handle(ba_event(status, bu.sequence, 0), 5.1)
        assert HomeAddressAtHome(HOA) in actions and mn.bul == {}
        assert mn.home_link_found_at_start(6.0) == []  # once
        # a later move registers as usual
        assert away(mn, now=7.0).lifetime > 0


def test_mn_refused_deregistration_of_a_binding_never_acknowledged_is_dropped() -> None:
    """A refused de-registration (status >= 128 other than 133) of a binding this run never
    had acknowledged leaves nothing in force: the entry goes (no BOUND entry without a
    lifetime, no BindingExpired for it later, nothing stuck at home)."""
    mn = make_mn()
    _, bu = the_bu(mn.handle(ReturnedToHomeLink(), 0.0))
    actions = mn.handle(ba_event(128, bu.sequence, 0), 0.5)
    assert [type(a).__name__ for a in actions] == ["BindingRejected"]
    assert mn.bul == {} and mn.next_deadline() is None
    assert mn.handle_timer(40.0) == []


def test_mn_back_home_after_a_run_that_ended_away_without_home_agent_or_answer() -> None:
    assert sent_bus(make_mn(home_agent=None).handle(ReturnedToHomeLink(), 0.0)) == []
    mn = make_mn()
    times = [0.0]
    assert sent_bus(mn.handle(ReturnedToHomeLink(), 0.0))
    now = 0.0
    while mn.bul and now < 600.0:
        now += 0.5
        if sent_bus(mn.handle_timer(now)):
            times.append(now)
    # retransmitted 1, 2, 4, 8, 16, 32 s apart, then given up (no binding is known to exist)
    assert times == [0.0, 1.0, 3.0, 7.0, 15.0, 31.0]
    assert mn.bul == {} and mn.next_deadline() is None


def test_mn_starting_on_its_home_link_sends_no_binding_update() -> None:
    """§11.5.5, §11.7.1: a MN that starts on its home link with no binding (no BUL entry, no
    trace of a run that ended away) has nothing to de-register: no BU at all."""
    mn = make_mn()
    assert mn.home_link_found_at_start(0.0) == []
    assert mn.bul == {} and mn.next_deadline() is None
    assert mn.handle_timer(100.0) == []
    assert away(mn, now=200.0).lifetime > 0  # a later move registers as usual


def test_mn_leftovers_found_at_home_deregister_without_a_bul_entry() -> None:
    """The runtime found kernel leftovers of a run that ended away but no BUL (state lost):
    ReturnedToHomeLink as the first decision still sends the de-registration."""
    mn = make_mn()
    send, bu = the_bu(mn.handle(ReturnedToHomeLink(), 1.0))
    assert (send.src, bu.lifetime) == (HOA, 0)


def test_mn_binding_lifetime_changed_at_run_time() -> None:
    mn = make_mn(home_registration_lifetime=1000)
    bu = bound(mn)
    assert bu.lifetime == 250
    _, refresh = the_bu(mn.set_home_registration_lifetime(100, 2.0))  # shorter: at once
    assert refresh.lifetime == 25
    mn.handle(ba_event(0, refresh.sequence, 25), 2.1)
    assert mn.set_home_registration_lifetime(400, 3.0) == []  # longer: the next refresh
    _, later = the_bu(mn.handle_timer(2.0 + 80.0))
    assert later.lifetime == 100


def test_mn_router_lost_sends_router_solicitation() -> None:
    assert make_mn().handle(RouterLost(), 0.0) == [SendRouterSolicitation()]


def test_mn_home_agents_anycast_address() -> None:
    assert make_mn().home_agents_anycast() == IPv6Address("2001:db8:a:0:fdff:ffff:ffff:fffe")


def dhaad_requests(actions: list[Action]) -> list[SendDhaadRequest]:
    return [a for a in actions if isinstance(a, SendDhaadRequest)]


def test_mn_dhaad_retransmits_3s_doubling_4_times() -> None:
    mn = make_mn(home_agent=None)
    (request,) = dhaad_requests(mn.handle(MovedToForeignLink(COA, None), 0.0))
    assert isinstance(request, SendDhaadRequest) and request.src == COA
    assert request.dst == mn.home_agents_anycast()
    times = []
    while (deadline := mn.next_deadline()) is not None:
        actions = mn.handle_timer(deadline)
        if any(isinstance(a, SendDhaadRequest) for a in actions):
            times.append(deadline)
    assert times == [3.0, 9.0, 21.0, 45.0]


def test_mn_dhaad_reply_tries_home_agents_in_order() -> None:
    mn = make_mn(home_agent=None)
    (request,) = dhaad_requests(mn.handle(MovedToForeignLink(COA, None), 0.0))
    assert isinstance(request, SendDhaadRequest)
    reply = HomeAgentDiscovered(request.identifier, HA, (HA, HA2))
    send, bu = the_bu(mn.handle(reply, 0.5))
    assert send.dst == HA
    actions = mn.handle(ba_event(132, bu.sequence, 0), 1.0)
    send2, _ = the_bu(actions)
    assert send2.dst == HA2


def test_mn_dhaad_reply_with_wrong_identifier_ignored() -> None:
    mn = make_mn(home_agent=None)
    (request,) = dhaad_requests(mn.handle(MovedToForeignLink(COA, None), 0.0))
    assert isinstance(request, SendDhaadRequest)
    reply = HomeAgentDiscovered((request.identifier + 1) & 0xFFFF, HA, (HA,))
    assert all(isinstance(a, MessageDiscarded) for a in mn.handle(reply, 0.5))


# --- return routability --------------------------------------------------------------------


def start_rr(mn: MobileNode) -> tuple[HomeTestInit, CareofTestInit, list[Action]]:
    bound(mn)
    actions = mn.handle(DataPacketFromCorrespondent(CN), 2.0)
    (hoti_send,) = [
        a
        for a in actions
        if isinstance(a, SendMobilityMessage) and isinstance(a.message, HomeTestInit)
    ]
    (coti_send,) = [
        a
        for a in actions
        if isinstance(a, SendMobilityMessage) and isinstance(a.message, CareofTestInit)
    ]
    assert isinstance(hoti_send.message, HomeTestInit)
    assert isinstance(coti_send.message, CareofTestInit)
    return hoti_send.message, coti_send.message, actions


def test_mn_hoti_through_tunnel_from_hoa_coti_direct_from_coa() -> None:
    mn = make_mn()
    _, _, actions = start_rr(mn)
    sends = [a for a in actions if isinstance(a, SendMobilityMessage)]
    assert [(s.src, s.dst, s.via_tunnel) for s in sends] == [(HOA, CN, True), (COA, CN, False)]


def test_mn_rr_waits_for_home_registration() -> None:
    mn = make_mn()
    bu = away(mn)
    assert mn.handle(DataPacketFromCorrespondent(CN), 0.5) == []
    actions = mn.handle(ba_event(0, bu.sequence), 1.0)
    assert any(
        isinstance(a, SendMobilityMessage) and isinstance(a.message, HomeTestInit) for a in actions
    )


def hot(cookie: bytes, via_tunnel: bool = True) -> MobilityMessageReceived:
    return MobilityMessageReceived(HomeTest(3, cookie, b"H" * 8), CN, HOA, via_tunnel=via_tunnel)


def cot(cookie: bytes) -> MobilityMessageReceived:
    return MobilityMessageReceived(CareofTest(4, cookie, b"C" * 8), CN, COA)


def test_mn_hot_with_wrong_cookie_ignored() -> None:
    mn = make_mn()
    start_rr(mn)
    assert all(isinstance(a, MessageDiscarded) for a in mn.handle(hot(b"wrong!!!"), 2.1))


def test_mn_hot_not_through_tunnel_ignored() -> None:
    mn = make_mn()
    hoti, _, _ = start_rr(mn)
    to_coa = MobilityMessageReceived(HomeTest(3, hoti.cookie, b"H" * 8), CN, COA)
    (discarded,) = mn.handle(to_coa, 2.1)
    assert isinstance(discarded, MessageDiscarded) and discarded.reason == "home-test-mismatch"


def test_mn_away_an_mh_to_the_home_address_without_rh2_came_through_the_tunnel() -> None:
    """§11.6.2: the core tells a tunnelled HoT from the addresses, the runtime does not."""
    mn = make_mn()
    hoti, _, _ = start_rr(mn)
    assert mn.handle(hot(hoti.cookie, via_tunnel=False), 2.1) == []  # accepted, waits for CoT
    assert mn.bul[CN].home_cookie is None


def test_mn_routing_header_must_name_the_home_address() -> None:
    mn = make_mn()
    assert mn.accepts_routing_header(HOA) and not mn.accepts_routing_header(COA)


class FakeAuthenticator:
    def __init__(self, check: BindingAckCheck) -> None:
        self.check = check
        self.signed: list[tuple[int, IPv6Address, IPv6Address]] = []

    def sign_binding_update(
        self, bu: BindingUpdate, care_of_address: IPv6Address, home_address: IPv6Address
    ) -> BindingUpdate:
        self.signed.append((bu.sequence, care_of_address, home_address))
        return replace(bu, options=(*bu.options, MessageIdentifier(bu.sequence)))

    def check_binding_ack(
        self,
        ba: BindingAck,
        mh_bytes: bytes,
        care_of_address: IPv6Address,
        home_address: IPv6Address,
    ) -> BindingAckCheck:
        return self.check


def authenticated_mn(check: BindingAckCheck) -> tuple[MobileNode, FakeAuthenticator]:
    authenticator = FakeAuthenticator(check)
    config = MobileNodeConfig(home_address=HOA, home_prefix=PREFIX, home_agent=HA)
    return MobileNode(
        config, random_bytes=counter_bytes(1), authenticator=authenticator
    ), authenticator


def test_mn_home_bus_are_signed_by_the_injected_authenticator_each_transmission() -> None:
    """RFC 4285: every (re)transmission of a home BU is signed with a fresh Mesg-ID."""
    mn, authenticator = authenticated_mn(BindingAckCheck.ACCEPT)
    bu = away(mn)
    assert isinstance(bu.options[-1], MessageIdentifier)
    the_bu(mn.handle_timer(1.5))  # retransmission
    assert [(coa, hoa) for _seq, coa, hoa in authenticator.signed] == [(COA, HOA), (COA, HOA)]
    mn.handle(ReturnedToHomeLink(), 2.0)  # the de-registration: CoA = HoA
    assert authenticator.signed[-1][1:] == (HOA, HOA)


@pytest.mark.parametrize(
    ("check", "registered", "drop_auth"),
    [
        (BindingAckCheck.ACCEPT, True, 0),
        (BindingAckCheck.DROP, False, 1),
        (BindingAckCheck.RESYNC, False, 0),
    ],
)
def test_mn_binding_ack_checked_by_the_injected_authenticator(
    check: BindingAckCheck, registered: bool, drop_auth: int
) -> None:
    mn, _ = authenticated_mn(check)
    bu = away(mn)
    actions = mn.handle(ba_event(0, bu.sequence, bu.lifetime), 1.0)
    assert any(isinstance(a, InstallReverseTunnel) for a in actions) is registered
    assert mn.stats.NBindAcksDropAuth == drop_auth
    assert mn.stats.NBindAcksRcvd == (0 if check is BindingAckCheck.RESYNC else 1)


def complete_rr(mn: MobileNode) -> tuple[SendMobilityMessage, BindingUpdate]:
    hoti, coti, _ = start_rr(mn)
    assert mn.handle(hot(hoti.cookie), 2.1) == []
    return the_bu(mn.handle(cot(coti.cookie), 2.2))


def test_mn_cn_bu_has_nonce_indices_and_bad_last() -> None:
    mn = make_mn()
    send, bu = complete_rr(mn)
    assert (send.src, send.dst, send.home_address) == (COA, CN, HOA)
    assert bu.flags == BUFlags.A and bu.lifetime == 105
    assert type(bu.options[0]).__name__ == "NonceIndices"
    assert bu.options[0].home_nonce_index == 3 and bu.options[0].careof_nonce_index == 4  # type: ignore[union-attr]
    assert type(bu.options[-1]).__name__ == "BindingAuthorizationData"


def cn_ba(mn: MobileNode, seq: int, valid: bool = True) -> MobilityMessageReceived:
    entry = mn.bul[CN]
    ba = BindingAck(0, BAFlags.NONE, seq, 105)
    signed = with_authenticator(ba, entry.kbm if valid else b"x" * 20, COA, CN)
    return MobilityMessageReceived(
        signed, CN, COA, routing_address=HOA, mh_bytes=encode_bu_or_ba(signed)
    )


def test_mn_cn_ba_with_valid_bad_installs_route_optimization() -> None:
    mn = make_mn()
    _, bu = complete_rr(mn)
    actions = mn.handle(cn_ba(mn, bu.sequence), 2.3)
    assert InstallRouteOptimization(HOA, COA, CN) in actions


def test_mn_cn_ba_without_valid_bad_dropped() -> None:
    mn = make_mn()
    _, bu = complete_rr(mn)
    actions = mn.handle(cn_ba(mn, bu.sequence, valid=False), 2.3)
    assert all(isinstance(a, MessageDiscarded) for a in actions)
    assert mn.stats.NBindAcksDropAuth == 1


def test_mn_be2_from_cn_falls_back_to_tunnel() -> None:
    mn = make_mn()
    _, bu = complete_rr(mn)
    mn.handle(cn_ba(mn, bu.sequence), 2.3)
    be = MobilityMessageReceived(BindingError(BEStatus.UNRECOGNIZED_MH_TYPE, HOA), CN, COA)
    actions = mn.handle(be, 3.0)
    assert RemoveRouteOptimization(HOA, CN) in actions and CN not in mn.bul
    assert mn.handle(DataPacketFromCorrespondent(CN), 4.0) == []  # no RO with that CN again


def test_mn_icmp_parameter_problem_code1_stops_route_optimization() -> None:
    mn = make_mn()
    start_rr(mn)
    mn.handle(IcmpErrorReceived(CN, 4, 1), 2.5)
    assert CN not in mn.bul
    assert mn.handle(DataPacketFromCorrespondent(CN), 4.0) == []


def test_mn_icmp_code2_from_registered_cn_ignored() -> None:
    mn = make_mn()
    _, bu = complete_rr(mn)
    mn.handle(cn_ba(mn, bu.sequence), 2.3)
    assert mn.handle(IcmpErrorReceived(CN, 4, 2), 3.0) == []
    assert CN in mn.bul


def test_mn_binding_update_list_rows() -> None:
    mn = make_mn()
    bu = bound(mn)
    (row,) = mn.binding_update_list_rows(64.0)
    assert (row.destination, row.home_address, row.care_of_address) == (HA, HOA, COA)
    assert row.home_registration and row.sequence == bu.sequence and row.state == "bound"
    assert row.lifetime_remaining == bu.lifetime * 4 - 64  # counted from the BU sent at 0
    assert row.max_delay == 32.0 and row.flags == "AH"


def bound_with_cn(mn: MobileNode) -> BindingUpdate:
    _, bu = complete_rr(mn)
    mn.handle(cn_ba(mn, bu.sequence), 2.3)
    return bu


def test_mn_cn_refresh_after_token_lifetime_runs_rr_again() -> None:
    mn = make_mn()
    bound_with_cn(mn)
    entry = mn.bul[CN]
    assert entry.refresh_at == pytest.approx(2.2 + 420 * 0.8)
    actions = mn.handle_timer(entry.refresh_at)
    # Tokens from t = 2.1/2.2 are older than MAX_TOKEN_LIFETIME (210 s): new RR first.
    assert any(
        isinstance(a, SendMobilityMessage) and isinstance(a.message, HomeTestInit) for a in actions
    )
    assert sent_bus(actions) == []


def test_mn_cn_brr_within_token_lifetime_sends_bu_directly() -> None:
    mn = make_mn()
    bound_with_cn(mn)
    brr = MobilityMessageReceived(BindingRefreshRequest(), CN, HOA, via_tunnel=True)
    _, bu = the_bu(mn.handle(brr, 100.0))
    assert bu.options[-1].__class__.__name__ == "BindingAuthorizationData"


def test_mn_cn_bu_lifetime_bounded_by_home_registration() -> None:
    mn = make_mn()
    bu = away(mn)
    mn.handle(ba_event(0, bu.sequence, lifetime=50), 1.0)  # home binding: 200 s from t = 0
    mn.handle(DataPacketFromCorrespondent(CN), 2.0)
    entry = mn.bul[CN]
    assert entry.home_cookie is not None and entry.careof_cookie is not None
    mn.handle(hot(entry.home_cookie), 2.1)
    _, cn_bu = the_bu(mn.handle(cot(entry.careof_cookie), 2.2))
    assert cn_bu.lifetime == int(200 - 2.2) // 4


def test_mn_cn_bu_lifetime_bounded_by_coa_lifetime() -> None:
    mn = make_mn()
    bu = away(mn, lifetime=60.0)
    mn.handle(ba_event(0, bu.sequence, lifetime=bu.lifetime), 1.0)
    mn.handle(DataPacketFromCorrespondent(CN), 2.0)
    entry = mn.bul[CN]
    assert entry.home_cookie is not None and entry.careof_cookie is not None
    mn.handle(hot(entry.home_cookie), 2.1)
    _, cn_bu = the_bu(mn.handle(cot(entry.careof_cookie), 2.2))
    assert cn_bu.lifetime * 4 <= 60 - 2.2


def test_mn_route_optimization_off_removes_cn_routes() -> None:
    mn = make_mn()
    bound_with_cn(mn)
    actions = mn.handle(RouteOptimizationSwitched(False), 5.0)
    assert RemoveRouteOptimization(HOA, CN) in actions and CN not in mn.bul
    assert mn.home_entry is not None  # the home registration stays


def mps_times(mn: MobileNode, until: float) -> list[float]:
    times = []
    while (deadline := mn.next_deadline()) is not None and deadline <= until:
        actions = mn.handle_timer(deadline)
        if any(isinstance(a, SendMobilePrefixSolicitation) for a in actions):
            times.append(deadline)
    return times


def test_mn_mps_retransmitted_3s_doubling_until_mpa() -> None:
    mn = make_mn()
    bu = away(mn)
    mn.handle(ba_event(1, bu.sequence), 1.0)
    assert mps_times(mn, 30.0) == [4.0, 10.0, 22.0]


def test_mn_mpa_with_matching_identifier_stops_mps() -> None:
    mn = make_mn()
    bu = away(mn)
    (mps,) = [
        a
        for a in mn.handle(ba_event(1, bu.sequence), 1.0)
        if isinstance(a, SendMobilePrefixSolicitation)
    ]
    wrong = MobilePrefixAdvertisementReceived(mps.identifier + 1, HA, ())
    assert all(isinstance(a, MessageDiscarded) for a in mn.handle(wrong, 2.0))
    not_from_ha = MobilePrefixAdvertisementReceived(mps.identifier, CN, ())
    assert all(isinstance(a, MessageDiscarded) for a in mn.handle(not_from_ha, 2.0))
    assert mn.handle(MobilePrefixAdvertisementReceived(mps.identifier, HA, ()), 2.0) == []
    assert mps_times(mn, 30.0) == []


def test_mn_start_deregistration_with_an_unknown_sequence_steps_a_quarter() -> None:
    """State lost: the random first number may be older than the HA's last accepted one, and
    the HA's 135 is tunnelled to the lost CoA; retransmissions step 16384 ahead, so that one
    of any four is newer than the HA's number (RFC 1982 on 16 bits)."""
    mn = make_mn()
    _, first = the_bu(mn.handle(ReturnedToHomeLink(), 0.0))
    sequences = [first.sequence]
    for now in (1.0, 3.0, 7.0):
        _, bu = the_bu(mn.handle_timer(now))
        sequences.append(bu.sequence)
    assert sequences == [(first.sequence + 16384 * k) & 0xFFFF for k in range(4)]
    for last_accepted in range(0, 65536, 997):
        assert any(0 < (seq - last_accepted) % 65536 < 32768 for seq in sequences)
    # a restored sequence number is known: plain +1 retransmissions
    mn = make_mn()
    mn._sequence_floor[HA] = 500
    _, first = the_bu(mn.handle(ReturnedToHomeLink(), 0.0))
    _, second = the_bu(mn.handle_timer(1.0))
    assert (first.sequence, second.sequence) == (501, 502)


def test_mn_home_deregistration_bu_carries_alternate_care_of_address() -> None:
    """§11.7.1: the Alternate Care-of Address option is in every home registration BU, the
    de-registration from home too (§11.5.5: from the HoA, no HAO, CoA = HoA, lifetime 0)."""
    mn = make_mn()
    bound(mn)
    send, bu = the_bu(mn.handle(ReturnedToHomeLink(), 10.0))
    assert (send.src, send.dst, send.home_address) == (HOA, HA, None)
    assert bu.lifetime == 0 and bu.options == (AlternateCareofAddress(HOA),)


def test_mn_unsolicited_mpa_from_home_agent_acknowledged_with_mps() -> None:
    """§11.4.3: a valid unsolicited Mobile Prefix Advertisement (from the HA, with an RH2) is
    processed and answered with a Mobile Prefix Solicitation; one from elsewhere is not."""
    mn = make_mn()
    bound(mn)
    elsewhere = MobilePrefixAdvertisementReceived(77, CN, ((PREFIX, 3600, 1800),))
    assert all(isinstance(a, MessageDiscarded) for a in mn.handle(elsewhere, 2.0))
    actions = mn.handle(MobilePrefixAdvertisementReceived(77, HA, ((PREFIX, 3600, 1800),)), 2.0)
    (mps,) = [a for a in actions if isinstance(a, SendMobilePrefixSolicitation)]
    assert (mps.src, mps.dst, mps.home_address) == (COA, HA, HOA)


def test_mn_mps_when_home_prefix_lifetime_runs_low() -> None:
    """§11.4.2: the home prefix's valid lifetime (100 s, last advertised at t = 2) runs low
    at 80 %: the MN solicits the prefix list at t = 82, once."""
    mn = make_mn()
    bound(mn)
    mps_sent = mn.handle(MobilePrefixAdvertisementReceived(5, HA, ((PREFIX, 100, 50),)), 2.0)
    (first,) = [a for a in mps_sent if isinstance(a, SendMobilePrefixSolicitation)]
    answer = MobilePrefixAdvertisementReceived(first.identifier, HA, ((PREFIX, 100, 50),))
    assert mn.handle(answer, 2.5) == []
    assert mps_times(mn, 81.0) == []
    assert mps_times(mn, 82.6)[:1] == [82.5]


def test_mn_ba_to_an_earlier_outstanding_bu_ends_retransmissions() -> None:
    """§11.7.3/§11.8: a BA answering the first BU after it was retransmitted (new sequence
    number) acknowledges the binding: no BU is sent again until the refresh is due."""
    mn = make_mn()
    first = away(mn)
    _, second = the_bu(mn.handle_timer(1.5))
    assert second.sequence == (first.sequence + 1) & 0xFFFF
    actions = mn.handle(ba_event(0, first.sequence, 100), 1.6)
    assert InstallReverseTunnel(HOA, COA, HA) in actions
    entry = mn.home_entry
    assert entry is not None and entry.state is BulState.BOUND
    assert entry.refresh_at == pytest.approx(0.0 + 400 * 0.8)  # from the acknowledged BU
    now = 1.6
    while (deadline := mn.next_deadline()) is not None and deadline < entry.refresh_at:
        now = deadline
        assert sent_bus(mn.handle_timer(now)) == []


def test_mn_ba_to_a_bu_for_the_previous_care_of_address_is_ignored() -> None:
    """§11.7.3: after a move, a late BA to the BU for the old CoA acknowledges nothing."""
    mn = make_mn()
    old = away(mn)
    _, new = the_bu(mn.handle(MovedToForeignLink(COA2, None), 0.5))
    actions = mn.handle(ba_event(0, old.sequence, 100), 0.6)
    assert all(isinstance(a, MessageDiscarded) for a in actions)
    assert mn.handle(ba_event(0, new.sequence, 100), 0.7)


def test_mn_packets_to_the_home_agent_leave_directly_with_hao_while_registered() -> None:
    """§11.3.1/§9.3.1: the HA holds a binding HoA → CoA, so the MN's own packets to it (the
    Echo Reply to the HA's Echo Request that came with an RH2, §11.3.3) leave directly from
    the CoA with an HAO, not through the reverse tunnel; a move withdraws it until the new
    CoA is acknowledged, going home ends it."""
    mn = make_mn()
    bu = away(mn)
    actions = mn.handle(ba_event(0, bu.sequence, bu.lifetime), 1.0)
    assert InstallRouteOptimization(HOA, COA, HA) in actions
    refresh = mn.handle_timer(mn.home_entry.refresh_at)  # type: ignore[union-attr]
    _, again = the_bu(refresh)
    assert not [
        a
        for a in mn.handle(ba_event(0, again.sequence, 100), 400.0)
        if isinstance(a, InstallRouteOptimization)
    ]
    moved = mn.handle(MovedToForeignLink(COA2, None), 500.0)
    # withdrawn before the BU leaves: its route's next hop is on the old link
    first_bu = next(i for i, a in enumerate(moved) if isinstance(a, SendMobilityMessage))
    assert RemoveRouteOptimization(HOA, HA) in moved[:first_bu]
    _, bu2 = the_bu(moved)
    assert InstallRouteOptimization(HOA, COA2, HA) in mn.handle(ba_event(0, bu2.sequence), 501.0)
    assert RemoveRouteOptimization(HOA, HA) in mn.handle(ReturnedToHomeLink(), 502.0)


def test_mn_first_coti_leaves_at_once_after_movement_and_bu_waits_for_home_ba() -> None:
    """§11.6.1, §11.8: after a move the CoTI to each correspondent leaves from the new CoA at
    once (retransmitted 1 s, then 2 s later); the home token is still valid, so no HoTI; the
    BU to the CN waits for the home BA for the new CoA (§11.7.2), then goes out."""
    mn = make_mn()
    bound_with_cn(mn)
    moved = mn.handle(MovedToForeignLink(COA2, None), 10.0)
    cotis = [
        a
        for a in moved
        if isinstance(a, SendMobilityMessage) and isinstance(a.message, CareofTestInit)
    ]
    assert [(a.src, a.dst) for a in cotis] == [(COA2, CN)]
    assert not [
        a for a in moved if isinstance(a, SendMobilityMessage) and a.dst == CN and a is not cotis[0]
    ]
    _, home_bu = the_bu([a for a in moved if isinstance(a, SendMobilityMessage) and a.dst == HA])
    retransmitted = mn.handle_timer(11.0)
    assert any(
        isinstance(a, SendMobilityMessage) and isinstance(a.message, CareofTestInit)
        for a in retransmitted
    )
    coti = cotis[0].message
    assert isinstance(coti, CareofTestInit)
    answer = MobilityMessageReceived(CareofTest(5, coti.cookie, b"D" * 8), CN, COA2)
    assert mn.handle(answer, 11.1) == []  # no CN BU before the home BA
    actions = mn.handle(ba_event(0, home_bu.sequence), 11.2)
    cn_bus = [a for a in sent_bus(actions) if a.dst == CN]
    assert len(cn_bus) == 1 and cn_bus[0].src == COA2


def test_mn_actions_come_in_the_order_the_kernel_needs() -> None:
    """Moving: the HoA off the visited link, the BU, an NA for the optimistic CoA (O = 0),
    decapsulation for the CoA ahead of the BA. Home (§11.5.5): the de-registration BU, then
    the home link restored (HoA back, tunnel rules gone)."""
    mn = make_mn()
    moved = mn.handle(MovedToForeignLink(COA, None), 0.0)
    assert [type(a) for a in moved] == [
        HomeAddressAway,
        SendMobilityMessage,
        SendNeighborAdvertisement,
        PrepareCareOfAddress,
    ]
    assert moved[2] == SendNeighborAdvertisement(COA, override=False)
    home = mn.handle(ReturnedToHomeLink(), 1.0)
    assert [type(a) for a in home[:2]] == [SendMobilityMessage, RestoreHomeLink]


def test_mn_core_takes_only_its_own_inputs() -> None:
    """handle() ends in assert_never over MobileNodeInput: mypy flags an unhandled event, and
    a home agent's event handed to a mobile node is a bug, not a silent no-op."""
    with pytest.raises(AssertionError):
        make_mn().handle(ProxyDadCompleted(HOA, duplicate=False), 0.0)  # type: ignore[arg-type]

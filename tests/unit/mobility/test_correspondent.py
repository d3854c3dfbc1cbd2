"""Correspondent node core: RFC 6275 §5.2, §9.4–§9.5 rules, one rule per test."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest

from nfq_mip6.mobility.binding import BindingState
from nfq_mip6.mobility.correspondent import CorrespondentConfig, CorrespondentNode
from nfq_mip6.mobility.events import (
    Action,
    BindingExpired,
    BindingsInUse,
    IcmpErrorReceived,
    InstallRouteOptimization,
    MessageDiscarded,
    MobilityMessageReceived,
    RemoveRouteOptimization,
    RouteOptimizationSwitched,
    SendMobilityMessage,
)
from nfq_mip6.mobility.rr import (
    binding_management_key,
    encode_bu_or_ba,
    verify_authenticator,
    with_authenticator,
)
from nfq_mip6.wire.mh import (
    BindingAck,
    BindingError,
    BindingRefreshRequest,
    BindingUpdate,
    BUFlags,
    CareofTest,
    CareofTestInit,
    HomeAgentSwitch,
    HomeTest,
    HomeTestInit,
    UnknownMobilityMessage,
)
from nfq_mip6.wire.options import AlternateCareofAddress, BindingRefreshAdvice, NonceIndices
from tests.support.factories import counter_bytes
from tests.support.vectors import CN, COA, COA2, HA, HOA


def make_cn(**kwargs: object) -> CorrespondentNode:
    return CorrespondentNode(
        CorrespondentConfig(address=CN, **kwargs),  # type: ignore[arg-type]
        random_bytes=counter_bytes(1),
    )


class MobileSide:
    """Just enough of a mobile node to run return routability against the CN."""

    def __init__(self, cn: CorrespondentNode, coa: IPv6Address = COA) -> None:
        self.cn = cn
        self.coa = coa

    def tokens(self, now: float) -> tuple[HomeTest, CareofTest]:
        (hot,) = self.cn.handle(
            MobilityMessageReceived(HomeTestInit(b"h" * 8), HOA, CN, via_tunnel=True), now
        )
        (cot,) = self.cn.handle(
            MobilityMessageReceived(CareofTestInit(b"c" * 8), self.coa, CN), now
        )
        assert isinstance(hot, SendMobilityMessage) and isinstance(hot.message, HomeTest)
        assert isinstance(cot, SendMobilityMessage) and isinstance(cot.message, CareofTest)
        return hot.message, cot.message

    def bu(
        self,
        seq: int,
        now: float,
        *,
        lifetime: int = 105,
        flags: BUFlags = BUFlags.A,
        deletion: bool = False,
        indices: tuple[int, int] | None = None,
        tamper: bool = False,
        hot_cot: tuple[HomeTest, CareofTest] | None = None,
    ) -> MobilityMessageReceived:
        hot, cot = hot_cot or self.tokens(now)
        kbm = binding_management_key(hot.keygen_token, None if deletion else cot.keygen_token)
        ni = NonceIndices(*(indices or (hot.nonce_index, cot.nonce_index)))
        message = with_authenticator(
            BindingUpdate(seq, flags, 0 if deletion else lifetime, (ni,)), kbm, self.coa, CN
        )
        wire = bytearray(encode_bu_or_ba(message))
        if tamper:
            wire[-1] ^= 1
        return MobilityMessageReceived(
            message, self.coa, CN, home_address=HOA, mh_bytes=bytes(wire)
        )


def ba_of(actions: list[Action]) -> tuple[SendMobilityMessage, BindingAck]:
    sends = [a for a in actions if isinstance(a, SendMobilityMessage)]
    assert len(sends) == 1, actions
    assert isinstance(sends[0].message, BindingAck)
    return sends[0], sends[0].message


def test_cn_hoti_answered_with_hot_to_home_address() -> None:
    cn = make_cn()
    (send,) = cn.handle(MobilityMessageReceived(HomeTestInit(b"12345678"), HOA, CN), 0.0)
    assert isinstance(send, SendMobilityMessage) and (send.src, send.dst) == (CN, HOA)
    assert isinstance(send.message, HomeTest) and send.message.cookie == b"12345678"
    assert len(send.message.keygen_token) == 8


def test_cn_coti_answered_with_cot_to_care_of_address() -> None:
    cn = make_cn()
    (send,) = cn.handle(MobilityMessageReceived(CareofTestInit(b"abcdefgh"), COA, CN), 0.0)
    assert isinstance(send, SendMobilityMessage) and send.dst == COA
    assert isinstance(send.message, CareofTest) and send.message.cookie == b"abcdefgh"


def test_cn_hoti_with_home_address_option_silently_dropped() -> None:
    cn = make_cn()
    event = MobilityMessageReceived(HomeTestInit(b"x" * 8), COA, CN, home_address=HOA)
    assert all(isinstance(a, MessageDiscarded) for a in cn.handle(event, 0.0))


def test_cn_accepts_bu_with_valid_bad_and_acks_with_bad() -> None:
    cn = make_cn()
    mn = MobileSide(cn)
    hot_cot = mn.tokens(0.0)
    actions = cn.handle(mn.bu(7, 1.0, hot_cot=hot_cot), 1.0)
    send, ba = ba_of(actions)
    assert (ba.status, ba.sequence, ba.lifetime) == (0, 7, 105)
    assert (send.dst, send.routing_address) == (COA, HOA)
    kbm = binding_management_key(hot_cot[0].keygen_token, hot_cot[1].keygen_token)
    assert verify_authenticator(kbm, COA, CN, encode_bu_or_ba(ba))
    assert InstallRouteOptimization(HOA, COA) in actions
    assert cn.has_binding(HOA)


def test_cn_lifetime_capped_at_420s() -> None:
    for requested, granted in ((0xFFFF, 105), (106, 105), (50, 50)):
        cn = make_cn()
        _, ba = ba_of(cn.handle(MobileSide(cn).bu(1, 0.0, lifetime=requested), 0.0))
        assert ba.lifetime == granted


def test_cn_ba_only_when_a_bit_set() -> None:
    cn = make_cn()
    actions = cn.handle(MobileSide(cn).bu(1, 0.0, flags=BUFlags.NONE), 0.0)
    assert not any(isinstance(a, SendMobilityMessage) for a in actions)
    assert cn.has_binding(HOA)


def test_cn_bad_authenticator_silently_discarded() -> None:
    cn = make_cn()
    actions = cn.handle(MobileSide(cn).bu(1, 0.0, tamper=True), 0.0)
    assert all(isinstance(a, MessageDiscarded) for a in actions)
    assert cn.stats.NBindUpdatesDropAuth == 1 and not cn.has_binding(HOA)


def test_cn_missing_nonce_indices_silently_discarded() -> None:
    cn = make_cn()
    event = MobilityMessageReceived(BindingUpdate(1, BUFlags.A, 10), COA, CN, home_address=HOA)
    assert all(isinstance(a, MessageDiscarded) for a in cn.handle(event, 0.0))


@pytest.mark.parametrize(
    ("stale_home", "stale_careof", "status"),
    [(True, False, 136), (False, True, 137), (True, True, 138)],
)
def test_cn_expired_nonce_indices_get_136_137_138_even_without_a_bit(
    stale_home: bool, stale_careof: bool, status: int
) -> None:
    cn = make_cn()
    mn = MobileSide(cn)
    old_hot, old_cot = mn.tokens(0.0)
    new_hot, new_cot = mn.tokens(250.0)  # nonce rotation; the old nonce is now > 240 s old
    hot = old_hot if stale_home else new_hot
    cot = old_cot if stale_careof else new_cot
    event = mn.bu(1, 250.0, flags=BUFlags.NONE, hot_cot=(hot, cot))
    send, ba = ba_of(cn.handle(event, 250.0))
    assert ba.status == status and ba.options == ()  # no BAD on 136/137/138
    assert send.routing_address == HOA


def test_cn_nonce_valid_until_240s() -> None:
    cn = make_cn()
    mn = MobileSide(cn)
    hot_cot = mn.tokens(0.0)
    _, ba = ba_of(cn.handle(mn.bu(1, 239.0, hot_cot=hot_cot), 239.0))
    assert ba.status == 0


def test_cn_deletion_needs_only_home_nonce() -> None:
    cn = make_cn()
    mn = MobileSide(cn)
    cn.handle(mn.bu(1, 0.0), 0.0)
    hot, cot = mn.tokens(1.0)
    actions = cn.handle(
        mn.bu(2, 1.0, deletion=True, indices=(hot.nonce_index, 0xBEEF), hot_cot=(hot, cot)), 1.0
    )
    _, ba = ba_of(actions)
    assert (ba.status, ba.lifetime) == (0, 0)
    assert RemoveRouteOptimization(HOA) in actions and not cn.has_binding(HOA)


def test_cn_replayed_bu_after_deletion_gets_135() -> None:
    cn = make_cn()
    mn = MobileSide(cn)
    hot_cot = mn.tokens(0.0)
    register = mn.bu(5, 0.0, hot_cot=hot_cot)
    cn.handle(register, 0.0)
    cn.handle(mn.bu(6, 1.0, deletion=True, hot_cot=hot_cot), 1.0)
    _, ba = ba_of(cn.handle(register, 2.0))  # replay of the registration
    assert (ba.status, ba.sequence) == (135, 6)
    assert not cn.has_binding(HOA)
    assert cn.cache.get(HOA).state is BindingState.REPLAY_GUARD  # type: ignore[union-attr]


def test_cn_sequence_not_newer_gets_135_even_without_a_bit() -> None:
    cn = make_cn()
    mn = MobileSide(cn)
    cn.handle(mn.bu(10000, 0.0), 0.0)
    _, ba = ba_of(cn.handle(mn.bu(9999, 1.0, flags=BUFlags.NONE), 1.0))
    assert (ba.status, ba.sequence) == (135, 10000)


def test_cn_home_registration_gets_131() -> None:
    cn = make_cn()
    bu = BindingUpdate(1, BUFlags.A | BUFlags.H, 10, (AlternateCareofAddress(COA),))
    _, ba = ba_of(cn.handle(MobilityMessageReceived(bu, COA, CN, home_address=HOA), 0.0))
    assert ba.status == 131


def test_cn_home_registration_with_existing_cn_binding_gets_139() -> None:
    cn = make_cn()
    cn.handle(MobileSide(cn).bu(1, 0.0), 0.0)
    bu = BindingUpdate(2, BUFlags.A | BUFlags.H, 10, (AlternateCareofAddress(COA),))
    _, ba = ba_of(cn.handle(MobilityMessageReceived(bu, COA, CN, home_address=HOA), 1.0))
    assert ba.status == 139


def test_cn_home_registration_with_nonce_indices_silently_dropped() -> None:
    cn = make_cn()
    bu = BindingUpdate(1, BUFlags.A | BUFlags.H, 10, (NonceIndices(1, 2),))
    actions = cn.handle(MobilityMessageReceived(bu, COA, CN, home_address=HOA), 0.0)
    assert all(isinstance(a, MessageDiscarded) for a in actions)


def test_cn_hao_without_matching_binding_gets_be1() -> None:
    cn = make_cn()
    (send,) = cn.check_home_address_option(COA, HOA, 0.0)
    assert isinstance(send, SendMobilityMessage) and send.dst == COA
    assert isinstance(send.message, BindingError)
    assert (send.message.status, send.message.home_address) == (1, HOA)


def test_cn_hao_from_other_coa_gets_be1_and_binding_unchanged() -> None:
    cn = make_cn()
    cn.handle(MobileSide(cn).bu(1, 0.0), 0.0)
    assert cn.check_home_address_option(COA, HOA, 1.0) == []
    assert len(cn.check_home_address_option(COA2, HOA, 1.0)) == 1
    assert cn.cache.get(HOA).care_of_address == COA  # type: ignore[union-attr]


def test_cn_unknown_mh_type_gets_be2() -> None:
    cn = make_cn()
    (send,) = cn.handle(MobilityMessageReceived(UnknownMobilityMessage(8, b""), COA, CN), 0.0)
    assert isinstance(send, SendMobilityMessage) and isinstance(send.message, BindingError)
    assert send.message.status == 2 and send.dst == COA


def test_cn_sends_brr_before_expiry_of_binding_in_active_use_once() -> None:
    """§9.5.5: a binding that carried data gets one BRR, to the HoA, before it expires."""
    cn = make_cn(refresh_request_lead=20.0)
    cn.handle(MobileSide(cn).bu(1, 0.0), 0.0)
    cn.handle(BindingsInUse((HOA,)), 100.0)
    assert cn.next_deadline() == 400.0
    (brr,) = cn.handle_timer(400.0)
    assert isinstance(brr, SendMobilityMessage) and isinstance(brr.message, BindingRefreshRequest)
    assert brr.dst == HOA and brr.routing_address is None
    assert cn.next_deadline() == 420.0
    actions = cn.handle_timer(420.0)
    assert RemoveRouteOptimization(HOA) in actions
    assert any(isinstance(a, BindingExpired) for a in actions)


def test_cn_no_brr_for_binding_not_in_active_use() -> None:
    """§9.5.5: an idle binding just expires, no BRR."""
    cn = make_cn(refresh_request_lead=20.0)
    cn.handle(MobileSide(cn).bu(1, 0.0), 0.0)
    assert cn.handle_timer(400.0) == []


def test_cn_brr_for_short_binding_in_active_use_at_three_quarters() -> None:
    """§9.5.5: a short binding (16 s) in use still gets its BRR, a quarter before expiry."""
    cn = make_cn(refresh_request_lead=20.0)
    cn.handle(MobileSide(cn).bu(1, 0.0, lifetime=4), 0.0)
    cn.handle(BindingsInUse((HOA,)), 1.0)
    assert cn.next_deadline() == 12.0
    (brr,) = cn.handle_timer(12.0)
    assert isinstance(brr, SendMobilityMessage) and isinstance(brr.message, BindingRefreshRequest)


def test_cn_hao_after_binding_expired_gets_be1() -> None:
    """§9.3.1/§9.3.3: once the binding's lifetime ran out, its HAO gets BE status 1."""
    cn = make_cn()
    cn.handle(MobileSide(cn).bu(1, 0.0, lifetime=4), 0.0)
    assert cn.check_home_address_option(COA, HOA, 1.0) == []
    cn.handle_timer(16.0)
    (send,) = cn.check_home_address_option(COA, HOA, 16.0)
    assert isinstance(send, SendMobilityMessage) and isinstance(send.message, BindingError)
    assert (send.message.status, send.message.home_address, send.dst) == (1, HOA, COA)


def test_cn_hao_with_multicast_home_address_silently_dropped() -> None:
    """§9.3.1: a HoA that is not unicast routable → dropped, no Binding Error."""
    cn = make_cn()
    actions = cn.check_home_address_option(COA, IPv6Address("ff0e::1"), 0.0)
    assert actions and all(isinstance(a, MessageDiscarded) for a in actions)


def test_cn_bu_with_multicast_home_address_silently_dropped() -> None:
    """§9.5.1: a BU whose HAO names a multicast address is discarded without BA or BE."""
    cn = make_cn()
    mn = MobileSide(cn)
    event = mn.bu(1, 0.0)
    event = MobilityMessageReceived(
        event.message, COA, CN, home_address=IPv6Address("ff02::1"), mh_bytes=event.mh_bytes
    )
    actions = cn.handle(event, 0.0)
    assert actions and all(isinstance(a, MessageDiscarded) for a in actions)


def test_cn_ba_135_carries_bad_computed_with_kbm() -> None:
    """§9.5.4: every BA to an authorized BU carries a BAD, status 135 included."""
    cn = make_cn()
    mn = MobileSide(cn)
    cn.handle(mn.bu(10000, 0.0), 0.0)
    hot, cot = mn.tokens(1.0)
    _, ba = ba_of(cn.handle(mn.bu(9999, 1.0, hot_cot=(hot, cot)), 1.0))
    assert (ba.status, ba.sequence) == (135, 10000)
    kbm = binding_management_key(hot.keygen_token, cot.keygen_token)
    assert verify_authenticator(kbm, COA, CN, encode_bu_or_ba(ba))


def test_cn_home_deregistration_acknowledged_with_bad_computed_with_home_kbm() -> None:
    """§9.5.3/§5.2.5: CoA = HoA (the MN at home, no HAO), only the home nonce: the binding
    is deleted and the BA (A = 1) carries a BAD with Kbm = SHA1(home keygen token)."""
    cn = make_cn()
    mn = MobileSide(cn)
    cn.handle(mn.bu(1, 0.0), 0.0)
    hot, _cot = mn.tokens(1.0)
    kbm = binding_management_key(hot.keygen_token, None)
    bu = with_authenticator(
        BindingUpdate(2, BUFlags.A, 0, (NonceIndices(hot.nonce_index, 0),)), kbm, HOA, CN
    )
    event = MobilityMessageReceived(bu, HOA, CN, mh_bytes=encode_bu_or_ba(bu))
    actions = cn.handle(event, 1.0)
    send, ba = ba_of(actions)
    assert (ba.status, ba.sequence, ba.lifetime) == (0, 2, 0)
    assert (send.dst, send.routing_address) == (HOA, None)
    assert verify_authenticator(kbm, HOA, CN, encode_bu_or_ba(ba))
    assert RemoveRouteOptimization(HOA) in actions and not cn.has_binding(HOA)


def test_cn_no_brr_after_refresh() -> None:
    cn = make_cn(refresh_request_lead=20.0)
    mn = MobileSide(cn)
    cn.handle(mn.bu(1, 0.0), 0.0)
    cn.handle(mn.bu(2, 300.0), 300.0)
    assert cn.next_deadline() == 700.0


def test_cn_route_optimization_off_drops_bindings_and_ignores_rr() -> None:
    cn = make_cn()
    cn.handle(MobileSide(cn).bu(1, 0.0), 0.0)
    actions = cn.handle(RouteOptimizationSwitched(False), 1.0)
    assert RemoveRouteOptimization(HOA) in actions and not cn.has_binding(HOA)
    event = MobilityMessageReceived(HomeTestInit(b"h" * 8), HOA, CN)
    assert all(isinstance(a, MessageDiscarded) for a in cn.handle(event, 2.0))
    cn.handle(RouteOptimizationSwitched(True), 3.0)
    assert isinstance(cn.handle(event, 3.0)[0], SendMobilityMessage)


def test_cn_circular_binding_silently_discarded() -> None:
    cn = make_cn()
    cn.handle(MobileSide(cn).bu(1, 0.0), 0.0)
    other = MobileSide(cn, coa=HOA)  # CoA = the HoA of the existing binding
    other_hoa_event = other.bu(1, 1.0)
    looped = MobilityMessageReceived(
        other_hoa_event.message,
        HOA,
        CN,
        home_address=IPv6Address("2001:db8:a::200"),
        mh_bytes=other_hoa_event.mh_bytes,
    )
    actions = cn.handle(looped, 1.0)
    assert all(isinstance(a, MessageDiscarded) for a in actions)


def test_cn_bu_with_bra_option_still_accepted() -> None:
    # TAHI CN-2-3-1-1: a known option that is not valid in a BU is ignored.
    cn = make_cn()
    mn = MobileSide(cn)
    hot, cot = mn.tokens(0.0)
    kbm = binding_management_key(hot.keygen_token, cot.keygen_token)
    message = with_authenticator(
        BindingUpdate(
            1,
            BUFlags.A,
            10,
            (BindingRefreshAdvice(2), NonceIndices(hot.nonce_index, cot.nonce_index)),
        ),
        kbm,
        COA,
        CN,
    )
    event = MobilityMessageReceived(
        message, COA, CN, home_address=HOA, mh_bytes=encode_bu_or_ba(message)
    )
    _, ba = ba_of(cn.handle(event, 0.0))
    assert ba.status == 0


def test_cn_persistent_destination_unreachable_deletes_binding() -> None:
    cn = make_cn()
    cn.handle(MobileSide(cn).bu(1, 0.0), 0.0)
    error = IcmpErrorReceived(IPv6Address("2001:db8:f::fe"), 1, 3, invoking_destination=COA)
    assert cn.handle(error, 1.0) == [] and cn.handle(error, 2.0) == []
    actions = cn.handle(error, 3.0)
    assert RemoveRouteOptimization(HOA) in actions and not cn.has_binding(HOA)
    assert len(cn.check_home_address_option(COA, HOA, 4.0)) == 1  # then BE 1


def test_cn_answers_a_home_agent_switch_with_binding_error_2() -> None:
    """RFC 5142 §6: only mobile nodes act on a Home Agent Switch; a CN treats it as unknown."""
    cn = make_cn()
    (send,) = cn.handle(MobilityMessageReceived(HomeAgentSwitch((HA,)), COA, CN), 0.0)
    assert isinstance(send, SendMobilityMessage)
    assert isinstance(send.message, BindingError) and send.message.status == 2

"""The Mobile Node's side of return routability with one correspondent (RFC 6275 §5.2, §11.6,
§11.7.2, §11.7.3) on a bare Binding Update List entry: one rule per test."""

from __future__ import annotations

from ipaddress import IPv6Address

from nfq_mip6.constants import COOKIE_LENGTH, MAX_TOKEN_LIFETIME
from nfq_mip6.mobility import mn_return_routability as mn_rr
from nfq_mip6.mobility.binding_update_list import BindingUpdateListEntry, BulState
from nfq_mip6.mobility.events import (
    MessageDiscarded,
    MobilityMessageReceived,
    SendMobilityMessage,
)
from nfq_mip6.mobility.rr import (
    binding_management_key,
    encode_bu_or_ba,
    mh_data_for_authenticator,
    with_authenticator,
)
from nfq_mip6.wire.mh import (
    BAFlags,
    BAStatus,
    BindingAck,
    BindingUpdate,
    CareofTest,
    CareofTestInit,
    HomeTest,
    HomeTestInit,
    MHType,
)
from nfq_mip6.wire.options import BindingAuthorizationData, NonceIndices
from tests.support.howto import CN, COA, COA2, HOA

HOME_TOKEN = b"H" * 8
CAREOF_TOKEN = b"C" * 8


def entry() -> BindingUpdateListEntry:
    return BindingUpdateListEntry(
        CN, HOA, COA, home_registration=False, sequence=1, state=BulState.RR_PENDING
    )


def with_tokens(now: float = 0.0) -> BindingUpdateListEntry:
    e = entry()
    e.home_token, e.home_token_at, e.home_nonce_index = HOME_TOKEN, now, 3
    e.careof_token, e.careof_token_at, e.careof_nonce_index = CAREOF_TOKEN, now, 4
    e.careof_token_coa = COA
    return e


def cookies(n: int) -> bytes:
    return bytes([n]) * n


def test_both_tokens_needed_at_first() -> None:
    assert mn_rr.tokens_needed(entry(), 0.0, deletion=False) == (True, True)


def test_a_deletion_needs_only_the_home_token() -> None:
    assert mn_rr.tokens_needed(entry(), 0.0, deletion=True) == (True, False)


def test_tokens_are_used_for_max_token_lifetime_only() -> None:
    e = with_tokens(now=0.0)
    assert mn_rr.tokens_needed(e, MAX_TOKEN_LIFETIME - 1, deletion=False) == (False, False)
    assert mn_rr.tokens_needed(e, MAX_TOKEN_LIFETIME, deletion=False) == (True, True)
    assert mn_rr.home_token_valid(e, MAX_TOKEN_LIFETIME - 1)
    assert not mn_rr.home_token_valid(e, MAX_TOKEN_LIFETIME)


def test_a_care_of_token_counts_only_for_its_care_of_address() -> None:
    e = with_tokens()
    e.care_of_address = COA2
    assert mn_rr.tokens_needed(e, 1.0, deletion=False) == (False, True)


def test_hoti_through_the_tunnel_from_the_hoa_and_coti_directly_from_the_coa() -> None:
    e = entry()
    mn_rr.new_cookies(e, True, True, cookies)
    hoti, coti = mn_rr.test_inits(e, HOA, away=True, now=5.0)
    assert isinstance(hoti, SendMobilityMessage) and isinstance(coti, SendMobilityMessage)
    assert (hoti.message, hoti.src, hoti.dst, hoti.via_tunnel) == (
        HomeTestInit(cookies(COOKIE_LENGTH)),
        HOA,
        CN,
        True,
    )
    assert (coti.message, coti.src, coti.dst, coti.via_tunnel) == (
        CareofTestInit(cookies(COOKIE_LENGTH)),
        COA,
        CN,
        False,
    )
    assert e.rr_next_at == 5.0 + e.rr_delay


def hot(
    cookie: bytes, *, via_tunnel: bool = True, dst: IPv6Address = HOA
) -> tuple[MobilityMessageReceived, HomeTest]:
    message = HomeTest(3, cookie, HOME_TOKEN)
    return MobilityMessageReceived(message, CN, dst, via_tunnel=via_tunnel), message


def test_hot_accepted_only_with_the_cookie_through_the_tunnel_to_the_hoa() -> None:
    e = entry()
    mn_rr.new_cookies(e, True, False, cookies)
    cookie = cookies(COOKIE_LENGTH)
    for event, message in (
        hot(b"x" * COOKIE_LENGTH),
        hot(cookie, via_tunnel=False),
        hot(cookie, dst=COA),
    ):
        discarded = mn_rr.accept_test(e, event, message, HOA, away=True, now=1.0)
        assert discarded == MessageDiscarded("home-test-mismatch", CN, MHType.HOT)
    event, message = hot(cookie)
    assert mn_rr.accept_test(e, event, message, HOA, away=True, now=1.0) is None
    assert (e.home_token, e.home_nonce_index, e.home_token_at) == (HOME_TOKEN, 3, 1.0)
    assert mn_rr.tests_complete(e)


def test_cot_accepted_only_to_the_care_of_address() -> None:
    e = entry()
    mn_rr.new_cookies(e, False, True, cookies)
    message = CareofTest(4, cookies(COOKIE_LENGTH), CAREOF_TOKEN)
    wrong = MobilityMessageReceived(message, CN, COA2)
    assert mn_rr.accept_test(e, wrong, message, HOA, away=True, now=1.0) is not None
    right = MobilityMessageReceived(message, CN, COA)
    assert mn_rr.accept_test(e, right, message, HOA, away=True, now=1.0) is None
    assert (e.careof_token, e.careof_token_coa) == (CAREOF_TOKEN, COA)


def test_expired_nonce_statuses_drop_only_the_expired_tokens() -> None:
    for status, home_kept, careof_kept in (
        (BAStatus.EXPIRED_HOME_NONCE_INDEX, False, True),
        (BAStatus.EXPIRED_CAREOF_NONCE_INDEX, True, False),
        (BAStatus.EXPIRED_NONCES, False, False),
    ):
        e = with_tokens()
        mn_rr.expire_tokens(e, status)
        assert (e.home_token is not None, e.careof_token is not None) == (home_kept, careof_kept)


def test_cn_bu_carries_nonce_indices_and_a_bad_made_with_kbm() -> None:
    e = with_tokens()
    send = mn_rr.correspondent_binding_update(
        e,
        home_address=HOA,
        care_of_address=COA,
        units=105,
        encode_mh_data=mh_data_for_authenticator,
    )
    assert (send.src, send.dst, send.home_address) == (COA, CN, HOA)
    assert isinstance(send.message, BindingUpdate)
    assert send.message.options[0] == NonceIndices(3, 4)
    assert isinstance(send.message.options[-1], BindingAuthorizationData)
    assert e.kbm == binding_management_key(HOME_TOKEN, CAREOF_TOKEN)


def test_a_deletion_bu_from_home_uses_the_home_token_alone_and_no_hao() -> None:
    e = with_tokens()
    send = mn_rr.correspondent_binding_update(
        e, home_address=HOA, care_of_address=HOA, units=0, encode_mh_data=mh_data_for_authenticator
    )
    assert (send.src, send.home_address) == (HOA, None)
    assert e.kbm == binding_management_key(HOME_TOKEN, None)


def test_cn_ba_must_carry_a_bad_made_with_the_kbm_of_the_bu() -> None:
    e = with_tokens()
    mn_rr.correspondent_binding_update(
        e,
        home_address=HOA,
        care_of_address=COA,
        units=105,
        encode_mh_data=mh_data_for_authenticator,
    )
    ba = BindingAck(0, BAFlags.NONE, 1, 105)
    good = with_authenticator(ba, e.kbm, COA, CN)
    forged = with_authenticator(ba, b"x" * 20, COA, CN)
    assert mn_rr.binding_ack_authentic(e, bytes(encode_bu_or_ba(good)))
    assert not mn_rr.binding_ack_authentic(e, bytes(encode_bu_or_ba(forged)))

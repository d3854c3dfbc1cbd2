"""RFC 4285 MN-HA authentication, Mesg-ID replay protection, RFC 4283 MN-ID, key handling."""

from __future__ import annotations

import hashlib
import hmac
import os
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest

from nfq_mip6.security.auth_codec import (
    AUTHENTICATOR_LENGTH,
    SecurityAssociation,
    compute_authenticator,
    locate_authentication_option,
    ntp_timestamp,
    sign_message,
    unix_time_from_ntp,
    verify_message,
)
from nfq_mip6.security.home_agent_auth import HomeAgentVerifier
from nfq_mip6.security.keys import KeyMaterialError, KeySource, load_key
from nfq_mip6.security.mobile_node_auth import BindingAckCheck, MobileNodeAuthenticator
from nfq_mip6.wire import build_mh, parse_mh
from nfq_mip6.wire.mh import BAFlags, BAStatus, BindingAck, BindingUpdate, BUFlags
from nfq_mip6.wire.options import (
    AlternateCareofAddress,
    AuthenticationOption,
    MessageIdentifier,
    MobileNodeIdentifier,
)
from tests.support.howto import HA, HOA

OTHER_HOA = IPv6Address("fec0:106:2700::5")
COA = IPv6Address("fec0:106:1100::4")
KEY = bytes(range(1, 21))
WRONG_KEY = bytes(range(2, 22))
SPI = 1000
NAI = b"mn1@example.org"
T0 = 1_800_000_000.0  # a Unix time (2027)


class FakeWallClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sa(spi: int = SPI, key: bytes = KEY, nai: bytes | None = None) -> SecurityAssociation:
    return SecurityAssociation(spi, key, (IPv6Network(f"{HOA}/128"),), nai)


def home_bu(sequence: int = 7) -> BindingUpdate:
    return BindingUpdate(sequence, BUFlags.A | BUFlags.H, 250, (AlternateCareofAddress(COA),))


def wire(message: BindingUpdate | BindingAck, src: IPv6Address = HOA) -> bytes:
    """The MH as sent (with its checksum): what the receiver sees."""
    return build_mh(message, src, HA)


# ---------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------


def test_ntp_timestamp_round_trip_and_epoch() -> None:
    assert ntp_timestamp(0.0) >> 32 == 2_208_988_800
    assert ntp_timestamp(0.5) & 0xFFFFFFFF == 1 << 31
    assert abs(unix_time_from_ntp(ntp_timestamp(T0 + 0.25)) - (T0 + 0.25)) < 1e-6
    after_2036 = 2_200_000_000.0  # 2039: NTP era 1, the 64-bit value wrapped
    assert ntp_timestamp(after_2036) < ntp_timestamp(T0)
    assert abs(unix_time_from_ntp(ntp_timestamp(after_2036)) - after_2036) < 1e-6


def test_authenticator_is_rfc4285_formula() -> None:
    """First(96, HMAC_SHA1(key, CoA | HoA | MH data up to and including the SPI))."""
    signed = sign_message(home_bu(), key=KEY, spi=SPI, care_of_address=COA, home_address=HOA)
    mh = wire(signed)
    option = signed.options[-1]
    assert isinstance(option, AuthenticationOption)
    assert option.subtype == 1 and option.spi == SPI
    # Find the option by hand: type 9, then subtype(1) SPI(4), then 12 octets of data.
    start = mh.index(bytes([9, 17, 1]) + SPI.to_bytes(4, "big"))
    assert start % 4 == 1  # RFC 4285 §5: alignment 4n+1
    mh_data = mh[:4] + b"\0\0" + mh[6 : start + 7]
    expected = hmac.new(KEY, COA.packed + HOA.packed + mh_data, hashlib.sha1).digest()[:12]
    assert mh[start + 7 : start + 19] == expected == option.data
    assert compute_authenticator(KEY, COA, HOA, mh_data) == expected
    located = locate_authentication_option(mh)
    assert located is not None and located.last and located.mh_data == mh_data
    # The checksum is not covered: the parse of the sent bytes verifies.
    assert verify_message(mh, key=KEY, care_of_address=COA, home_address=HOA)
    assert parse_mh(mh) == signed


@pytest.mark.parametrize(
    ("key", "coa", "hoa"),
    [(WRONG_KEY, COA, HOA), (KEY, HA, HOA), (KEY, COA, OTHER_HOA)],
    ids=["key", "coa", "hoa"],
)
def test_verify_fails_for_any_other_input(key: bytes, coa: IPv6Address, hoa: IPv6Address) -> None:
    signed = sign_message(home_bu(), key=KEY, spi=SPI, care_of_address=COA, home_address=HOA)
    assert not verify_message(wire(signed), key=key, care_of_address=coa, home_address=hoa)


def test_tampered_message_fails() -> None:
    signed = sign_message(home_bu(), key=KEY, spi=SPI, care_of_address=COA, home_address=HOA)
    mh = bytearray(wire(signed))
    mh[10] ^= 0x01  # the lifetime
    assert not verify_message(bytes(mh), key=KEY, care_of_address=COA, home_address=HOA)


def test_unsigned_message_has_no_option() -> None:
    assert locate_authentication_option(wire(home_bu())) is None
    assert not verify_message(wire(home_bu()), key=KEY, care_of_address=COA, home_address=HOA)


def test_security_association_repr_redacts_key() -> None:
    text = repr(sa(nai=NAI)) + str(sa())
    assert KEY.hex() not in text and repr(KEY) not in text and "<redacted>" in text
    with pytest.raises(ValueError):
        SecurityAssociation(255, KEY, ())
    with pytest.raises(ValueError):
        SecurityAssociation(300, b"short", ())


def test_load_key_from_file_and_environment(tmp_path: Path) -> None:
    hex_file = tmp_path / "mn.key"
    hex_file.write_text(KEY.hex() + "\n")
    hex_file.chmod(0o600)
    assert load_key(KeySource(file=hex_file)) == KEY
    raw_file = tmp_path / "raw.key"
    raw_file.write_bytes(b"\xff" * 20)
    raw_file.chmod(0o400)
    assert load_key(KeySource(file=raw_file)) == b"\xff" * 20
    assert load_key(KeySource(env="MNKEY"), {"MNKEY": "0x" + KEY.hex()}) == KEY


def test_load_key_errors_never_show_the_key(tmp_path: Path) -> None:
    readable = tmp_path / "open.key"
    readable.write_text(KEY.hex())
    readable.chmod(0o644)
    problems = []
    for source, environ in [
        (KeySource(file=readable), {}),
        (KeySource(file=tmp_path / "missing.key"), {}),
        (KeySource(env="MNKEY"), {}),
        (KeySource(env="MNKEY"), {"MNKEY": "not hex " + KEY.hex()}),
        (KeySource(env="MNKEY"), {"MNKEY": "00112233"}),
        (KeySource(), {}),
    ]:
        with pytest.raises(KeyMaterialError) as info:
            load_key(source, environ)
        problems.append(str(info.value))
    assert all(KEY.hex() not in p for p in problems), problems


# ---------------------------------------------------------------------------------------------
# Home agent verifier and mobile node authenticator together
# ---------------------------------------------------------------------------------------------


def pair(
    *, ha_clock: float = T0, mn_clock: float = T0, nai: bytes | None = None
) -> tuple[HomeAgentVerifier, MobileNodeAuthenticator, FakeWallClock, FakeWallClock]:
    ha_wall, mn_wall = FakeWallClock(ha_clock), FakeWallClock(mn_clock)
    verifier = HomeAgentVerifier([sa(nai=nai)], wall_clock=ha_wall)
    mn = MobileNodeAuthenticator(sa(nai=nai), wall_clock=mn_wall)
    return verifier, mn, ha_wall, mn_wall


def check(verifier: HomeAgentVerifier, bu: BindingUpdate, hoa: IPv6Address = HOA) -> int | None:
    rejection = verifier.check_home_binding_update(bu, wire(bu, hoa), hoa, COA, 0.0)
    if rejection is None:
        return None
    return -1 if rejection.status is None else rejection.status


def test_authenticated_bu_is_accepted_and_ba_verifies() -> None:
    verifier, mn, _, _ = pair(nai=NAI)
    bu = mn.sign_binding_update(home_bu(), COA, HOA)
    kinds = [type(o).__name__ for o in bu.options]
    # RFC 4283/4285: MN-ID and Mesg-ID before the Authentication option, which is last.
    assert kinds == [
        "AlternateCareofAddress",
        "MobileNodeIdentifier",
        "MessageIdentifier",
        "AuthenticationOption",
    ]
    assert check(verifier, bu) is None
    ba = BindingAck(BAStatus.ACCEPTED, BAFlags.NONE, bu.sequence, 250)
    protected = verifier.protect_binding_ack(ba, COA, HOA)
    assert isinstance(protected.options[-1], AuthenticationOption)
    echoed = [o for o in protected.options if isinstance(o, MessageIdentifier)]
    assert echoed == [o for o in bu.options if isinstance(o, MessageIdentifier)]
    mh = build_mh(protected, HA, HOA)
    assert mn.check_binding_ack(parse_mh(mh), mh, COA, HOA) is BindingAckCheck.ACCEPT  # type: ignore[arg-type]


def test_unauthenticated_ba_is_dropped_by_the_mn() -> None:
    _, mn, _, _ = pair()
    ba = BindingAck(BAStatus.ACCEPTED, BAFlags.NONE, 7, 250)
    mh = build_mh(ba, HA, HOA)
    assert mn.check_binding_ack(ba, mh, COA, HOA) is BindingAckCheck.DROP
    forged = sign_message(ba, key=WRONG_KEY, spi=SPI, care_of_address=COA, home_address=HOA)
    mh = build_mh(forged, HA, HOA)
    assert mn.check_binding_ack(forged, mh, COA, HOA) is BindingAckCheck.DROP


def test_forged_binding_updates_get_146_and_unsigned_bas() -> None:
    verifier, _, _, mn_wall = pair()
    plain = home_bu()
    assert check(verifier, plain) == BAStatus.MIPV6_AUTH_FAIL  # no option
    wrong_key = MobileNodeAuthenticator(sa(key=WRONG_KEY), wall_clock=mn_wall)
    assert check(verifier, wrong_key.sign_binding_update(plain, COA, HOA)) == 146
    wrong_spi = MobileNodeAuthenticator(sa(spi=SPI + 1), wall_clock=mn_wall)
    assert check(verifier, wrong_spi.sign_binding_update(plain, COA, HOA)) == 146
    # A key that is valid, but not for this home address (policy).
    other = MobileNodeAuthenticator(sa(), wall_clock=mn_wall)
    assert check(verifier, other.sign_binding_update(plain, COA, OTHER_HOA), OTHER_HOA) == 146
    # The 146 answer is never authenticated.
    ba = BindingAck(BAStatus.MIPV6_AUTH_FAIL, BAFlags.NONE, 7, 0)
    assert verifier.protect_binding_ack(ba, COA, HOA) == ba
    assert verifier.counters["auth-option-missing"] == 1
    assert verifier.counters["auth-authenticator-mismatch"] == 1
    assert verifier.counters["auth-unknown-spi"] == 1
    assert verifier.counters["auth-home-address-not-authorized"] == 1


def test_option_not_last_or_wrong_subtype_fail() -> None:
    verifier, mn, _, _ = pair()
    bu = mn.sign_binding_update(home_bu(), COA, HOA)
    moved = BindingUpdate(bu.sequence, bu.flags, bu.lifetime, (bu.options[-1], *bu.options[:-1]))
    assert check(verifier, moved) == 146
    auth = bu.options[-1]
    assert isinstance(auth, AuthenticationOption)
    aaa = BindingUpdate(
        bu.sequence,
        bu.flags,
        bu.lifetime,
        (*bu.options[:-1], AuthenticationOption(2, SPI, auth.data)),
    )
    assert check(verifier, aaa) == 146


def test_mn_id_must_match_the_associations_nai() -> None:
    verifier, _, _, mn_wall = pair(nai=NAI)
    liar = MobileNodeAuthenticator(sa(), nai=b"mn2@example.org", wall_clock=mn_wall)
    assert check(verifier, liar.sign_binding_update(home_bu(), COA, HOA)) == 146
    assert verifier.counters["auth-mn-id-mismatch"] == 1


def test_missing_mesg_id_gets_145_signed() -> None:
    verifier, _, _, mn_wall = pair()
    mn = MobileNodeAuthenticator(sa(), use_mesg_id=False, wall_clock=mn_wall)
    assert check(verifier, mn.sign_binding_update(home_bu(), COA, HOA)) == 145
    ba = verifier.protect_binding_ack(BindingAck(145, BAFlags.NONE, 7, 0), COA, HOA)
    mh = build_mh(ba, HA, HOA)
    assert mn.check_binding_ack(ba, mh, COA, HOA) is BindingAckCheck.RESYNC
    assert mn.use_mesg_id
    assert check(verifier, mn.sign_binding_update(home_bu(8), COA, HOA)) is None


def test_replayed_bu_gets_144_with_the_ha_time() -> None:
    verifier, mn, _, _ = pair()
    bu = mn.sign_binding_update(home_bu(), COA, HOA)
    assert check(verifier, bu) is None
    rejection = verifier.check_home_binding_update(bu, wire(bu), HOA, COA, 0.0)
    assert rejection is not None and rejection.status == BAStatus.MIPV6_ID_MISMATCH
    assert rejection.reason == "mesg-id-replayed"
    (ha_time,) = rejection.options
    assert isinstance(ha_time, MessageIdentifier)
    assert abs(unix_time_from_ntp(ha_time.identifier) - T0) < 1e-3


def test_clock_skew_gets_144_then_the_mn_resynchronises() -> None:
    verifier, mn, ha_wall, mn_wall = pair(mn_clock=T0 - 60)
    bu = mn.sign_binding_update(home_bu(), COA, HOA)
    rejection = verifier.check_home_binding_update(bu, wire(bu), HOA, COA, 0.0)
    assert rejection is not None and rejection.status == 144
    assert rejection.reason == "mesg-id-out-of-window"
    ba = BindingAck(144, BAFlags.NONE, bu.sequence, 0, rejection.options)
    ba = verifier.protect_binding_ack(ba, COA, HOA)
    assert [type(o).__name__ for o in ba.options] == ["MessageIdentifier", "AuthenticationOption"]
    mh = build_mh(ba, HA, HOA)
    assert mn.check_binding_ack(ba, mh, COA, HOA) is BindingAckCheck.RESYNC
    assert abs(mn.clock_offset - 60) < 1e-3
    ha_wall.now += 1
    mn_wall.now += 1
    assert check(verifier, mn.sign_binding_update(home_bu(8), COA, HOA)) is None


def test_window_edges() -> None:
    verifier, mn, _, mn_wall = pair()
    mn_wall.now = T0 + 6.9
    assert check(verifier, mn.sign_binding_update(home_bu(), COA, HOA)) is None
    verifier2, mn2, _, mn_wall2 = pair()
    mn_wall2.now = T0 + 7.1
    assert check(verifier2, mn2.sign_binding_update(home_bu(), COA, HOA)) == 144


def test_timestamps_strictly_increase_even_with_a_frozen_clock() -> None:
    verifier, mn, _, _ = pair()
    for sequence in range(5):
        assert check(verifier, mn.sign_binding_update(home_bu(sequence), COA, HOA)) is None


def test_stale_ba_echo_is_dropped() -> None:
    verifier, mn, _, _ = pair()
    first = mn.sign_binding_update(home_bu(1), COA, HOA)
    assert check(verifier, first) is None
    ba_first = verifier.protect_binding_ack(BindingAck(0, BAFlags.NONE, 1, 250), COA, HOA)
    mn.sign_binding_update(home_bu(2), COA, HOA)  # a newer BU is outstanding
    mh = build_mh(ba_first, HA, HOA)
    assert mn.check_binding_ack(ba_first, mh, COA, HOA) is BindingAckCheck.DROP


def test_optional_mode_lets_unknown_home_addresses_through() -> None:
    verifier = HomeAgentVerifier([sa()], required=False, wall_clock=FakeWallClock())
    assert check(verifier, home_bu(), OTHER_HOA) is None  # no SA covers it: legacy behaviour
    assert check(verifier, home_bu(), HOA) == 146  # an SA covers it: must authenticate
    ba = BindingAck(0, BAFlags.NONE, 7, 250)
    assert verifier.protect_binding_ack(ba, COA, OTHER_HOA) == ba


def test_timestamps_survive_a_restart() -> None:
    verifier, mn, ha_wall, _ = pair()
    bu = mn.sign_binding_update(home_bu(), COA, HOA)
    assert check(verifier, bu) is None
    restarted = HomeAgentVerifier([sa()], wall_clock=ha_wall)
    restarted.restore_timestamps(verifier.last_timestamps())
    assert check(restarted, bu) == 144


def test_verifier_repr_and_duplicate_spi() -> None:
    verifier, mn, _, _ = pair()
    assert KEY.hex() not in repr(verifier) + repr(mn)
    with pytest.raises(ValueError):
        HomeAgentVerifier([sa(), sa()])


def test_random_keys_never_verify() -> None:
    signed = sign_message(home_bu(), key=KEY, spi=SPI, care_of_address=COA, home_address=HOA)
    mh = wire(signed)
    for _ in range(50):
        assert not verify_message(mh, key=os.urandom(20), care_of_address=COA, home_address=HOA)
    assert len(signed.options[-1].data) == AUTHENTICATOR_LENGTH  # type: ignore[union-attr]
    assert isinstance(signed.options[0], AlternateCareofAddress)
    assert not any(isinstance(o, MobileNodeIdentifier) for o in signed.options)


def test_auth_failure_answers_are_rate_limited_into_silence() -> None:
    from nfq_mip6.security.ratelimit import TokenBucket

    verifier = HomeAgentVerifier(
        [sa()], wall_clock=FakeWallClock(), auth_failure_limit=TokenBucket(1.0, 2.0)
    )
    statuses = []
    for _ in range(4):
        rejection = verifier.check_home_binding_update(home_bu(), wire(home_bu()), HOA, COA, 10.0)
        assert rejection is not None
        statuses.append(rejection.status)
    assert statuses == [146, 146, None, None]  # None: silent discard
    assert verifier.counters["auth-failure-ba-rate-limited"] == 2
    rejection = verifier.check_home_binding_update(home_bu(), wire(home_bu()), HOA, COA, 11.0)
    assert rejection is not None and rejection.status == 146


def test_replay_order_survives_the_2036_wrap() -> None:
    from nfq_mip6.security.auth_codec import ntp_ordinal

    before, after = ntp_timestamp(2_085_978_495.5), ntp_timestamp(2_085_978_496.5)  # 2036-02-07
    assert after < before and ntp_ordinal(after) > ntp_ordinal(before)
    verifier = HomeAgentVerifier([sa()], wall_clock=FakeWallClock(2_085_978_496.5))
    verifier.restore_timestamps({SPI: before})
    mn = MobileNodeAuthenticator(sa(), wall_clock=FakeWallClock(2_085_978_496.5))
    assert check(verifier, mn.sign_binding_update(home_bu(), COA, HOA)) is None

"""Fuzz harness (hypothesis, short): the home agent's receive pipeline on hostile input.

Raw octets → ``parse_and_validate_mh`` (§9.2) → the HA core with the RFC 4285 verifier: no
exception other than the documented verdicts, ever; and a signed BU with any octet of its
authenticated part changed never authenticates. Longer runs: ``bench/fuzz_ha.py`` against a
running agent, or ``HYPOTHESIS_PROFILE``-style ``--hypothesis-seed`` with more examples.
"""

from __future__ import annotations

import contextlib
from ipaddress import IPv6Address, IPv6Network

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nfq_mip6.mobility.events import MobilityMessageReceived
from nfq_mip6.mobility.home_agent import HomeAgent, HomeAgentConfig
from nfq_mip6.security.auth_codec import (
    SecurityAssociation,
    locate_authentication_option,
    verify_message,
)
from nfq_mip6.security.home_agent_auth import HomeAgentVerifier
from nfq_mip6.security.mobile_node_auth import MobileNodeAuthenticator
from nfq_mip6.wire import (
    Accepted,
    MalformedPacket,
    build_ipv6_packet,
    build_mh,
    parse_and_validate_mh,
    parse_ipv6,
)
from nfq_mip6.wire.mh import BindingUpdate, BUFlags
from nfq_mip6.wire.options import (
    AlternateCareofAddress,
    AuthenticationOption,
    BindingRefreshAdvice,
    MessageIdentifier,
    MobileNodeIdentifier,
    NonceIndices,
    UnknownOption,
)
from tests.support.howto import HA, HOA, PREFIX

COA = IPv6Address("fec0:106:1100::4")
KEY = bytes(range(20))
SPI = 4242
WALL = 1_800_000_000.0

fuzz = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

options = st.one_of(
    st.builds(AlternateCareofAddress, st.sampled_from([COA, HOA, IPv6Address("ff02::1")])),
    st.builds(NonceIndices, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    st.builds(BindingRefreshAdvice, st.integers(0, 0xFFFF)),
    st.builds(MobileNodeIdentifier, st.integers(0, 255), st.binary(max_size=40)),
    st.builds(
        AuthenticationOption, st.integers(0, 3), st.integers(0, 2**32 - 1), st.binary(max_size=20)
    ),
    st.builds(MessageIdentifier, st.integers(0, 2**64 - 1)),
    st.builds(UnknownOption, st.integers(11, 255), st.binary(max_size=30)),
)

binding_updates = st.builds(
    BindingUpdate,
    st.integers(0, 0xFFFF),
    st.sampled_from(
        [BUFlags.A | BUFlags.H, BUFlags.H, BUFlags.A | BUFlags.H | BUFlags.L, BUFlags.A]
    ),
    st.integers(0, 0xFFFF),
    st.lists(options, max_size=4).map(tuple),
)


def _home_agent() -> tuple[HomeAgent, HomeAgentVerifier]:
    verifier = HomeAgentVerifier(
        [SecurityAssociation(SPI, KEY, (IPv6Network(f"{HOA}/128"),))], wall_clock=lambda: WALL
    )
    core = HomeAgent(HomeAgentConfig(address=HA, home_prefixes=(PREFIX,), proxy_dad=False))
    return core, verifier


def _feed(core: HomeAgent, verifier: HomeAgentVerifier, raw: bytes) -> None:
    """What the HA runtime does with a queued packet, minus the kernel."""
    verdict = parse_and_validate_mh(raw)
    if not isinstance(verdict, Accepted):
        return
    packet = parse_ipv6(raw)
    event = MobilityMessageReceived(
        message=verdict.message,
        src=packet.src,
        dst=packet.dst,
        home_address=packet.home_address,
        routing_address=packet.rh2_address,
        mh_bytes=packet.upper_layer_bytes,
    )
    if isinstance(verdict.message, BindingUpdate):
        hoa = packet.home_address or packet.src
        rejection = verifier.check_home_binding_update(
            verdict.message, event.mh_bytes, hoa, packet.src, 0.0
        )
        if rejection is not None:
            assert rejection.status in (None, 144, 145, 146)
            return
    core.handle(event, 0.0)
    core.handle_timer(1e9)


@st.composite
def hostile_packets(draw: st.DrawFn) -> bytes:
    bu = draw(binding_updates)
    if draw(st.booleans()):
        mn = MobileNodeAuthenticator(
            SecurityAssociation(SPI, KEY, (IPv6Network(f"{HOA}/128"),)), wall_clock=lambda: WALL
        )
        bu = mn.sign_binding_update(bu, COA, HOA)
    hao = draw(st.sampled_from([HOA, None, IPv6Address("fe80::1"), IPv6Address("::")]))
    raw = bytearray(build_ipv6_packet(COA, HA, 135, build_mh(bu, hao or COA, HA), home_address=hao))
    for _ in range(draw(st.integers(0, 3))):
        raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    return bytes(raw)


@given(st.lists(hostile_packets(), min_size=1, max_size=5))
@fuzz
def test_home_agent_pipeline_never_raises(packets: list[bytes]) -> None:
    core, verifier = _home_agent()
    for raw in packets:
        _feed(core, verifier, raw)
    assert len(core.cache) <= 1  # only the one authorised home address can ever register


@given(st.binary(max_size=300))
@fuzz
def test_locate_and_verify_on_arbitrary_bytes(data: bytes) -> None:
    for candidate in (data, bytes((59, max(0, (len(data) + 2) // 8 - 1), 5)) + data):
        with contextlib.suppress(MalformedPacket):
            locate_authentication_option(candidate)
        assert verify_message(candidate, key=KEY, care_of_address=COA, home_address=HOA) in (
            True,
            False,
        )


@given(binding_updates, st.data())
@fuzz
def test_changing_an_authenticated_octet_breaks_the_authenticator(
    bu: BindingUpdate, data: st.DataObject
) -> None:
    mn = MobileNodeAuthenticator(
        SecurityAssociation(SPI, KEY, (IPv6Network(f"{HOA}/128"),)), wall_clock=lambda: WALL
    )
    try:
        mh = bytearray(build_mh(mn.sign_binding_update(bu, COA, HOA), HOA, HA))
    except MalformedPacket:  # e.g. options too long for one MH
        return
    assert verify_message(bytes(mh), key=KEY, care_of_address=COA, home_address=HOA)
    located = locate_authentication_option(bytes(mh))
    assert located is not None
    authenticated = len(located.mh_data) + len(located.data)
    index = data.draw(st.integers(0, authenticated - 1).filter(lambda i: i not in (4, 5)))
    mh[index] ^= data.draw(st.integers(1, 255))
    assert not verify_message(bytes(mh), key=KEY, care_of_address=COA, home_address=HOA)

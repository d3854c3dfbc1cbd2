"""The Home Agent answers a BU from the home link on the home link (RFC 6275 §10.3.2).

The MN registers from visitnet (scripted, as in ``test_home_agent``), then comes home with
the binding still in the HA's cache: its HoA is on eth0 again and it de-registers with BUs
from the HoA without an HAO. The kernel would route the HA's answer to the HoA through the
binding's seg6 tunnel route to the old CoA; the HA sends it instead in a frame to the MN's
link-layer address (the BU's source MAC from NFQUEUE), so the MN receives it on the home
link and nothing goes toward the old CoA on the internet link.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    AgentHandle,
    mn_away,
    running_home_agent,
    scripted_mobile_node,
    write_agent_config,
)

from nfq_mip6.testbed import Testbed
from nfq_mip6.wire import (
    BAStatus,
    BindingAck,
    BindingError,
    BindingUpdate,
    BUFlags,
    build_ipv6_packet,
    build_mh,
    finalize_mh,
    parse_ipv6,
    parse_mh,
)
from nfq_mip6.wire.mh import IPPROTO_MH
from tests.support.howto import COA, HA, HOA

pytestmark = pytest.mark.netns

QUEUE_NUM = 19
REGISTERED_SEQUENCE = 40


def registration_from_away(sequence: int) -> bytes:
    """A home registration from the CoA with an HAO (checksum over the HoA, §6.1.1).

    The lifetime (250 units = 1000 s) stays below the home prefix's valid lifetime (12000 s
    in the test bed's radvd), so the answer is status 0 whether or not the HA has seen an RA
    yet; 0xFFFF would be capped to the prefix lifetime with status 1 (§10.3.1) once it has.
    """
    bu = BindingUpdate(sequence, BUFlags.A | BUFlags.H, 250, ())
    return build_ipv6_packet(COA, HA, IPPROTO_MH, build_mh(bu, HOA, HA), home_address=HOA)


def deregistration_from_home(sequence: int) -> bytes:
    """§11.5.4: at home, the de-registration BU comes from the HoA itself, no HAO."""
    bu = BindingUpdate(sequence, BUFlags.A | BUFlags.H, 0, ())
    return build_ipv6_packet(HOA, HA, IPPROTO_MH, build_mh(bu, HOA, HA))


def malformed_bu_from_home(sequence: int) -> bytes:
    """A BU from the HoA (no HAO) whose Header Len (0) is below the BU's minimum (§9.2)."""
    mh = bytearray(build_mh(BindingUpdate(sequence, BUFlags.A | BUFlags.H, 0, ()), HOA, HA))
    mh[1] = 0
    mh[4:6] = b"\0\0"
    return build_ipv6_packet(HOA, HA, IPPROTO_MH, finalize_mh(mh, HOA, HA))


def plain_binding_ack(replies: list[bytes]) -> BindingAck:
    """The one Mobility Header among the answers (the HA's kernel may also send ND): a BA
    from the HA to the HoA without an RH2 (on the home link)."""
    packets = [parse_ipv6(reply) for reply in replies]
    mobility = [packet for packet in packets if packet.upper_layer == IPPROTO_MH]
    assert len(mobility) == 1, f"{len(mobility)} Mobility Header(s) on the home link"
    packet = mobility[0]
    assert (packet.src, packet.dst, packet.rh2_address) == (HA, HOA, None)
    message = parse_mh(packet.upper_layer_bytes)
    assert isinstance(message, BindingAck), message
    return message


@pytest.fixture
def agent(testbed: Testbed, tmp_path: Path) -> Iterator[AgentHandle]:
    ha = testbed.node("ha")
    config = write_agent_config(
        tmp_path, "ha", QUEUE_NUM, "\n[ha]\nmax_tunnel_nr = 5\nrequire_authentication = false\n"
    )
    with running_home_agent(ha, config, tmp_path / "ha.sock") as handle:
        yield handle
    testbed.reset()


def test_bu_from_the_home_link_is_answered_on_the_home_link(
    agent: AgentHandle, testbed: Testbed, tmp_path: Path
) -> None:
    from scapy.layers.inet6 import IPv6
    from scapy.utils import rdpcap

    mn = testbed.node("mn")
    with mn_away(testbed, HOA), scripted_mobile_node(mn, HA) as away:
        replies = away.exchange(registration_from_away(REGISTERED_SEQUENCE), wait=5.0)
        assert replies, "no answer to the registration"
        registered = parse_mh(parse_ipv6(replies[0]).upper_layer_bytes)
        assert isinstance(registered, BindingAck) and registered.status == BAStatus.ACCEPTED
    # mn_away has brought the MN home (HoA on eth0); the HA still tunnels the HoA to COA.
    assert [row["home_address"] for row in agent.control("cache")["bindings"]] == [str(HOA)]
    with (
        scripted_mobile_node(mn, HA) as home,
        testbed.capture("internet", tmp_path / "internet.pcap") as pcap,
    ):
        stale = plain_binding_ack(home.exchange(deregistration_from_home(3), first=False))
        # §9.5.1 / §10.3.2: rejected, with the last accepted sequence number, on the home link.
        assert stale.status == BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW
        assert stale.sequence == REGISTERED_SEQUENCE
        assert len(agent.control("cache")["bindings"]) == 1
        # §9.2 / §10.3.2: a malformed BU from home is answered with a Parameter Problem on
        # the home link too, not sent to the old CoA (tunnel or RH2).
        errors = [
            parse_ipv6(reply)
            for reply in home.exchange(malformed_bu_from_home(REGISTERED_SEQUENCE), first=False)
        ]
        problems = [p for p in errors if p.upper_layer == 58 and p.upper_layer_bytes[0] == 4]
        assert len(problems) == 1, f"{len(problems)} Parameter Problem(s) on the home link"
        assert (problems[0].dst, problems[0].rh2_address) == (HOA, None)
        assert int.from_bytes(problems[0].upper_layer_bytes[4:8], "big") == 40 + 1  # Header Len
        # ... and an unknown MH type with a Binding Error status 2 (§9.2), also on the link.
        unknown = bytearray(8)
        unknown[0], unknown[1], unknown[2] = 59, 0, 42
        answers = home.exchange(
            build_ipv6_packet(HOA, HA, IPPROTO_MH, finalize_mh(unknown, HOA, HA)), first=False
        )
        errors = [p for p in map(parse_ipv6, answers) if p.upper_layer == IPPROTO_MH]
        assert len(errors) == 1, f"{len(errors)} Mobility Header(s) on the home link"
        message = parse_mh(errors[0].upper_layer_bytes)
        assert isinstance(message, BindingError) and message.status == 2
        assert (errors[0].dst, errors[0].rh2_address) == (HOA, None)
        assert len(agent.control("cache")["bindings"]) == 1
        accepted = plain_binding_ack(
            home.exchange(deregistration_from_home(REGISTERED_SEQUENCE + 1), first=False)
        )
        assert accepted.status == BAStatus.ACCEPTED
        assert accepted.sequence == REGISTERED_SEQUENCE + 1
    assert agent.control("cache")["bindings"] == []
    toward_old_coa = [f for f in rdpcap(str(pcap)) if IPv6 in f and f[IPv6].dst == str(COA)]
    assert toward_old_coa == [], "an answer was tunnelled to the old care-of address"
    assert agent.stats()["home_agent"]["home_link_answers"] >= 4

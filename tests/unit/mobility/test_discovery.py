"""Home agent discovery (RFC 6275 §11.4.1) and Mobile Prefix Solicitation (§11.4.2, §11.4.3)
on their own, without a MobileNode: one rule per test."""

from __future__ import annotations

from ipaddress import IPv6Address

from nfq_mip6.constants import DHAAD_RETRIES, INITIAL_DHAAD_TIMEOUT, INITIAL_SOLICIT_TIMER
from nfq_mip6.mobility.discovery import (
    MPS_RETRIES,
    HomeAgentDiscovery,
    MobilePrefixDiscovery,
    home_agents_anycast,
)
from nfq_mip6.mobility.events import (
    HomeAgentDiscovered,
    MessageDiscarded,
    MobilePrefixAdvertisementReceived,
    SendDhaadRequest,
    SendMobilePrefixSolicitation,
)
from tests.support.howto import COA, HA, HOA, PREFIX

HA2 = IPv6Address("fec0:106:2700::3")
ANYCAST = home_agents_anycast(PREFIX)


def test_dhaad_request_goes_from_the_coa_to_the_home_agents_anycast_address() -> None:
    discovery = HomeAgentDiscovery()
    assert discovery.start(7, COA, ANYCAST, 0.0) == [SendDhaadRequest(7, COA, ANYCAST)]
    assert discovery.next_deadline() == INITIAL_DHAAD_TIMEOUT


def test_dhaad_retransmits_doubling_then_gives_up() -> None:
    discovery = HomeAgentDiscovery()
    discovery.start(7, COA, ANYCAST, 0.0)
    now, sent = 0.0, 0
    while (deadline := discovery.next_deadline()) is not None:
        now = deadline
        actions = discovery.timer(COA, ANYCAST, now)
        sent += sum(isinstance(a, SendDhaadRequest) for a in actions)
    assert sent == DHAAD_RETRIES
    assert now == INITIAL_DHAAD_TIMEOUT * (2 ** (DHAAD_RETRIES + 1) - 1)
    assert actions == [MessageDiscarded("dhaad-no-reply")]


def test_dhaad_nothing_due_before_the_deadline() -> None:
    discovery = HomeAgentDiscovery()
    discovery.start(7, COA, ANYCAST, 0.0)
    assert discovery.timer(COA, ANYCAST, INITIAL_DHAAD_TIMEOUT - 0.1) == []


def test_dhaad_reply_home_agents_are_tried_in_order() -> None:
    discovery = HomeAgentDiscovery()
    discovery.start(7, COA, ANYCAST, 0.0)
    assert discovery.reply(HomeAgentDiscovered(7, HA, (HA, HA2))) == HA
    assert discovery.next_deadline() is None
    assert discovery.next_candidate() == HA2
    assert discovery.next_candidate() is None


def test_dhaad_reply_with_another_identifier_or_unsolicited_is_discarded() -> None:
    discovery = HomeAgentDiscovery()
    assert isinstance(discovery.reply(HomeAgentDiscovered(7, HA, (HA,))), MessageDiscarded)
    discovery.start(7, COA, ANYCAST, 0.0)
    assert isinstance(discovery.reply(HomeAgentDiscovered(8, HA, (HA,))), MessageDiscarded)
    assert isinstance(discovery.reply(HomeAgentDiscovered(7, HA, ())), MessageDiscarded)
    assert discovery.next_deadline() is not None  # still waiting for the right reply


def test_one_mobile_prefix_solicitation_at_a_time() -> None:
    mps = MobilePrefixDiscovery()
    assert mps.start(0.0)
    assert not mps.start(0.5)
    (solicitation,) = mps.solicit(COA, HA, HOA)
    assert solicitation == SendMobilePrefixSolicitation(1, COA, HA, HOA)
    assert mps.next_deadline() == INITIAL_SOLICIT_TIMER


def test_mps_without_a_home_registration_is_dropped() -> None:
    mps = MobilePrefixDiscovery()
    mps.start(0.0)
    assert mps.solicit(None, None, HOA) == []
    assert mps.next_deadline() is None


def test_mps_retransmits_then_gives_up() -> None:
    mps = MobilePrefixDiscovery()
    mps.start(0.0)
    retransmissions = 0
    while (deadline := mps.next_deadline()) is not None:
        assert mps.due(deadline)
        gave_up = mps.retransmit(deadline)
        if gave_up is not None:
            assert gave_up == MessageDiscarded("mps-no-reply")
            break
        retransmissions += 1
    assert retransmissions == MPS_RETRIES


def mpa(
    identifier: int, src: IPv6Address = HA, rh2: bool = True
) -> MobilePrefixAdvertisementReceived:
    return MobilePrefixAdvertisementReceived(identifier, src, (), via_routing_header=rh2)


def test_mpa_counts_only_from_the_home_agent_with_a_routing_header() -> None:
    mps = MobilePrefixDiscovery()
    not_from_ha = MessageDiscarded("mpa-not-from-home-agent", HA2)
    assert mps.advertisement(mpa(0, src=HA2), HA, HOA, 1.0) == [not_from_ha]
    assert mps.advertisement(mpa(0, rh2=False), HA, HOA, 1.0) == [
        MessageDiscarded("mpa-not-from-home-agent", HA)
    ]
    assert mps.advertisement(mpa(0), HA, HOA, 1.0) is None  # valid, unsolicited


def test_solicited_mpa_must_echo_the_identifier() -> None:
    mps = MobilePrefixDiscovery()
    mps.start(0.0)
    assert mps.advertisement(mpa(9), HA, HOA, 1.0) == [
        MessageDiscarded("mpa-identifier-mismatch", HA)
    ]
    assert mps.next_deadline() is not None
    assert mps.advertisement(mpa(1), HA, HOA, 1.0) == []  # valid, solicited
    assert mps.next_deadline() is None

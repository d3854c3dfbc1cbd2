"""Home Agent core, drain: RFC 5142 Home Agent Switch to every registered MN (§5.1), at a
bounded rate, retransmitted (§5.2), stopped by a Binding Error 2 (§5.3); DHAAD replies leave
a draining home agent out."""

from __future__ import annotations

from ipaddress import IPv6Address

from nfq_mip6.mobility.events import (
    Action,
    DhaadRequestReceived,
    HomeAgentDrainRequested,
    MessageDiscarded,
    MobilityMessageReceived,
    OwnHomeAgentInformation,
    RouterAdvertisementReceived,
    SendDhaadReply,
    SendMobilityMessage,
)
from nfq_mip6.mobility.home_agent import HomeAgent, HomeAgentConfig
from nfq_mip6.wire.mh import (
    BindingError,
    BindingUpdate,
    BUFlags,
    HomeAgentSwitch,
)
from nfq_mip6.wire.options import AlternateCareofAddress
from tests.support.vectors import COA, HA, HA2, HOA, PREFIX

HA3 = IPv6Address("2001:db8:a::3")
ANYCAST = IPv6Address("2001:db8:a::fdff:ffff:ffff:fffe")


def make_ha(**kwargs: object) -> HomeAgent:
    config = HomeAgentConfig(
        address=HA,
        home_prefixes=(PREFIX,),
        proxy_dad=False,
        **kwargs,  # type: ignore[arg-type]
    )
    return HomeAgent(config)


def mn(index: int) -> tuple[IPv6Address, IPv6Address]:
    """(HoA, CoA) of mobile node ``index``."""
    return IPv6Address(int(HOA) + index), IPv6Address(int(COA) + index)


def bu(index: int, seq: int = 1, lifetime_units: int = 100) -> MobilityMessageReceived:
    hoa, coa = mn(index)
    message = BindingUpdate(
        seq, BUFlags.A | BUFlags.H, lifetime_units, (AlternateCareofAddress(coa),)
    )
    return MobilityMessageReceived(message, coa, HA, home_address=hoa)


def registered(count: int, **kwargs: object) -> HomeAgent:
    ha = make_ha(**kwargs)
    for index in range(count):
        ha.handle(bu(index), 0.0)
    assert len(ha.binding_cache_rows(0.0)) == count
    return ha


def switches(actions: list[Action]) -> list[SendMobilityMessage]:
    return [
        a
        for a in actions
        if isinstance(a, SendMobilityMessage) and isinstance(a.message, HomeAgentSwitch)
    ]


def other_home_agent(ha: HomeAgent, link_local: str, address: IPv6Address, preference: int) -> None:
    ha.handle(
        RouterAdvertisementReceived(
            IPv6Address(link_local), True, 1800, preference, None, (address,)
        ),
        0.0,
    )


def test_drain_sends_one_switch_per_mn_at_the_rate_asked() -> None:
    ha = registered(3)
    first = switches(ha.handle(HomeAgentDrainRequested(2.0, (HA2,)), 10.0))
    assert len(first) == 1
    assert ha.next_deadline() == 10.5
    assert switches(ha.handle_timer(10.4)) == []
    second = switches(ha.handle_timer(10.5))
    third = switches(ha.handle_timer(11.0))
    sent = first + second + third
    assert len(sent) == 3
    assert {(s.dst, s.routing_address) for s in sent} == {mn(i)[::-1] for i in range(3)}
    for send in sent:
        assert send.src == HA and send.home_address is None
        assert send.message == HomeAgentSwitch((HA2,))
    assert ha.drain_counters["switch_sent"] == 3
    status = ha.drain_status(11.0)
    assert status["draining"] is True and status["queued"] == 0 and status["awaiting"] == 3


def test_switch_lists_the_other_home_agents_by_preference() -> None:
    ha = registered(1)
    other_home_agent(ha, "fe80::2", HA2, 5)
    other_home_agent(ha, "fe80::3", HA3, 10)
    (send,) = switches(ha.handle(HomeAgentDrainRequested(1.0), 1.0))
    assert send.message == HomeAgentSwitch((HA3, HA2))


def test_status_shows_the_home_agents_list_with_the_advertised_preferences() -> None:
    """RFC 6275 §10.5.1: the list DHAAD replies are ranked by, with this HA's own §7.4
    preference (configured, then what its own RA says), so an operator sees how new MNs
    will spread across (virtual) home agents."""
    ha = registered(1, preference=100)
    other_home_agent(ha, "fe80::2", HA2, 5)
    other_home_agent(ha, "fe80::3", HA3, 200)
    status = ha.drain_status(10.0)
    assert status["preference"] == 100
    assert status["home_agents_list"] == [
        {"link_local": "fe80::2", "preference": 5, "lifetime": 1790, "addresses": [str(HA2)]},
        {"link_local": "fe80::3", "preference": 200, "lifetime": 1790, "addresses": [str(HA3)]},
    ]
    assert ha.home_agent_addresses(10.0) == [HA3, HA, HA2]  # the DHAAD reply's order
    assert status["home_agents"] == [str(HA3), str(HA2)]  # a switch never lists itself
    ha.handle(OwnHomeAgentInformation(preference=1), 11.0)  # its own RA says otherwise
    assert ha.drain_status(11.0)["preference"] == 1
    assert ha.home_agent_addresses(11.0) == [HA3, HA2, HA]
    assert ha.drain_status(1801.0)["home_agents_list"] == []  # expired entries are not shown


def test_configured_home_agents_win_over_the_home_agents_list() -> None:
    ha = registered(1, switch_home_agents=(HA2, HA))
    other_home_agent(ha, "fe80::3", HA3, 10)
    (send,) = switches(ha.handle(HomeAgentDrainRequested(1.0), 1.0))
    assert send.message == HomeAgentSwitch((HA2,))  # never this home agent itself


def test_no_other_home_agent_known_sends_an_empty_list() -> None:
    """RFC 5142 §5.1: no address = the MN finds a home agent itself (DHAAD)."""
    ha = registered(1)
    (send,) = switches(ha.handle(HomeAgentDrainRequested(1.0), 1.0))
    assert send.message == HomeAgentSwitch(())


def test_switch_is_retransmitted_then_given_up() -> None:
    """§5.2: sent again after 2, 4 and 8 s while the MN stays registered, then counted."""
    ha = registered(1)
    assert len(switches(ha.handle(HomeAgentDrainRequested(10.0), 0.0))) == 1
    times = []
    now = 0.0
    for _ in range(4):
        deadline = ha.next_deadline()
        assert deadline is not None
        now = deadline
        sent = switches(ha.handle_timer(now))
        if sent:
            times.append(now)
    assert times == [2.0, 6.0, 14.0]
    assert ha.drain_counters["switch_retransmitted"] == 3
    assert ha.drain_counters["switch_unanswered"] == 1
    assert ha.drain_status(now)["awaiting"] == 0


def test_de_registration_ends_the_retransmissions() -> None:
    ha = registered(2)
    ha.handle(HomeAgentDrainRequested(10.0), 0.0)
    ha.handle_timer(0.1)
    ha.handle(bu(0, seq=2, lifetime_units=0), 0.5)
    assert ha.drain_counters["switch_followed"] == 1
    sent = switches(ha.handle_timer(2.1))
    assert [s.routing_address for s in sent] == [mn(1)[0]]


def test_binding_error_2_stops_the_switches_to_that_mn() -> None:
    """§5.3: the MN does not know the message; no more switches to it, and no BE back."""
    ha = registered(1)
    ha.handle(HomeAgentDrainRequested(1.0), 0.0)
    error = MobilityMessageReceived(BindingError(2, IPv6Address("::")), COA, HA)
    assert ha.handle(error, 0.5) == []
    assert ha.drain_counters["switch_unsupported"] == 1
    assert ha.next_deadline() is not None  # the binding itself still expires
    assert switches(ha.handle_timer(30.0)) == []


def test_registration_during_the_drain_gets_a_switch() -> None:
    ha = make_ha()
    ha.handle(HomeAgentDrainRequested(1.0, (HA2,)), 0.0)
    actions = ha.handle(bu(4), 1.0)
    assert switches(actions) == []  # the BA first; the switch comes from the timer
    (send,) = switches(ha.handle_timer(1.0))
    assert send.routing_address == mn(4)[0]


def test_stop_ends_the_drain_and_keeps_the_counters() -> None:
    ha = registered(2)
    ha.handle(HomeAgentDrainRequested(1.0), 0.0)
    ha.handle(HomeAgentDrainRequested(1.0, stop=True), 0.2)
    assert not ha.draining
    assert switches(ha.handle_timer(5.0)) == []
    assert ha.drain_status(5.0) == {
        "draining": False,
        **ha.drain_counters,
        "home_agents": [],
        "preference": 0,
        "home_agents_list": [],
    }
    assert ha.drain_counters["switch_sent"] == 1


def test_rate_must_be_positive() -> None:
    ha = registered(1)
    (discarded,) = ha.handle(HomeAgentDrainRequested(0.0), 0.0)
    assert isinstance(discarded, MessageDiscarded) and not ha.draining


def test_dhaad_reply_leaves_a_draining_home_agent_out() -> None:
    ha = make_ha()
    request = DhaadRequestReceived(7, COA, ANYCAST)
    ha.handle(HomeAgentDrainRequested(1.0), 0.0)
    (alone,) = ha.handle(request, 0.0)
    assert isinstance(alone, SendDhaadReply) and alone.home_agents == (HA,)
    other_home_agent(ha, "fe80::2", HA2, 0)
    (reply,) = ha.handle(request, 0.0)
    assert isinstance(reply, SendDhaadReply) and reply.home_agents == (HA2,)


def test_home_agent_answers_a_switch_with_binding_error_2() -> None:
    """RFC 5142 §6: only mobile nodes act on the message."""
    ha = make_ha()
    (error,) = ha.handle(MobilityMessageReceived(HomeAgentSwitch((HA2,)), HA2, HA), 0.0)
    assert isinstance(error, SendMobilityMessage)
    assert error.message == BindingError(2, IPv6Address("::")) and error.dst == HA2

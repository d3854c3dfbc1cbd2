"""Mobile node core, RFC 5142 §6: following a Home Agent Switch from its home agent."""

from __future__ import annotations

from ipaddress import IPv6Address

from nfq_mip6.mobility.events import (
    Action,
    BindingDeleted,
    BindingRegistered,
    HomeAgentDiscovered,
    HomeAgentSwitchFollowed,
    InstallReverseTunnel,
    MessageDiscarded,
    MobilityMessageReceived,
    MovedToForeignLink,
    SendDhaadRequest,
)
from nfq_mip6.mobility.mobile_node import MobileNode
from nfq_mip6.wire.mh import BindingUpdate, HomeAgentSwitch
from nfq_mip6.wire.options import AlternateCareofAddress
from tests.support.vectors import COA, COA2, HA, HA2, HOA
from tests.unit.mobility.test_mobile_node import ba_event, bound, make_mn, sent_bus, the_bu

HA3 = IPv6Address("2001:db8:a::3")


def switch(
    *home_agents: IPv6Address, src: IPv6Address = HA, protected: bool = True
) -> MobilityMessageReceived:
    return MobilityMessageReceived(
        HomeAgentSwitch(home_agents), src, COA, routing_address=HOA, ipsec_protected=protected
    )


def discarded(actions: list[Action]) -> str:
    (action,) = actions
    assert isinstance(action, MessageDiscarded)
    return action.reason


def bound_mn() -> MobileNode:
    mn = make_mn()
    bound(mn)
    return mn


def test_switch_deregisters_from_the_old_home_agent_first() -> None:
    """§6.1: lifetime 0 from the CoA with an HAO to the sender; the new HA's BU waits for its
    BA (the old HA's proxy ND would defend the HoA against the new HA's proxy DAD)."""
    mn = bound_mn()
    actions = mn.handle(switch(HA2, HA3), 2.0)
    assert HomeAgentSwitchFollowed(HA, HA2) in actions
    send, bu = the_bu(actions)
    assert (send.src, send.dst, send.home_address) == (COA, HA, HOA)
    assert bu.lifetime == 0 and bu.options == (AlternateCareofAddress(COA),)
    assert mn.switch_counters["switch_followed"] == 1


def test_switch_registers_with_the_new_home_agent_after_the_old_one_answers() -> None:
    mn = bound_mn()
    _, dereg = the_bu(mn.handle(switch(HA2), 2.0))
    actions = mn.handle(ba_event(0, dereg.sequence, 0), 2.1)
    assert BindingDeleted(HOA, HA, True) in actions
    send, bu = the_bu(actions)
    assert (send.src, send.dst, send.home_address) == (COA, HA2, HOA)
    assert bu.lifetime > 0
    assert mn.home_agent == HA2
    done = mn.handle(ba_event(0, bu.sequence, bu.lifetime, src=HA2), 3.0)
    assert InstallReverseTunnel(HOA, COA, HA2) in done
    assert any(isinstance(a, BindingRegistered) and a.peer == HA2 for a in done)
    assert mn.switch_counters["switch_completed"] == 1
    assert [row.destination for row in mn.binding_update_list_rows(3.0)] == [HA2]


def test_refused_registration_tries_the_next_listed_home_agent_then_the_old_one() -> None:
    mn = bound_mn()
    _, dereg = the_bu(mn.handle(switch(HA2, HA3), 2.0))
    _, to_ha2 = the_bu(mn.handle(ba_event(0, dereg.sequence, 0), 2.1))
    send, to_ha3 = the_bu(mn.handle(ba_event(129, to_ha2.sequence, 0, src=HA2), 2.2))
    assert send.dst == HA3
    send, _ = the_bu(mn.handle(ba_event(129, to_ha3.sequence, 0, src=HA3), 2.3))
    assert send.dst == HA and mn.home_agent == HA


def test_empty_list_runs_dhaad_without_the_sender() -> None:
    """RFC 5142 §6.2: no address listed: DHAAD; the sender is not chosen from its reply."""
    mn = bound_mn()
    actions = mn.handle(switch(), 2.0)
    assert HomeAgentSwitchFollowed(HA, None) in actions
    (request,) = [a for a in actions if isinstance(a, SendDhaadRequest)]
    assert sent_bus(actions) == []  # still registered with the old home agent meanwhile
    reply = HomeAgentDiscovered(request.identifier, HA, (HA, HA2))
    send, bu = the_bu(mn.handle(reply, 2.5))
    assert send.dst == HA and bu.lifetime == 0
    send, _ = the_bu(mn.handle(ba_event(0, bu.sequence, 0), 2.6))
    assert send.dst == HA2


def test_dhaad_listing_only_the_sender_keeps_the_old_home_agent() -> None:
    mn = bound_mn()
    (request,) = [a for a in mn.handle(switch(), 2.0) if isinstance(a, SendDhaadRequest)]
    assert discarded(mn.handle(HomeAgentDiscovered(request.identifier, HA, (HA,)), 2.5))
    assert mn.home_agent == HA and mn.home_entry is not None


def test_switch_from_another_node_is_discarded() -> None:
    mn = bound_mn()
    assert discarded(mn.handle(switch(HA2, src=HA2), 2.0)) == (
        "home-agent-switch-not-from-home-agent"
    )
    assert mn.switch_counters["switch_received"] == 1
    assert mn.switch_counters["switch_followed"] == 0


def test_unprotected_switch_is_discarded() -> None:
    mn = bound_mn()
    assert discarded(mn.handle(switch(HA2, protected=False), 2.0)) == (
        "home-agent-switch-not-protected"
    )


def test_switch_without_a_binding_is_discarded() -> None:
    assert discarded(make_mn().handle(switch(HA2), 0.0)) == "home-agent-switch-without-binding"


def test_retransmitted_switch_is_ignored_while_following_one() -> None:
    mn = bound_mn()
    mn.handle(switch(HA2), 2.0)
    assert discarded(mn.handle(switch(HA2), 2.5)) == "home-agent-switch-in-progress"


def test_move_during_the_switch_ends_it() -> None:
    mn = bound_mn()
    the_bu(mn.handle(switch(HA2), 2.0))
    actions = mn.handle(MovedToForeignLink(COA2, None), 2.2)
    bus = [s.message for s in sent_bus(actions)]
    assert bus and all(isinstance(b, BindingUpdate) and b.lifetime > 0 for b in bus)
    assert mn.home_agent == HA


def test_old_home_agent_that_never_answers_is_left_after_three_bus() -> None:
    mn = bound_mn()
    first = sent_bus(mn.handle(switch(HA2), 2.0))
    times = [2.0]
    now = 2.0
    while True:
        deadline = mn.next_deadline()
        assert deadline is not None
        now = deadline
        sends = sent_bus(mn.handle_timer(now))
        assert sends, now
        if sends[0].dst == HA2:
            break
        assert sends[0].dst == HA and isinstance(sends[0].message, BindingUpdate)
        assert sends[0].message.lifetime == 0
        times.append(now)
    assert first and times == [2.0, 3.0, 5.0] and now == 9.0
    assert mn.home_agent == HA2

"""Mobile node core: a restart after an RFC 5142 Home Agent Switch registers with the home agent
it was switched to, not the configured one, and falls back to the configured one (DHAAD
without one) when that one refuses or does not answer (docs/cluster.md, "Draining a home
agent")."""

from __future__ import annotations

from nfq_mip6.mobility.binding_update_list import BindingUpdateListRecord, BulState
from nfq_mip6.mobility.events import (
    BindingDeleted,
    BindingRejected,
    InstallReverseTunnel,
    MovedToForeignLink,
    SendDhaadRequest,
)
from nfq_mip6.mobility.mobile_node import MobileNode
from nfq_mip6.wire import BAStatus
from tests.support.vectors import COA, HA, HA2, HOA
from tests.unit.mobility.test_mobile_node import ba_event, make_mn, sent_bus, the_bu
from tests.unit.mobility.test_mobile_node_switch import switch


def record(remaining: float, sequence: int = 41) -> BindingUpdateListRecord:
    """HA2's home registration as the previous run saved it."""
    state = BulState.BOUND.value if remaining > 0 else "none"
    return BindingUpdateListRecord(HA2, HOA, COA, sequence, True, state, 100, remaining)


def restarted(remaining: float, home_agent: object = HA) -> MobileNode:
    mn = make_mn(home_agent=home_agent)
    mn.restore_home_agent(HA2)
    mn.restore_binding_update_list([record(remaining)], 0.0)
    return mn


def test_registration_goes_to_the_home_agent_of_the_previous_run() -> None:
    mn = restarted(remaining=0.0)
    send, bu = the_bu(mn.handle(MovedToForeignLink(COA, None), 0.0))
    assert send.dst == HA2 and bu.sequence == 42  # its sequence number continues
    assert mn.registered_home_agent is None  # not before its BA
    actions = mn.handle(ba_event(0, bu.sequence, bu.lifetime, src=HA2), 0.5)
    assert InstallReverseTunnel(HOA, COA, HA2) in actions
    assert mn.registered_home_agent == HA2 and mn.home_agent == HA2


def test_a_binding_still_in_force_with_it_is_bound_again() -> None:
    mn = restarted(remaining=60.0)
    entry = mn.home_entry
    assert entry is not None and entry.destination == HA2 and entry.state is BulState.BOUND
    assert mn.registered_home_agent == HA2
    # the first movement decision (same CoA) refreshes it there
    send, bu = the_bu(mn.handle(MovedToForeignLink(COA, None), 0.0))
    assert send.dst == HA2 and bu.sequence == 42


def test_no_answer_falls_back_to_the_configured_home_agent() -> None:
    """BUs to HA2 at 0, 1.5 and 4.5 s (a first registration); at 10.5 s, still no answer:
    the configured HA gets the registration, HA2's entry goes."""
    mn = restarted(remaining=0.0)
    send, _ = the_bu(mn.handle(MovedToForeignLink(COA, None), 0.0))
    assert send.dst == HA2
    destinations = []
    now = 0.0
    while now < 30.0 and HA not in destinations:
        now += 0.5
        actions = mn.handle_timer(now)
        destinations += [s.dst for s in sent_bus(actions)]
    assert destinations[:-1] == [HA2, HA2] and destinations[-1] == HA
    assert BindingDeleted(HOA, HA2, True) in actions
    assert mn.home_agent == HA and HA2 not in mn.bul
    (send, bu) = the_bu(actions)
    mn.handle(ba_event(0, bu.sequence, bu.lifetime), now + 0.1)
    assert mn.registered_home_agent == HA


def test_a_refusal_falls_back_to_the_configured_home_agent() -> None:
    mn = restarted(remaining=0.0)
    _send, bu = the_bu(mn.handle(MovedToForeignLink(COA, None), 0.0))
    actions = mn.handle(ba_event(BAStatus.NOT_HOME_AGENT_FOR_THIS_MOBILE_NODE, bu.sequence, 0,
                                 src=HA2), 0.5)  # fmt: skip
    assert BindingRejected(HOA, HA2, True, BAStatus.NOT_HOME_AGENT_FOR_THIS_MOBILE_NODE) in actions
    send, _ = the_bu(actions)
    assert send.dst == HA and mn.home_agent == HA


def test_a_135_is_an_answer_it_stays() -> None:
    mn = restarted(remaining=0.0)
    the_bu(mn.handle(MovedToForeignLink(COA, None), 0.0))
    actions = mn.handle(ba_event(BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, 500, 0, src=HA2), 0.5)
    send, again = the_bu(actions)
    assert send.dst == HA2 and again.sequence == 501
    now = 0.5
    for _ in range(20):  # no fallback any more, however long it waits
        now += 5.0
        assert all(s.dst == HA2 for s in sent_bus(mn.handle_timer(now)))


def test_without_a_configured_home_agent_the_fallback_is_dhaad() -> None:
    mn = restarted(remaining=0.0, home_agent=None)
    assert mn.home_agent == HA2
    _send, bu = the_bu(mn.handle(MovedToForeignLink(COA, None), 0.0))
    actions = mn.handle(ba_event(BAStatus.ADMINISTRATIVELY_PROHIBITED, bu.sequence, 0, src=HA2),
                        0.5)  # fmt: skip
    assert any(isinstance(a, SendDhaadRequest) for a in actions)
    assert mn.home_agent is None


def test_registered_home_agent_follows_a_switch() -> None:
    """What the runtime persists: after a switch, the new home agent once it accepted."""
    mn = make_mn()
    bu = the_bu(mn.handle(MovedToForeignLink(COA, None), 0.0))[1]
    mn.handle(ba_event(0, bu.sequence, bu.lifetime), 1.0)
    assert mn.registered_home_agent == HA
    _, dereg = the_bu(mn.handle(switch(HA2), 2.0))
    assert mn.registered_home_agent is None  # de-registering from HA
    _, to_ha2 = the_bu(mn.handle(ba_event(0, dereg.sequence, 0), 2.1))
    assert mn.registered_home_agent is None  # not yet accepted by HA2
    mn.handle(ba_event(0, to_ha2.sequence, to_ha2.lifetime, src=HA2), 2.2)
    assert mn.registered_home_agent == HA2


def test_restoring_the_configured_home_agent_changes_nothing() -> None:
    mn = make_mn()
    mn.restore_home_agent(HA)
    _send, bu = the_bu(mn.handle(MovedToForeignLink(COA, None), 0.0))
    actions = mn.handle(ba_event(BAStatus.ADMINISTRATIVELY_PROHIBITED, bu.sequence, 0), 0.5)
    assert sent_bus(actions) == []  # no fallback: the configured HA refused

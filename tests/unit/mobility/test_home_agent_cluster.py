"""Home Agent core in a cluster: the store's state of a home address replaces the core's
(:class:`HomeBindingLoaded`, docs/cluster.md), so a conflicting or timed-out commit can be
decided again on what the store holds."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

from nfq_mip6.mobility.binding import BindingState
from nfq_mip6.mobility.events import (
    BindingRegistered,
    HomeBindingLoaded,
    InstallHomeTunnel,
    InstallRouteOptimization,
    RemoveHomeTunnel,
    RemoveRouteOptimization,
    SendMobilityMessage,
    StartProxyNeighbor,
    StopProxyNeighbor,
    StoredHomeBinding,
)
from nfq_mip6.mobility.home_agent import HomeAgent, HomeAgentConfig
from nfq_mip6.wire.mh import BAStatus, BindingAck
from tests.support.vectors import COA, COA2, HA, HOA, PREFIX
from tests.unit.mobility.test_home_agent import home_bu, only_ba


def make_ha() -> HomeAgent:
    return HomeAgent(HomeAgentConfig(address=HA, home_prefixes=(PREFIX,), proxy_dad=False))


def stored(seq: int, coa: IPv6Address = COA2, expires_at: float = 500.0) -> StoredHomeBinding:
    return StoredHomeBinding(coa, seq, 0xC000, 400, expires_at)


def test_loaded_binding_enters_the_cache_with_its_kernel_actions() -> None:
    ha = make_ha()
    actions = ha.handle(HomeBindingLoaded(HOA, stored(7)), 100.0)
    entry = ha.cache.get(HOA)
    assert entry is not None and entry.state is BindingState.REGISTERED
    assert (entry.care_of_address, entry.sequence, entry.expires_at) == (COA2, 7, 500.0)
    assert entry.home_registration
    assert actions == [
        InstallHomeTunnel(HOA, COA2),
        InstallRouteOptimization(HOA, COA2),
        StartProxyNeighbor(HOA, None),
    ]
    # no BA and no binding event: nothing to commit again, nobody to answer
    assert not any(isinstance(a, SendMobilityMessage | BindingRegistered) for a in actions)


def test_redecided_bu_sees_the_fresh_sequence_number() -> None:
    """A BU decided on stale state (seq 5 accepted locally) conflicts; the store holds seq 9
    written by another instance: the same BU is now answered 135 with 9 (RFC 6275 §9.5.1)."""
    ha = make_ha()
    ha.handle(home_bu(seq=3), 0.0)
    bu = home_bu(seq=5)
    assert only_ba(ha.handle(bu, 1.0)).message.status == BAStatus.ACCEPTED
    ha.handle(HomeBindingLoaded(HOA, stored(9)), 1.1)
    ba = only_ba(ha.handle(bu, 1.2)).message
    assert isinstance(ba, BindingAck)
    assert (ba.status, ba.sequence) == (BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, 9)
    # and the next one (10) is accepted on that state
    assert only_ba(ha.handle(home_bu(seq=10), 1.3)).message.status == BAStatus.ACCEPTED


def test_undo_of_a_first_registration_removes_it() -> None:
    """A first registration whose commit timed out: the last committed state is "none"."""
    ha = make_ha()
    ha.handle(home_bu(seq=1), 0.0)
    assert HOA in ha.cache
    actions = ha.handle(HomeBindingLoaded(HOA, None), 1.0)
    assert HOA not in ha.cache
    assert actions == [
        RemoveHomeTunnel(HOA),
        StopProxyNeighbor(HOA, None),
        RemoveRouteOptimization(HOA),
    ]
    # the retransmitted BU (the MN sends sequence + 1) is a first registration again
    assert only_ba(ha.handle(home_bu(seq=2), 2.0)).message.status == BAStatus.ACCEPTED


def test_absent_everywhere_still_clears_the_fast_path() -> None:
    """A de-registration decided here, not committed, and gone from the store too: the
    kernel may still hold the tunnel; removal is asked for (the runtime tolerates absence)."""
    ha = make_ha()
    actions = ha.handle(HomeBindingLoaded(HOA, None), 0.0)
    assert [type(a) for a in actions] == [
        RemoveHomeTunnel,
        StopProxyNeighbor,
        RemoveRouteOptimization,
    ]


def test_loaded_state_replaces_prefixes_and_link_local() -> None:
    ha = make_ha()
    old_ll = IPv6Address("fe80::1")
    p1, p2 = IPv6Network("2001:db8:77::/48"), IPv6Network("2001:db8:78::/48")
    ha.handle(
        HomeBindingLoaded(HOA, StoredHomeBinding(COA, 1, 0, 400, 400.0, old_ll, (p1, p2))), 0.0
    )
    actions = ha.handle(
        HomeBindingLoaded(HOA, StoredHomeBinding(COA2, 2, 0, 400, 400.0, None, (p2,))), 1.0
    )
    assert actions[0] == StopProxyNeighbor(HOA, old_ll)
    assert actions[1] == InstallHomeTunnel(HOA, COA2, (p2,), (p1,))
    entry = ha.cache.get(HOA)
    assert entry is not None and entry.prefixes == (p2,) and entry.link_local is None


def test_loaded_binding_expires_on_the_timer() -> None:
    """The active instance expires what the store holds, from the stored expiry."""
    ha = make_ha()
    ha.handle(HomeBindingLoaded(HOA, stored(1, expires_at=50.0)), 0.0)
    assert ha.next_deadline() == 50.0
    actions = ha.handle_timer(50.0)
    assert HOA not in ha.cache
    assert any(isinstance(a, RemoveHomeTunnel) for a in actions)


def test_loaded_state_cancels_a_pending_proxy_dad() -> None:
    ha = HomeAgent(HomeAgentConfig(address=HA, home_prefixes=(PREFIX,), proxy_dad=True))
    ha.handle(home_bu(seq=1), 0.0)
    entry = ha.cache.get(HOA)
    assert entry is not None and entry.state is BindingState.DAD_PENDING
    ha.handle(HomeBindingLoaded(HOA, stored(4, coa=COA)), 0.5)
    entry = ha.cache.get(HOA)
    assert entry is not None and entry.state is BindingState.REGISTERED and entry.sequence == 4

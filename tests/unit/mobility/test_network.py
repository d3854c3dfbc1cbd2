"""Scenarios on the in-memory network (:class:`tests.support.network.Network`): MobileNode,
HomeAgent and CorrespondentNode cores exchanging messages under a fake clock.
"""

from __future__ import annotations

import itertools

import pytest

from nfq_mip6.mobility.binding import BindingState
from nfq_mip6.mobility.events import (
    BindingExpired,
    DataPacketFromCorrespondent,
    HomeAddressAtHome,
    HomeAddressAway,
    InstallHomeTunnel,
    InstallReverseTunnel,
    InstallRouteOptimization,
    MovedToForeignLink,
    RemoveHomeTunnel,
    RemoveReverseTunnel,
    RemoveRouteOptimization,
    ReturnedToHomeLink,
    RouteOptimizationSwitched,
    SendMobilityMessage,
    SendNeighborAdvertisement,
    StopProxyNeighbor,
)
from nfq_mip6.mobility.mobile_node import BulState, MobileNodeConfig
from nfq_mip6.wire.mh import BindingAck, BindingUpdate, CareofTestInit, HomeTestInit
from tests.support.factories import counter_bytes
from tests.support.network import Network
from tests.support.vectors import CN, COA, COA2, HA, HOA, PREFIX


def registered_network(**kwargs: object) -> Network:
    net = Network.build(**kwargs)  # type: ignore[arg-type]
    net.inject("mn", MovedToForeignLink(COA, None))
    net.run_until(5.0)
    return net


def with_route_optimization(net: Network) -> Network:
    net.inject("mn", DataPacketFromCorrespondent(CN))
    net.run_until(net.now + 5.0)
    return net


def test_network_first_registration_waits_for_dad() -> None:
    net = registered_network()
    bus = net.sent("mn", BindingUpdate)
    assert len(bus) == 1  # the BA came after DAD (1 s) within InitialBindackTimeoutFirstReg
    bas = net.sent("ha", BindingAck)
    assert len(bas) == 1 and bas[0].time >= 1.0
    assert bas[0].send.dst == COA and bas[0].send.routing_address == HOA
    entry = net.ha.cache.get(HOA)
    assert entry is not None and entry.care_of_address == COA
    assert entry.state is BindingState.REGISTERED
    assert [a for _, a in net.actions_of("ha", InstallHomeTunnel)] == [InstallHomeTunnel(HOA, COA)]
    assert [a for _, a in net.actions_of("mn", HomeAddressAway)] == [HomeAddressAway(HOA)]
    assert [a for _, a in net.actions_of("mn", InstallReverseTunnel)] == [
        InstallReverseTunnel(HOA, COA, HA)
    ]
    home = net.mn.home_entry
    assert home is not None and home.state is BulState.BOUND


def test_network_return_routability_and_cn_binding() -> None:
    net = with_route_optimization(registered_network())
    hotis = net.sent("mn", HomeTestInit)
    cotis = net.sent("mn", CareofTestInit)
    assert len(hotis) == 1 and hotis[0].send.via_tunnel and hotis[0].send.src == HOA
    assert len(cotis) == 1 and not cotis[0].send.via_tunnel and cotis[0].send.src == COA
    cn_entry = net.cn.cache.get(HOA)
    assert cn_entry is not None and cn_entry.care_of_address == COA
    assert [a for _, a in net.actions_of("cn", InstallRouteOptimization)] == [
        InstallRouteOptimization(HOA, COA)
    ]
    # the HA first (its binding, §11.3.1), then the CN
    assert [a for _, a in net.actions_of("mn", InstallRouteOptimization)] == [
        InstallRouteOptimization(HOA, COA, HA),
        InstallRouteOptimization(HOA, COA, CN),
    ]
    assert net.mn.bul[CN].state is BulState.BOUND
    assert net.cn.stats.NBindUpdatesRcvd == 1 and net.mn.stats.NBindAcksRcvd == 2


def test_network_travel_to_second_coa_updates_ha_and_cn() -> None:
    net = with_route_optimization(registered_network())
    net.inject("mn", MovedToForeignLink(COA2, None))
    net.run_until(net.now + 10.0)
    ha_entry = net.ha.cache.get(HOA)
    cn_entry = net.cn.cache.get(HOA)
    assert ha_entry is not None and ha_entry.care_of_address == COA2
    assert cn_entry is not None and cn_entry.care_of_address == COA2
    assert InstallHomeTunnel(HOA, COA2) in [a for _, a in net.actions_of("ha", InstallHomeTunnel)]
    assert (net.now - 10.0, RemoveRouteOptimization(HOA, CN)) in [
        (t, a) for t, a in net.actions_of("mn", RemoveRouteOptimization)
    ]
    assert InstallRouteOptimization(HOA, COA2, CN) in [
        a for _, a in net.actions_of("mn", InstallRouteOptimization)
    ]
    # A second registration is not a first one: only one BU needed, no DAD.
    assert len(net.sent("mn", BindingUpdate)) == 4  # home, CN, home (COA2), CN (COA2)


def test_network_home_binding_expires_at_ha_without_refresh() -> None:
    config = MobileNodeConfig(
        home_address=HOA,
        home_prefix=PREFIX,
        home_agent=HA,
        home_registration_lifetime=40,
    )
    net = registered_network(mn_config=config)
    net.drop = lambda send, now: isinstance(send.message, BindingUpdate)
    net.run_until(60.0)
    expired = net.actions_of("ha", BindingExpired)
    assert len(expired) == 1 and expired[0][0] == pytest.approx(41.01)
    assert RemoveHomeTunnel(HOA) in [a for _, a in net.actions_of("ha", RemoveHomeTunnel)]
    assert StopProxyNeighbor(HOA, None) in [a for _, a in net.actions_of("ha", StopProxyNeighbor)]
    assert HOA not in net.ha.cache
    # The MN refreshed at 80 % of the lifetime (32 s after sending) and kept retrying.
    assert net.mn.stats.NBindUpdatesSent >= 4


def test_network_retransmission_back_off_first_registration() -> None:
    net = Network.build()
    net.drop = lambda send, now: isinstance(send.message, BindingUpdate)
    sent: list[tuple[float, int]] = []
    original = net._route

    def spy(sender: str, send: SendMobilityMessage) -> None:
        if sender == "mn" and isinstance(send.message, BindingUpdate):
            sent.append((net.now, send.message.sequence))
        original(sender, send)

    net._route = spy  # type: ignore[method-assign]
    net.inject("mn", MovedToForeignLink(COA, None))
    net.run_until(150.0)
    times = [t for t, _ in sent]
    # 1.5 s first, doubling, capped at MAX_BINDACK_TIMEOUT = 32 s and continuing at 32 s.
    assert times == pytest.approx([0, 1.5, 4.5, 10.5, 22.5, 46.5, 78.5, 110.5, 142.5])
    sequences = [s for _, s in sent]
    assert all(b == (a + 1) % 65536 for a, b in itertools.pairwise(sequences))


def test_network_sequence_wraps_at_65535() -> None:
    calls = iter([b"\xff\xfe"])
    fallback = counter_bytes(1)

    def random_bytes(n: int) -> bytes:
        return next(calls, None) or fallback(n)

    net = Network.build()
    net.mn._random_bytes = random_bytes
    net.inject("mn", MovedToForeignLink(COA, None))
    net.run_until(5.0)
    entry = net.ha.cache.get(HOA)
    assert entry is not None and entry.sequence == 65535
    net.inject("mn", MovedToForeignLink(COA2, None))
    net.run_until(10.0)
    entry = net.ha.cache.get(HOA)
    assert entry is not None and entry.sequence == 0 and entry.care_of_address == COA2


def test_network_returning_home_deregisters_everywhere() -> None:
    net = with_route_optimization(registered_network())
    net.inject("mn", ReturnedToHomeLink())
    net.run_until(net.now + 5.0)
    assert HOA not in net.ha.cache
    dereg = [d for d in net.sent("mn", BindingUpdate) if d.receiver == "ha"][-1].send
    assert dereg.src == HOA and dereg.home_address is None
    assert isinstance(dereg.message, BindingUpdate) and dereg.message.lifetime == 0
    ba = net.sent("ha", BindingAck)[-1].send
    assert ba.dst == HOA and ba.routing_address is None
    mn_actions = [a for _, n, a in net.actions if n == "mn"]
    tail = [
        a
        for a in mn_actions
        if isinstance(a, RemoveReverseTunnel | HomeAddressAtHome | SendNeighborAdvertisement)
        and a.home_address == HOA
    ]
    assert tail == [
        RemoveReverseTunnel(HOA),
        HomeAddressAtHome(HOA),
        SendNeighborAdvertisement(HOA),
    ]
    cn_entry = net.cn.cache.get(HOA)
    assert cn_entry is None or cn_entry.state is BindingState.REPLAY_GUARD
    assert RemoveRouteOptimization(HOA) in [
        a for _, a in net.actions_of("cn", RemoveRouteOptimization)
    ]
    assert net.mn.bul == {}


def test_network_route_optimization_switched_off_mid_flow() -> None:
    net = with_route_optimization(registered_network())
    net.inject("mn", RouteOptimizationSwitched(False))
    net.inject("cn", RouteOptimizationSwitched(False))
    assert RemoveRouteOptimization(HOA, CN) in [
        a for _, a in net.actions_of("mn", RemoveRouteOptimization)
    ]
    assert RemoveRouteOptimization(HOA) in [
        a for _, a in net.actions_of("cn", RemoveRouteOptimization)
    ]
    assert not net.cn.has_binding(HOA)
    before = len(net.log)
    net.inject("mn", DataPacketFromCorrespondent(CN))
    net.run_until(net.now + 5.0)
    assert CN not in net.mn.bul
    assert all(not isinstance(d.send.message, HomeTestInit) for d in net.log[before:])
    # The home registration is untouched: traffic goes through the tunnel.
    assert net.ha.cache.get(HOA) is not None


def test_network_refreshes_keep_bindings_alive_for_an_hour() -> None:
    config = MobileNodeConfig(
        home_address=HOA,
        home_prefix=PREFIX,
        home_agent=HA,
        home_registration_lifetime=100,
    )
    net = with_route_optimization(registered_network(mn_config=config))
    net.run_until(3600.0)
    assert net.actions_of("ha", BindingExpired) == []
    assert net.actions_of("cn", BindingExpired) == []
    assert net.ha.cache.get(HOA) is not None
    assert net.cn.has_binding(HOA)


def test_network_route_optimization_off_while_away_deletes_the_cn_binding() -> None:
    """``ro off`` at the MN sends one de-registration BU (lifetime 0) to each bound CN, so the
    CN's traffic goes back through the HA as well."""
    net = with_route_optimization(registered_network())
    assert net.cn.has_binding(HOA)
    net.inject("mn", RouteOptimizationSwitched(False))
    net.run_until(net.now + 5.0)
    assert not net.cn.has_binding(HOA)
    assert net.mn.home_entry is not None  # the home registration stays

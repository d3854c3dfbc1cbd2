"""An in-memory network wiring MobileNode, HomeAgent and CorrespondentNode cores with a fake
clock (aioquic/h11 style): actions of one core become input events of another.

Only what the cores need is modelled: the HA tunnel (HoA traffic reaches the MN's primary
CoA through the HA), a CoA per visited link, packet loss by predicate, and proxy DAD taking
one second.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network

import pytest

from nfq_mip6.mobility.correspondent import CorrespondentConfig, CorrespondentNode
from nfq_mip6.mobility.events import (
    Action,
    InputEvent,
    MobilityMessageReceived,
    ProxyDadCompleted,
    SendMobilityMessage,
    StartProxyDad,
)
from nfq_mip6.mobility.home_agent import HomeAgent, HomeAgentConfig
from nfq_mip6.mobility.mobile_node import MobileNode, MobileNodeConfig
from nfq_mip6.mobility.rr import encode_bu_or_ba
from nfq_mip6.wire.mh import BindingAck, BindingUpdate

HA_ADDRESS = IPv6Address("2001:db8:a::1")
HOME_ADDRESS = IPv6Address("2001:db8:a::100")
HOME_PREFIX = IPv6Network("2001:db8:a::/64")
CN_ADDRESS = IPv6Address("2001:db8:c::1")
COA1 = IPv6Address("2001:db8:f::1")
COA2 = IPv6Address("2001:db8:e::1")


def counter_bytes(start: int = 1) -> Callable[[int], bytes]:
    """Deterministic ``random_bytes``: 1, 2, 3 … repeated to the requested length."""
    counter = itertools.count(start)

    def random_bytes(n: int) -> bytes:
        return bytes([next(counter) & 0xFF]) * n

    return random_bytes


@dataclass
class Delivery:
    time: float
    sender: str
    receiver: str
    send: SendMobilityMessage


@dataclass
class Network:
    mn: MobileNode
    ha: HomeAgent
    cn: CorrespondentNode
    now: float = 0.0
    latency: float = 0.01
    drop: Callable[[SendMobilityMessage, float], bool] = lambda send, now: False
    dad_duplicate: bool = False
    log: list[Delivery] = field(default_factory=list)
    actions: list[tuple[float, str, Action]] = field(default_factory=list)
    _queue: list[tuple[float, int, str, InputEvent]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    @classmethod
    def build(
        cls,
        *,
        mn_config: MobileNodeConfig | None = None,
        ha_config: HomeAgentConfig | None = None,
        cn_config: CorrespondentConfig | None = None,
        mn_seed: int = 1,
    ) -> Network:
        mn = MobileNode(
            mn_config
            or MobileNodeConfig(
                home_address=HOME_ADDRESS, home_prefix=HOME_PREFIX, home_agent=HA_ADDRESS
            ),
            random_bytes=counter_bytes(mn_seed),
        )
        ha = HomeAgent(ha_config or HomeAgentConfig(HA_ADDRESS, (HOME_PREFIX,)))
        cn = CorrespondentNode(
            cn_config or CorrespondentConfig(CN_ADDRESS), random_bytes=counter_bytes(100)
        )
        return cls(mn, ha, cn)

    def node(self, name: str) -> MobileNode | HomeAgent | CorrespondentNode:
        nodes: dict[str, MobileNode | HomeAgent | CorrespondentNode] = {
            "mn": self.mn,
            "ha": self.ha,
            "cn": self.cn,
        }
        return nodes[name]

    # ---------------------------------------------------------------------------------------

    def inject(self, name: str, event: InputEvent) -> None:
        """Hand an event to a node now and route the resulting actions."""
        self._apply(name, self.node(name).handle(event, self.now))

    def _schedule(self, when: float, name: str, event: InputEvent) -> None:
        heapq.heappush(self._queue, (when, next(self._seq), name, event))

    def _apply(self, name: str, actions: list[Action]) -> None:
        for action in actions:
            self.actions.append((self.now, name, action))
            if isinstance(action, SendMobilityMessage):
                self._route(name, action)
            elif isinstance(action, StartProxyDad) and name == "ha":
                self._schedule(
                    self.now + 1.0, "ha", ProxyDadCompleted(action.home_address, self.dad_duplicate)
                )

    def _mn_reachable_at(self, address: IPv6Address) -> bool:
        return self.mn.care_of_address == address

    def _route(self, sender: str, send: SendMobilityMessage) -> None:
        if self.drop(send, self.now):
            return
        message = send.message
        mh_bytes = (
            encode_bu_or_ba(message) if isinstance(message, BindingUpdate | BindingAck) else b""
        )
        when = self.now + self.latency
        via_tunnel = False
        dst = send.dst
        if dst == HA_ADDRESS:
            receiver = "ha"
            if send.via_tunnel:
                return  # the MN only tunnels HoTIs to CNs
        elif dst == CN_ADDRESS:
            receiver = "cn"
            if send.via_tunnel:
                # Reverse tunnel: the HA accepts it only from the registered primary CoA.
                entry = self.ha.cache.get(send.src)
                if entry is None or entry.care_of_address != self.mn.care_of_address:
                    return
                when += self.latency
        elif dst == HOME_ADDRESS and send.routing_address is None:
            receiver = "mn"
            entry = self.ha.cache.get(HOME_ADDRESS)
            if entry is not None and entry.state.value == "registered":
                if not self._mn_reachable_at(entry.care_of_address):
                    return
                via_tunnel = True
                when += self.latency
            elif self.mn.care_of_address != HOME_ADDRESS:
                return  # intercepted by nobody and the MN is not at home
        elif self._mn_reachable_at(dst):
            receiver = "mn"
        else:
            return
        event = MobilityMessageReceived(
            message,
            send.src,
            dst,
            home_address=send.home_address,
            routing_address=send.routing_address,
            via_tunnel=via_tunnel,
            mh_bytes=mh_bytes,
        )
        self.log.append(Delivery(when, sender, receiver, send))
        self._schedule(when, receiver, event)

    # ---------------------------------------------------------------------------------------

    def run_until(self, until: float) -> None:
        """Advance the fake clock, delivering packets and firing the cores' timers."""
        for _ in range(100_000):
            candidates: list[tuple[float, int, str]] = []
            if self._queue:
                candidates.append((self._queue[0][0], 0, "queue"))
            for name in ("mn", "ha", "cn"):
                deadline = self.node(name).next_deadline()
                if deadline is not None:
                    candidates.append((deadline, 1, name))
            if not candidates:
                break
            when, _, what = min(candidates)
            if when > until:
                break
            self.now = max(self.now, when)
            if what == "queue":
                _, _, name, event = heapq.heappop(self._queue)
                self._apply(name, self.node(name).handle(event, self.now))
            else:
                self._apply(what, self.node(what).handle_timer(self.now))
        else:
            raise AssertionError("the cores keep asking for timers without progress")
        self.now = max(self.now, until)

    def sent(self, sender: str, message_type: type) -> list[Delivery]:
        return [
            d for d in self.log if d.sender == sender and isinstance(d.send.message, message_type)
        ]

    def actions_of(self, name: str, action_type: type) -> list[tuple[float, Action]]:
        return [(t, a) for t, n, a in self.actions if n == name and isinstance(a, action_type)]


# -------------------------------------------------------------------------------------------
# Scenarios
# -------------------------------------------------------------------------------------------

from nfq_mip6.mobility.binding import BindingState  # noqa: E402
from nfq_mip6.mobility.events import (  # noqa: E402
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
    SendNeighborAdvertisement,
    StopProxyNeighbor,
)
from nfq_mip6.mobility.mobile_node import BulState  # noqa: E402
from nfq_mip6.wire.mh import CareofTestInit, HomeTestInit  # noqa: E402


def registered_network(**kwargs: object) -> Network:
    net = Network.build(**kwargs)  # type: ignore[arg-type]
    net.inject("mn", MovedToForeignLink(COA1, None))
    net.run_until(5.0)
    return net


def with_route_optimization(net: Network) -> Network:
    net.inject("mn", DataPacketFromCorrespondent(CN_ADDRESS))
    net.run_until(net.now + 5.0)
    return net


def test_network_first_registration_waits_for_dad() -> None:
    net = registered_network()
    bus = net.sent("mn", BindingUpdate)
    assert len(bus) == 1  # the BA came after DAD (1 s) within InitialBindackTimeoutFirstReg
    bas = net.sent("ha", BindingAck)
    assert len(bas) == 1 and bas[0].time >= 1.0
    assert bas[0].send.dst == COA1 and bas[0].send.routing_address == HOME_ADDRESS
    entry = net.ha.cache.get(HOME_ADDRESS)
    assert entry is not None and entry.care_of_address == COA1
    assert entry.state is BindingState.REGISTERED
    assert [a for _, a in net.actions_of("ha", InstallHomeTunnel)] == [
        InstallHomeTunnel(HOME_ADDRESS, COA1)
    ]
    assert [a for _, a in net.actions_of("mn", HomeAddressAway)] == [HomeAddressAway(HOME_ADDRESS)]
    assert [a for _, a in net.actions_of("mn", InstallReverseTunnel)] == [
        InstallReverseTunnel(HOME_ADDRESS, COA1, HA_ADDRESS)
    ]
    home = net.mn.home_entry
    assert home is not None and home.state is BulState.BOUND


def test_network_return_routability_and_cn_binding() -> None:
    net = with_route_optimization(registered_network())
    hotis = net.sent("mn", HomeTestInit)
    cotis = net.sent("mn", CareofTestInit)
    assert len(hotis) == 1 and hotis[0].send.via_tunnel and hotis[0].send.src == HOME_ADDRESS
    assert len(cotis) == 1 and not cotis[0].send.via_tunnel and cotis[0].send.src == COA1
    cn_entry = net.cn.cache.get(HOME_ADDRESS)
    assert cn_entry is not None and cn_entry.care_of_address == COA1
    assert [a for _, a in net.actions_of("cn", InstallRouteOptimization)] == [
        InstallRouteOptimization(HOME_ADDRESS, COA1)
    ]
    assert [a for _, a in net.actions_of("mn", InstallRouteOptimization)] == [
        InstallRouteOptimization(HOME_ADDRESS, COA1, CN_ADDRESS)
    ]
    assert net.mn.bul[CN_ADDRESS].state is BulState.BOUND
    assert net.cn.stats.NBindUpdatesRcvd == 1 and net.mn.stats.NBindAcksRcvd == 2


def test_network_travel_to_second_coa_updates_ha_and_cn() -> None:
    net = with_route_optimization(registered_network())
    net.inject("mn", MovedToForeignLink(COA2, None))
    net.run_until(net.now + 10.0)
    ha_entry = net.ha.cache.get(HOME_ADDRESS)
    cn_entry = net.cn.cache.get(HOME_ADDRESS)
    assert ha_entry is not None and ha_entry.care_of_address == COA2
    assert cn_entry is not None and cn_entry.care_of_address == COA2
    assert InstallHomeTunnel(HOME_ADDRESS, COA2) in [
        a for _, a in net.actions_of("ha", InstallHomeTunnel)
    ]
    assert (net.now - 10.0, RemoveRouteOptimization(HOME_ADDRESS, CN_ADDRESS)) in [
        (t, a) for t, a in net.actions_of("mn", RemoveRouteOptimization)
    ]
    assert InstallRouteOptimization(HOME_ADDRESS, COA2, CN_ADDRESS) in [
        a for _, a in net.actions_of("mn", InstallRouteOptimization)
    ]
    # A second registration is not a first one: only one BU needed, no DAD.
    assert len(net.sent("mn", BindingUpdate)) == 4  # home, CN, home (COA2), CN (COA2)


def test_network_home_binding_expires_at_ha_without_refresh() -> None:
    config = MobileNodeConfig(
        home_address=HOME_ADDRESS,
        home_prefix=HOME_PREFIX,
        home_agent=HA_ADDRESS,
        home_registration_lifetime=40,
    )
    net = registered_network(mn_config=config)
    net.drop = lambda send, now: isinstance(send.message, BindingUpdate)
    net.run_until(60.0)
    expired = net.actions_of("ha", BindingExpired)
    assert len(expired) == 1 and expired[0][0] == pytest.approx(41.01)
    assert RemoveHomeTunnel(HOME_ADDRESS) in [a for _, a in net.actions_of("ha", RemoveHomeTunnel)]
    assert StopProxyNeighbor(HOME_ADDRESS, None) in [
        a for _, a in net.actions_of("ha", StopProxyNeighbor)
    ]
    assert HOME_ADDRESS not in net.ha.cache
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
    net.inject("mn", MovedToForeignLink(COA1, None))
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
    net.inject("mn", MovedToForeignLink(COA1, None))
    net.run_until(5.0)
    entry = net.ha.cache.get(HOME_ADDRESS)
    assert entry is not None and entry.sequence == 65535
    net.inject("mn", MovedToForeignLink(COA2, None))
    net.run_until(10.0)
    entry = net.ha.cache.get(HOME_ADDRESS)
    assert entry is not None and entry.sequence == 0 and entry.care_of_address == COA2


def test_network_returning_home_deregisters_everywhere() -> None:
    net = with_route_optimization(registered_network())
    net.inject("mn", ReturnedToHomeLink())
    net.run_until(net.now + 5.0)
    assert HOME_ADDRESS not in net.ha.cache
    dereg = [d for d in net.sent("mn", BindingUpdate) if d.receiver == "ha"][-1].send
    assert dereg.src == HOME_ADDRESS and dereg.home_address is None
    assert isinstance(dereg.message, BindingUpdate) and dereg.message.lifetime == 0
    ba = net.sent("ha", BindingAck)[-1].send
    assert ba.dst == HOME_ADDRESS and ba.routing_address is None
    mn_actions = [a for _, n, a in net.actions if n == "mn"]
    tail = [
        a
        for a in mn_actions
        if isinstance(a, RemoveReverseTunnel | HomeAddressAtHome | SendNeighborAdvertisement)
    ]
    assert tail == [
        RemoveReverseTunnel(HOME_ADDRESS),
        HomeAddressAtHome(HOME_ADDRESS),
        SendNeighborAdvertisement(HOME_ADDRESS),
    ]
    cn_entry = net.cn.cache.get(HOME_ADDRESS)
    assert cn_entry is None or cn_entry.state is BindingState.REPLAY_GUARD
    assert RemoveRouteOptimization(HOME_ADDRESS) in [
        a for _, a in net.actions_of("cn", RemoveRouteOptimization)
    ]
    assert net.mn.bul == {}


def test_network_route_optimization_switched_off_mid_flow() -> None:
    net = with_route_optimization(registered_network())
    net.inject("mn", RouteOptimizationSwitched(False))
    net.inject("cn", RouteOptimizationSwitched(False))
    assert RemoveRouteOptimization(HOME_ADDRESS, CN_ADDRESS) in [
        a for _, a in net.actions_of("mn", RemoveRouteOptimization)
    ]
    assert RemoveRouteOptimization(HOME_ADDRESS) in [
        a for _, a in net.actions_of("cn", RemoveRouteOptimization)
    ]
    assert not net.cn.has_binding(HOME_ADDRESS)
    before = len(net.log)
    net.inject("mn", DataPacketFromCorrespondent(CN_ADDRESS))
    net.run_until(net.now + 5.0)
    assert CN_ADDRESS not in net.mn.bul
    assert all(not isinstance(d.send.message, HomeTestInit) for d in net.log[before:])
    # The home registration is untouched: traffic goes through the tunnel.
    assert net.ha.cache.get(HOME_ADDRESS) is not None


def test_network_refreshes_keep_bindings_alive_for_an_hour() -> None:
    config = MobileNodeConfig(
        home_address=HOME_ADDRESS,
        home_prefix=HOME_PREFIX,
        home_agent=HA_ADDRESS,
        home_registration_lifetime=100,
    )
    net = with_route_optimization(registered_network(mn_config=config))
    net.run_until(3600.0)
    assert net.actions_of("ha", BindingExpired) == []
    assert net.actions_of("cn", BindingExpired) == []
    assert net.ha.cache.get(HOME_ADDRESS) is not None
    assert net.cn.has_binding(HOME_ADDRESS)

"""An in-memory network wiring MobileNode, HomeAgent and CorrespondentNode cores with a fake
clock (aioquic/h11 style): actions of one core become input events of another.

Only what the cores need is modelled: the HA tunnel (HoA traffic reaches the MN's primary
CoA through the HA), a CoA per visited link, packet loss by predicate, and proxy DAD taking
one second. Addresses are those of :mod:`tests.support.vectors`.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv6Address

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
from tests.support.factories import counter_bytes
from tests.support.vectors import CN, HA, HOA, PREFIX

__all__ = ["Delivery", "Network"]


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
            mn_config or MobileNodeConfig(home_address=HOA, home_prefix=PREFIX, home_agent=HA),
            random_bytes=counter_bytes(mn_seed),
        )
        ha = HomeAgent(ha_config or HomeAgentConfig(HA, (PREFIX,)))
        cn = CorrespondentNode(
            cn_config or CorrespondentConfig(CN), random_bytes=counter_bytes(100)
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
        if dst == HA:
            receiver = "ha"
            if send.via_tunnel:
                return  # the MN only tunnels HoTIs to CNs
        elif dst == CN:
            receiver = "cn"
            if send.via_tunnel:
                # Reverse tunnel: the HA accepts it only from the registered primary CoA.
                entry = self.ha.cache.get(send.src)
                if entry is None or entry.care_of_address != self.mn.care_of_address:
                    return
                when += self.latency
        elif dst == HOA and send.routing_address is None:
            receiver = "mn"
            entry = self.ha.cache.get(HOA)
            if entry is not None and entry.state.value == "registered":
                if not self._mn_reachable_at(entry.care_of_address):
                    return
                via_tunnel = True
                when += self.latency
            elif self.mn.care_of_address != HOA:
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

"""Property tests: whatever BUs, DAD results and timers arrive, the HA's data-plane actions
describe exactly its binding cache (hypothesis)."""

from __future__ import annotations

from ipaddress import IPv6Address

from hypothesis import given, settings
from hypothesis import strategies as st

from nfq_mip6.mobility.binding import BindingState, seq_newer
from nfq_mip6.mobility.events import (
    Action,
    InstallHomeTunnel,
    MobilityMessageReceived,
    ProxyDadCompleted,
    RemoveHomeTunnel,
    SendMobilityMessage,
    StartProxyDad,
    StartProxyNeighbor,
    StopProxyNeighbor,
)
from nfq_mip6.mobility.home_agent import HomeAgent, HomeAgentConfig
from nfq_mip6.wire.mh import BindingAck, BindingUpdate, BUFlags
from nfq_mip6.wire.options import AlternateCareofAddress
from tests.support.vectors import HA, PREFIX

HOAS = [IPv6Address(f"2001:db8:a::{i + 100:x}") for i in range(4)]
COAS = [IPv6Address(f"2001:db8:f::{i + 1:x}") for i in range(3)]

bu_op = st.tuples(
    st.just("bu"),
    st.integers(0, 3),  # home address
    st.integers(0, 3),  # care-of address (3 = the HoA itself: de-registration)
    st.integers(0, 0xFFFF),  # sequence
    st.sampled_from([0, 1, 10, 100, 0xFFFF]),  # lifetime units
)
dad_op = st.tuples(st.just("dad"), st.integers(0, 3), st.booleans(), st.just(0), st.just(0))
time_op = st.tuples(st.just("time"), st.integers(1, 500), st.just(0), st.just(0), st.just(0))


class DataPlane:
    """What a runtime would hold after applying the actions."""

    def __init__(self) -> None:
        self.tunnels: dict[IPv6Address, IPv6Address] = {}
        self.proxied: set[IPv6Address] = set()
        self.dad: set[IPv6Address] = set()

    def apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, InstallHomeTunnel):
                self.tunnels[action.home_address] = action.care_of_address
            elif isinstance(action, RemoveHomeTunnel):
                assert action.home_address in self.tunnels
                del self.tunnels[action.home_address]
            elif isinstance(action, StartProxyNeighbor):
                self.proxied.add(action.home_address)
            elif isinstance(action, StopProxyNeighbor):
                self.proxied.discard(action.home_address)
            elif isinstance(action, StartProxyDad):
                self.dad.add(action.home_address)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(bu_op, dad_op, time_op), max_size=40))
def test_ha_dataplane_matches_binding_cache(ops: list[tuple[str, int, int, int, int]]) -> None:
    ha = HomeAgent(HomeAgentConfig(HA, (PREFIX,), dad_timeout=5.0))
    plane = DataPlane()
    now = 0.0
    last_seq: dict[IPv6Address, int] = {}
    for op, a, b, c, d in ops:
        if op == "bu":
            hoa = HOAS[a]
            coa = hoa if b == 3 else COAS[b]
            bu = BindingUpdate(c, BUFlags.A | BUFlags.H, d, (AlternateCareofAddress(coa),))
            before = ha.cache.get(hoa)
            before_seq = None if before is None else before.sequence
            actions = ha.handle(MobilityMessageReceived(bu, coa, HA, home_address=hoa), now)
            for action in actions:
                if isinstance(action, SendMobilityMessage):
                    ba = action.message
                    assert isinstance(ba, BindingAck) and ba.sequence in (c, before_seq)
                    if ba.status == 0 and before_seq is not None:
                        assert seq_newer(c, before_seq)  # §9.5.1: only newer numbers accepted
                        last_seq[hoa] = c
        elif op == "dad":
            hoa = HOAS[a]
            actions = ha.handle(ProxyDadCompleted(hoa, duplicate=bool(b)), now)
        else:
            now += a
            actions = ha.handle_timer(now)
        plane.apply(actions)
        registered = {
            e.home_address: e.care_of_address
            for e in ha.cache
            if e.state is BindingState.REGISTERED
        }
        assert plane.tunnels == registered
        assert plane.proxied == set(registered)
        for entry in ha.cache:
            assert entry.expires_at > now or entry.state is BindingState.DAD_PENDING
            assert entry.home_registration
        deadline = ha.next_deadline()
        if len(ha.cache):
            assert deadline is not None and deadline == min(e.expires_at for e in ha.cache)

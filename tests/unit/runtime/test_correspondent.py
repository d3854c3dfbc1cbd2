"""CorrespondentRuntime without the kernel: packets in (as NFQUEUE would hand them), verdicts
and sent packets out. A scripted mobile node runs return routability with ``nfq_mip6.wire``
and ``nfq_mip6.mobility.rr`` (RFC 6275 §5.2, §9.2–§9.5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import pytest

from nfq_mip6.config import load_config
from nfq_mip6.dataplane.ro_fastpath import FakeRouteOptimizationFastPath
from nfq_mip6.io.iptables import DestinationRules
from nfq_mip6.io.nfqueue import QueuedPacket
from nfq_mip6.mobility import rr
from nfq_mip6.runtime.base import VerdictKind
from nfq_mip6.runtime.correspondent import CorrespondentRuntime
from nfq_mip6.runtime.ro_datapath import cn_outbound, mn_outbound
from nfq_mip6.wire import (
    Accepted,
    BAStatus,
    BindingAck,
    BindingError,
    BindingUpdate,
    BUFlags,
    CareofTest,
    CareofTestInit,
    HomeTest,
    HomeTestInit,
    NonceIndices,
    UnknownMobilityMessage,
    build_ipv6_packet,
    build_mh,
    parse_and_validate_mh,
    parse_ipv6,
)
from tests.support.factories import runtime_context
from tests.support.howto import CN, COA, COA2, HOA


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    runtime: CorrespondentRuntime
    clock: Clock
    sent: list[bytes] = field(default_factory=list)

    def queue(self, packet: bytes) -> Any:
        """``packet`` as received on an interface (raw PREROUTING, input interface 2)."""
        return self.runtime.on_queued_packet(QueuedPacket(packet, 2), self.clock())

    def queue_outgoing(self, packet: bytes) -> Any:
        """``packet`` as this host sent it (mangle OUTPUT: no input interface)."""
        return self.runtime.on_queued_packet(QueuedPacket(packet), self.clock())

    def replies(self) -> list[tuple[Any, Any]]:
        """(ParsedPacket, message) of the MH packets sent since the last call."""
        out = []
        for raw in self.sent:
            verdict = parse_and_validate_mh(raw)
            assert isinstance(verdict, Accepted), verdict
            out.append((parse_ipv6(raw), verdict.message))
        self.sent.clear()
        return out


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    config_file = tmp_path / "cn.toml"
    config_file.write_text('role = "cn"\ninterface = "eth0"\nroute_optimization = true\n')
    config = load_config(config_file, environ={})
    clock = Clock()
    sent: list[bytes] = []
    runtime = CorrespondentRuntime(load_rules=False, address=CN)
    ctx = runtime_context(config, sent.append, clock)
    runtime.start(ctx)
    return Harness(runtime, clock, sent)


def mh_packet(
    message: Any, src: IPv6Address, dst: IPv6Address, home_address: IPv6Address | None = None
) -> bytes:
    mh = build_mh(message, home_address or src, dst)
    return build_ipv6_packet(src, dst, 135, mh, home_address=home_address)


def run_rr(h: Harness, coa: IPv6Address = COA) -> tuple[HomeTest, CareofTest]:
    """HoTI from the HoA (as decapsulated by the HA), CoTI from the CoA → HoT, CoT."""
    v1 = h.queue(mh_packet(HomeTestInit(b"H" * 8), HOA, CN))
    v2 = h.queue(mh_packet(CareofTestInit(b"C" * 8), coa, CN))
    assert v1.kind == VerdictKind.DROP and v2.kind == VerdictKind.DROP
    (hot_pkt, hot), (cot_pkt, cot) = h.replies()
    assert isinstance(hot, HomeTest) and isinstance(cot, CareofTest)
    assert (hot_pkt.src, hot_pkt.dst, hot.cookie) == (CN, HOA, b"H" * 8)
    assert (cot_pkt.src, cot_pkt.dst, cot.cookie) == (CN, coa, b"C" * 8)
    return hot, cot


def bu_packet(
    hot: HomeTest,
    cot: CareofTest,
    *,
    coa: IPv6Address = COA,
    sequence: int = 1,
    lifetime: int = 105,
    authenticate: bool = True,
    tamper: bool = False,
    indices: NonceIndices | None = None,
    options_after_bad: bool = False,
) -> bytes:
    kbm = rr.binding_management_key(hot.keygen_token, cot.keygen_token)
    nonce = indices or NonceIndices(hot.nonce_index, cot.nonce_index)
    bu = BindingUpdate(sequence, BUFlags.A, lifetime, (nonce,))

    def auth(data: bytes) -> bytes:
        value = rr.authenticator(kbm, coa, CN, data)
        return bytes(b ^ 0xFF for b in value) if tamper else value

    if not authenticate:
        return mh_packet(bu, coa, CN, home_address=HOA)
    mh = build_mh(bu, HOA, CN, authenticator=auth)
    if options_after_bad:  # append a PadN(4) after the BAD, fix lengths and checksum
        from nfq_mip6.wire.checksum import mh_checksum

        body = bytearray(mh + b"\x01\x02\x00\x00\x00\x00\x00\x00"[:8])
        body[1] = len(body) // 8 - 1
        body[4:6] = b"\x00\x00"
        body[4:6] = mh_checksum(HOA, CN, bytes(body)).to_bytes(2, "big")
        mh = bytes(body)
    return build_ipv6_packet(coa, CN, 135, mh, home_address=HOA)


def test_return_routability_and_binding(harness: Harness) -> None:
    hot, cot = run_rr(harness)
    verdict = harness.queue(bu_packet(hot, cot))
    assert verdict.kind == VerdictKind.DROP
    [(ba_pkt, ba)] = harness.replies()
    assert isinstance(ba, BindingAck) and ba.status == BAStatus.ACCEPTED
    assert ba.lifetime == 105  # 420 s cap (MAX_RR_BINDING_LIFETIME)
    # §9.5.4: to the CoA with an RH2 carrying the HoA, BAD verifies with Kbm.
    assert ba_pkt.dst == COA and ba_pkt.rh2_address == HOA and ba_pkt.src == CN
    kbm = rr.binding_management_key(hot.keygen_token, cot.keygen_token)
    assert rr.verify_authenticator(kbm, COA, CN, ba_pkt.upper_layer_bytes)
    cache = harness.runtime.handle_control({"cmd": "cache"})["bindings"]
    assert [(b["home_address"], b["care_of_address"], b["type"]) for b in cache] == [
        (str(HOA), str(COA), 1)
    ]
    # Data path both ways.
    echo = build_ipv6_packet(CN, HOA, 59, b"")
    out = harness.queue(echo)
    assert out.kind == VerdictKind.REWRITE and out.payload == cn_outbound(
        echo, {HOA.packed: COA.packed}
    )
    reply = mn_outbound(build_ipv6_packet(HOA, CN, 59, b""), HOA.packed, {CN.packed: COA.packed})
    assert reply is not None
    back = harness.queue(reply)
    assert back.kind == VerdictKind.REWRITE and parse_ipv6(back.payload or b"").src == HOA
    stats = harness.runtime.handle_control({"cmd": "stats"})
    assert stats["route_optimization"] is True and stats["bindings"] == 1
    assert stats["counters"]["NBindUpdatesRcvd"] == 1
    assert stats["counters"]["NBindAcksSent"] == 1


def test_hao_without_binding_gets_binding_error_1(harness: Harness) -> None:
    data = mn_outbound(build_ipv6_packet(HOA, CN, 59, b""), HOA.packed, {CN.packed: COA.packed})
    assert data is not None
    assert harness.queue(data).kind == VerdictKind.DROP
    [(be_pkt, be)] = harness.replies()
    assert isinstance(be, BindingError) and be.status == 1 and be.home_address == HOA
    assert be_pkt.dst == COA and be_pkt.rh2_address is None


def test_hao_from_another_coa_gets_binding_error_1(harness: Harness) -> None:
    hot, cot = run_rr(harness)
    harness.queue(bu_packet(hot, cot))
    harness.replies()
    data = mn_outbound(build_ipv6_packet(HOA, CN, 59, b""), HOA.packed, {CN.packed: COA2.packed})
    assert data is not None
    assert harness.queue(data).kind == VerdictKind.DROP
    [(be_pkt, be)] = harness.replies()
    assert isinstance(be, BindingError) and be.status == 1 and be_pkt.dst == COA2
    assert harness.runtime.bindings == {HOA.packed: COA.packed}  # unchanged (CN-6-2-x)


def test_unknown_mh_type_gets_binding_error_2(harness: Harness) -> None:
    packet = mh_packet(UnknownMobilityMessage(8, b"\x00" * 10), COA, CN)
    assert harness.queue(packet).kind == VerdictKind.DROP
    [(be_pkt, be)] = harness.replies()
    assert isinstance(be, BindingError) and be.status == 2 and be_pkt.dst == COA


def test_rh2_to_the_correspondent_is_dropped(harness: Harness) -> None:
    packet = build_ipv6_packet(COA, CN, 59, b"", rh2_address=HOA)
    assert harness.queue(packet).kind == VerdictKind.DROP
    assert harness.sent == []


@pytest.mark.parametrize(
    "forgery",
    ["wrong_authenticator", "missing_bad", "bad_not_last", "stale_nonce_index"],
)
def test_forged_binding_updates_create_no_binding(harness: Harness, forgery: str) -> None:
    hot, cot = run_rr(harness)
    if forgery == "wrong_authenticator":
        packet = bu_packet(hot, cot, tamper=True)
    elif forgery == "missing_bad":
        packet = bu_packet(hot, cot, authenticate=False)
    elif forgery == "bad_not_last":
        packet = bu_packet(hot, cot, options_after_bad=True)
    else:
        packet = bu_packet(hot, cot, indices=NonceIndices(hot.nonce_index + 100, 7777))
    assert harness.queue(packet).kind == VerdictKind.DROP
    replies = harness.replies()
    if forgery == "stale_nonce_index":
        # §9.5.1: unknown indices → BA 138 (both), without BAD, even with A = 0.
        [(_pkt, ba)] = replies
        assert isinstance(ba, BindingAck) and ba.status == BAStatus.EXPIRED_NONCES
        assert not ba.options
    else:
        assert replies == []  # silently discarded, by the authenticator check (not §9.2)
        counters = harness.runtime.handle_control({"cmd": "stats"})["counters"]
        assert counters["NBindUpdatesDropAuth"] == 1
    assert harness.runtime.bindings == {}
    assert harness.runtime.handle_control({"cmd": "cache"})["bindings"] == []


def test_expired_nonces_give_136_137_138(harness: Harness) -> None:
    hot, cot = run_rr(harness)
    harness.clock.now += 60
    hot2, cot2 = run_rr(harness)
    assert hot2.nonce_index != hot.nonce_index
    harness.clock.now += 200  # the first nonces are now older than MAX_NONCE_LIFETIME
    cases = [
        (NonceIndices(hot.nonce_index, cot2.nonce_index), BAStatus.EXPIRED_HOME_NONCE_INDEX),
        (NonceIndices(hot2.nonce_index, cot.nonce_index), BAStatus.EXPIRED_CAREOF_NONCE_INDEX),
        (NonceIndices(hot.nonce_index, cot.nonce_index), BAStatus.EXPIRED_NONCES),
    ]
    for sequence, (indices, status) in enumerate(cases, start=1):
        harness.queue(bu_packet(hot2, cot2, indices=indices, sequence=sequence))
        [(pkt, ba)] = harness.replies()
        assert isinstance(ba, BindingAck) and ba.status == status
        assert pkt.dst == COA and pkt.rh2_address == HOA
    assert harness.runtime.bindings == {}


def test_binding_follows_a_new_care_of_address(harness: Harness) -> None:
    hot, cot = run_rr(harness)
    harness.queue(bu_packet(hot, cot))
    harness.replies()
    _hot, cot2 = run_rr(harness, coa=COA2)
    harness.queue(bu_packet(hot, cot2, coa=COA2, sequence=2))
    [(pkt, ba)] = harness.replies()
    assert isinstance(ba, BindingAck) and ba.status == 0 and pkt.dst == COA2
    assert harness.runtime.bindings == {HOA.packed: COA2.packed}


def test_binding_refresh_request_before_expiry_of_binding_in_active_use(
    harness: Harness,
) -> None:
    """§9.5.5: data sent through the binding makes it "in active use": one BRR to the HoA."""
    hot, cot = run_rr(harness)
    harness.queue(bu_packet(hot, cot, lifetime=20))  # 80 s
    harness.replies()
    out = harness.queue(build_ipv6_packet(CN, HOA, 59, b""))
    assert out.kind == VerdictKind.REWRITE
    deadline = harness.runtime.next_deadline()
    assert deadline is not None
    harness.clock.now = deadline
    harness.runtime.on_timer(harness.clock.now)
    [(pkt, brr)] = harness.replies()
    assert type(brr).__name__ == "BindingRefreshRequest" and pkt.dst == HOA
    harness.clock.now += 100
    harness.runtime.on_timer(harness.clock.now)
    assert harness.runtime.bindings == {}


def test_no_binding_refresh_request_for_idle_binding(harness: Harness) -> None:
    """§9.5.5: without data through it, the binding expires with no BRR."""
    hot, cot = run_rr(harness)
    harness.queue(bu_packet(hot, cot, lifetime=20))
    harness.replies()
    harness.clock.now += 100
    harness.runtime.on_timer(harness.clock.now)
    assert harness.replies() == [] and harness.runtime.bindings == {}


def test_hao_after_binding_expired_gets_binding_error_1_before_timer_ran(
    harness: Harness,
) -> None:
    """§9.3.1/§9.3.3: a packet that arrives after the binding's lifetime ended gets BE 1,
    even when the agent loop has not yet run the expiry timer."""
    hot, cot = run_rr(harness)
    harness.queue(bu_packet(hot, cot, lifetime=4))  # 16 s
    harness.replies()
    reply = mn_outbound(build_ipv6_packet(HOA, CN, 59, b""), HOA.packed, {CN.packed: COA.packed})
    assert reply is not None
    assert harness.queue(reply).kind == VerdictKind.REWRITE
    harness.clock.now += 17
    assert harness.queue(reply).kind == VerdictKind.DROP
    [(pkt, be)] = harness.replies()
    assert isinstance(be, BindingError) and (be.status, be.home_address) == (1, HOA)
    assert pkt.dst == COA


def test_own_binding_ack_to_a_deleted_binding_leaves_unchanged(harness: Harness) -> None:
    """§9.5.3: the BA of a home de-registration meets the deleted binding's OUTPUT rule and
    comes back into the queue; it is our own MH (no input interface) and leaves as is,
    while the same octets received on an interface would be an unexpected MH type."""
    ba = mh_packet(BindingAck(0, 0, 7, 0), CN, HOA)  # the binding is already gone
    assert harness.queue_outgoing(ba).kind == VerdictKind.ACCEPT
    assert harness.queue(ba).kind == VerdictKind.DROP


def test_ro_switch_off_drops_bindings_and_stops_answering(harness: Harness) -> None:
    hot, cot = run_rr(harness)
    harness.queue(bu_packet(hot, cot))
    harness.replies()
    answer = harness.runtime.handle_control({"cmd": "ro", "set": False})
    assert answer == {"ok": True, "route_optimization": False}
    assert harness.runtime.bindings == {}
    harness.queue(mh_packet(HomeTestInit(b"H" * 8), HOA, CN))
    assert harness.sent == []
    assert harness.runtime.handle_control({"cmd": "ro"})["route_optimization"] is False
    assert harness.runtime.handle_control({"cmd": "stats"})["route_optimization"] is False
    assert harness.runtime.handle_control({"cmd": "ro", "set": "yes"})["ok"] is False
    harness.runtime.handle_control({"cmd": "ro", "set": True})
    run_rr(harness)


def test_reload_applies_accept_return_routability(harness: Harness, tmp_path: Path) -> None:
    legacy = tmp_path / "network-mip6.conf"
    legacy.write_text("FUNCTIONALITY=cn\nDEBUGLEVEL=1\naccept_return_routability=no\n")
    assert harness.runtime.reload(load_config(legacy)) == ["route_optimization: off"]
    assert harness.runtime.handle_control({"cmd": "ro"})["route_optimization"] is False


def test_outbound_mobility_header_to_bound_home_address_is_not_rewritten(
    harness: Harness,
) -> None:
    hot, cot = run_rr(harness)
    harness.queue(bu_packet(hot, cot))
    harness.replies()
    # A HoT sent by the agent itself to the HoA comes back through NFQMIP6-CN-OUT.
    hot_again = mh_packet(HomeTest(1, b"x" * 8, b"y" * 8), CN, HOA)
    assert harness.queue(hot_again).kind == VerdictKind.ACCEPT


def test_malformed_packets_are_dropped_and_counted(harness: Harness) -> None:
    assert harness.queue(b"\x60\x00").kind == VerdictKind.DROP
    assert harness.runtime.counters["malformed"] == 1


def test_binding_rules_add_remove_commands() -> None:
    calls: list[list[str]] = []

    def run(args: list[str]) -> int:
        calls.append(args)
        return 0

    rules = DestinationRules("NFQMIP6-CN-OUT", 3, bypass=True, run=run)
    assert rules.add(HOA) and rules.add(HOA)
    assert rules.remove(HOA) and rules.remove(HOA)
    spec = ["-d", f"{HOA}/128", "-j", "NFQUEUE", "--queue-num", "3", "--queue-bypass"]
    assert calls == [
        ["-t", "mangle", "-A", "NFQMIP6-CN-OUT", *spec],
        ["-t", "mangle", "-D", "NFQMIP6-CN-OUT", *spec],
    ]


def test_stop_tells_bound_mobile_nodes_with_binding_error_1(harness: Harness) -> None:
    hot, cot = run_rr(harness)
    harness.queue(bu_packet(hot, cot))
    harness.replies()
    harness.runtime.stop()
    [(pkt, be)] = harness.replies()
    assert isinstance(be, BindingError) and (be.status, be.home_address) == (1, HOA)
    assert (pkt.src, pkt.dst, pkt.rh2_address) == (CN, COA, None)
    assert harness.runtime.bindings == {}


def test_persistent_destination_unreachable_deletes_the_binding(harness: Harness) -> None:
    """§9.3.4 (TAHI CN-6-1): three Destination Unreachable errors about packets to the CoA."""
    from nfq_mip6.wire import DestinationUnreachable, build_icmpv6_packet

    hot, cot = run_rr(harness)
    harness.queue(bu_packet(hot, cot))
    harness.replies()
    sent = cn_outbound(build_ipv6_packet(CN, HOA, 59, b""), {HOA.packed: COA.packed})
    assert sent is not None
    router = IPv6Address("fec0:106:2300::1")
    error = build_icmpv6_packet(DestinationUnreachable(3, sent), router, CN, hop_limit=64)
    for _ in range(3):
        assert harness.queue(error).kind == VerdictKind.ACCEPT
    assert harness.runtime.bindings == {}
    assert harness.runtime.handle_control({"cmd": "cache"})["bindings"] == []
    assert harness.runtime.counters["destination_unreachables_seen"] == 3


def test_reload_takes_the_configuration_the_agent_loaded(harness: Harness) -> None:
    import dataclasses

    ctx = harness.runtime.ctx
    assert ctx is not None
    new = dataclasses.replace(ctx.config, route_optimization=False)
    assert harness.runtime.reload(new) == ["route_optimization: off"]
    assert harness.runtime.handle_control({"cmd": "ro"})["route_optimization"] is False


def on_fake_bpf_fast_path(
    tmp_path: Path,
) -> tuple[Harness, FakeRouteOptimizationFastPath, list[tuple[str, str, tuple[str, ...]]]]:
    """A CN runtime started with ``ro_datapath = "bpf"`` on the fake fast path, and the
    (role, mode, interfaces) it asked the fast-path factory for."""
    fake = FakeRouteOptimizationFastPath("cn")
    requested: list[tuple[str, str, tuple[str, ...]]] = []

    def factory(
        role: str, mode: str, interfaces: tuple[str, ...]
    ) -> tuple[FakeRouteOptimizationFastPath, str]:
        requested.append((role, mode, interfaces))
        fake.start()
        return fake, "fake programs loaded"

    config_file = tmp_path / "cn.toml"
    config_file.write_text('role = "cn"\ninterface = "eth0"\nro_datapath = "bpf"\n')
    runtime = CorrespondentRuntime(load_rules=False, address=CN, fast_path_factory=factory)
    clock = Clock()
    sent: list[bytes] = []
    runtime.start(runtime_context(load_config(config_file, environ={}), sent.append, clock))
    return Harness(runtime, clock, sent), fake, requested


def test_bindings_go_to_the_bpf_fast_path_and_leave_with_ro_off(tmp_path: Path) -> None:
    h, fake, requested = on_fake_bpf_fast_path(tmp_path)
    runtime = h.runtime
    assert requested == [("cn", "bpf", ("eth0",))]
    hot, cot = run_rr(h)
    h.queue(bu_packet(hot, cot))
    assert fake.entries == {(HOA, CN): COA}  # key (HoA, the CN address), value the CoA
    status = runtime.handle_control({"cmd": "ro"})
    assert status["ro_datapath"]["datapath"] == "bpf"
    assert status["ro_datapath"]["entries"] == 1
    stats = runtime.handle_control({"cmd": "stats"})
    assert stats["ro_datapath"]["counters"]["out_rewritten"] == 0
    assert stats["correspondent"]["datapath"] == "bpf"
    runtime.handle_control({"cmd": "ro", "set": False})
    assert fake.entries == {}
    runtime.stop()
    assert fake.log[-1] == ("stop", "flush")


def test_bpf_data_path_rewrites_count_as_active_use_for_the_brr(tmp_path: Path) -> None:
    """§9.5.5 with the tc BPF data path (no packet is queued): growth of its out_rewritten
    counter marks the bindings in use, so the BRR still goes out before expiry."""
    h, fake, _ = on_fake_bpf_fast_path(tmp_path)
    runtime, clock = h.runtime, h.clock
    hot, cot = run_rr(h)
    h.queue(bu_packet(hot, cot, lifetime=20))  # 80 s
    h.replies()
    fake.rewritten += 5  # the programs rewrote data to the CoA
    clock.now += 1
    runtime.on_timer(clock.now)
    deadline = runtime.next_deadline()
    assert deadline is not None
    clock.now = deadline
    runtime.on_timer(clock.now)
    [(pkt, brr)] = h.replies()
    assert type(brr).__name__ == "BindingRefreshRequest" and pkt.dst == HOA

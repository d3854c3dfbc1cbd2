"""The route-optimization tc programs on the real kernel (``BPF_PROG_TEST_RUN``).

Each program runs once on a packet built with scapy; the packet it returns is compared with
the RFC 6275 rewrite built with scapy too (RH2 §6.4, HAO §6.3 at 8n+6), and the counters
and the untouched cases (no binding, another CoA, Mobility Header, other headers) are checked.
Needs root (bpf(2)); no namespace, nothing is attached.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv6Address

import pytest
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import (
    HAO,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrRouting,
    PadN,
)
from scapy.layers.l2 import Ether

from nfq_mip6.dataplane import DataplaneError
from nfq_mip6.dataplane.bpf_syscall import prog_test_run
from nfq_mip6.dataplane.ro_bpf import OBJECT_PATH, BpfRouteOptimization
from tests.support.vectors import HOA

pytestmark = pytest.mark.netns

CN = IPv6Address("2001:db8:c::2")
COA = IPv6Address("2001:db8:f::2")
OTHER = IPv6Address("2001:db8:f::99")
ETHER = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
PASS = -1  # TC_ACT_UNSPEC: the stack (or the next filter) goes on


def _fast_path(role: str) -> Iterator[BpfRouteOptimization]:
    if not OBJECT_PATH.is_file():
        pytest.fail(f"{OBJECT_PATH} not built: run scripts/build-bpf.sh")
    fast_path = BpfRouteOptimization(role)
    try:
        fast_path.start()
    except DataplaneError as exc:
        pytest.skip(f"BPF unavailable here: {exc}")
    assert fast_path.bind_map is not None
    fast_path.bind_map.update(HOA.packed + CN.packed, COA.packed)
    yield fast_path
    fast_path.stop(flush=False)


@pytest.fixture
def cn() -> Iterator[BpfRouteOptimization]:
    yield from _fast_path("cn")


@pytest.fixture
def mn() -> Iterator[BpfRouteOptimization]:
    yield from _fast_path("mn")


def run(fast_path: BpfRouteOptimization, direction: str, packet: bytes) -> bytes:
    code, out = prog_test_run(fast_path._prog_fds[direction], packet)
    assert code == PASS
    return out


def rh2(home: IPv6Address) -> IPv6ExtHdrRouting:
    return IPv6ExtHdrRouting(type=2, segleft=1, addresses=[str(home)])


def hao(home: IPv6Address) -> IPv6ExtHdrDestOpt:
    return IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\0\0"), HAO(hoa=str(home))])


def test_cn_egress_inserts_rh2_and_sends_to_the_care_of_address(
    cn: BpfRouteOptimization,
) -> None:
    payload = TCP(sport=5201, dport=40000, flags="PA") / (b"x" * 100)
    sent = bytes(ETHER / IPv6(src=str(CN), dst=str(HOA), hlim=64) / payload)
    out = run(cn, "egress", sent)
    expected = bytes(ETHER / IPv6(src=str(CN), dst=str(COA), hlim=64) / rh2(HOA) / payload)
    # The upper-layer checksum stays the one computed with the home address (§6.1.1).
    assert out == expected[:78] + sent[54:]
    assert IPv6(out[14:]).plen == len(bytes(payload)) + 24
    assert cn.counters()["out_rewritten"] == 1


def test_cn_egress_leaves_unbound_and_mobility_and_extension_headers(
    cn: BpfRouteOptimization,
) -> None:
    cases = [
        ETHER / IPv6(src=str(CN), dst=str(OTHER)) / UDP(),  # no binding
        ETHER / IPv6(src=str(CN), dst=str(HOA), nh=135) / (b"\x3b\x00" + bytes(6)),  # MH
        ETHER / IPv6(src=str(CN), dst=str(HOA)) / rh2(HOA) / UDP(),  # already has an RH
        ETHER / IPv6(src=str(CN), dst=str(HOA)) / IPv6ExtHdrDestOpt() / UDP(),
    ]
    for packet in cases:
        assert run(cn, "egress", bytes(packet)) == bytes(packet)
    counters = cn.counters()
    assert counters["out_rewritten"] == 0
    assert counters["out_not_bound"] == 1
    assert counters["out_skipped"] == 3


def test_cn_egress_puts_rh2_before_a_fragment_header(cn: BpfRouteOptimization) -> None:
    tail = IPv6ExtHdrFragment(id=7, m=1) / (b"y" * 64)
    out = run(cn, "egress", bytes(ETHER / IPv6(src=str(CN), dst=str(HOA)) / tail))
    parsed = IPv6(out[14:])
    assert parsed.dst == str(COA)
    assert isinstance(parsed.payload, IPv6ExtHdrRouting)
    assert isinstance(parsed.payload.payload, IPv6ExtHdrFragment)


def test_cn_ingress_strips_the_hao_only_for_the_bound_care_of_address(
    cn: BpfRouteOptimization,
) -> None:
    payload = ICMPv6EchoRequest(id=1, seq=1, data=b"z" * 40)
    home_view = bytes(ETHER / IPv6(src=str(HOA), dst=str(CN)) / payload)
    received = ETHER / IPv6(src=str(COA), dst=str(CN)) / hao(HOA) / payload
    # The checksum of the echo is the one over the home address: keep its bytes.
    wire = bytes(received)[:78] + home_view[54:]
    assert run(cn, "ingress", wire) == home_view

    wrong = bytes(ETHER / IPv6(src=str(OTHER), dst=str(CN)) / hao(HOA) / payload)
    assert run(cn, "ingress", wrong) == wrong  # slow path: Binding Error 1 (§9.3.3)
    unknown = bytes(ETHER / IPv6(src=str(COA), dst=str(CN)) / hao(OTHER) / payload)
    assert run(cn, "ingress", unknown) == unknown
    bu = bytes(ETHER / IPv6(src=str(COA), dst=str(CN)) / hao(HOA)) + b"\x3b\x01" + bytes(14)
    bu = bu[:54] + b"\x87" + bu[55:]  # Destination Options' next header: MH (a BU)
    assert run(cn, "ingress", bu) == bu
    plain = bytes(ETHER / IPv6(src=str(COA), dst=str(CN)) / UDP())
    assert run(cn, "ingress", plain) == plain
    counters = cn.counters()
    assert counters["in_rewritten"] == 1
    assert counters["in_punted"] == 3
    assert counters["in_not_ours"] == 1


def test_mn_egress_inserts_the_hao_and_sends_from_the_care_of_address(
    mn: BpfRouteOptimization,
) -> None:
    payload = UDP(sport=5000, dport=5001) / (b"u" * 1200)
    sent = bytes(ETHER / IPv6(src=str(HOA), dst=str(CN)) / payload)
    out = run(mn, "egress", sent)
    expected = bytes(ETHER / IPv6(src=str(COA), dst=str(CN)) / hao(HOA) / payload)
    assert out == expected[:78] + sent[54:]
    assert out[54:78] == b"\x11\x02\x01\x02\x00\x00\xc9\x10" + HOA.packed
    from_coa = bytes(ETHER / IPv6(src=str(COA), dst=str(CN)) / UDP())  # the CoTI's way
    assert run(mn, "egress", from_coa) == from_coa
    assert mn.counters()["out_rewritten"] == 1


def test_mn_ingress_strips_rh2_for_a_bound_correspondent(mn: BpfRouteOptimization) -> None:
    payload = TCP(sport=40000, dport=5201, flags="A")
    home_view = bytes(ETHER / IPv6(src=str(CN), dst=str(HOA)) / payload)
    wire = bytes(ETHER / IPv6(src=str(CN), dst=str(COA)) / rh2(HOA) / payload)[:78]
    assert run(mn, "ingress", wire + home_view[54:]) == home_view

    ba = bytes(ETHER / IPv6(src=str(CN), dst=str(COA)) / rh2(HOA)) + b"\x3b\x01" + bytes(14)
    ba = ba[:54] + b"\x87" + ba[55:]  # the RH2's next header: MH (a BA is the agent's)
    assert run(mn, "ingress", ba) == ba
    stranger = bytes(ETHER / IPv6(src=str(OTHER), dst=str(COA)) / rh2(HOA) / payload)
    assert run(mn, "ingress", stranger) == stranger
    counters = mn.counters()
    assert counters["in_rewritten"] == 1
    assert counters["in_punted"] == 2


def test_a_care_of_address_change_replaces_the_entry(cn: BpfRouteOptimization) -> None:
    assert cn.bind_map is not None
    cn.bind_map.update(HOA.packed + CN.packed, OTHER.packed)
    assert cn.bindings() == {(HOA, CN): OTHER}
    out = run(cn, "egress", bytes(ETHER / IPv6(src=str(CN), dst=str(HOA)) / UDP()))
    assert IPv6(out[14:]).dst == str(OTHER)
    assert cn.bind_map.delete(HOA.packed + CN.packed)
    assert not cn.bind_map.delete(HOA.packed + CN.packed)
    assert cn.bindings() == {}

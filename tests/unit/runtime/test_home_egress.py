"""The HA's per-binding NFQUEUE rules for its own packets to bound home addresses
(nfq_mip6/runtime/home_egress.py, RFC 6275 §9.3.2): which ip6tables calls, and the rewrite."""

from __future__ import annotations

from ipaddress import IPv6Address

from nfq_mip6.runtime.home_egress import OUTPUT_CHAIN, HomeAgentEgress
from nfq_mip6.wire import build_ipv6_packet, parse_ipv6
from tests.support.vectors import COA, COA2, HA, HOA

HOA2 = IPv6Address("2001:db8:a::200")
RULE = ["-j", "NFQUEUE", "--queue-num", "7", "--queue-bypass"]


def make(code: int = 0) -> tuple[HomeAgentEgress, list[list[str]], list[str]]:
    calls: list[list[str]] = []
    restores: list[str] = []

    def run(args: list[str]) -> int:
        calls.append(args)
        return code

    def restore(text: str) -> int:
        restores.append(text)
        return code

    return HomeAgentEgress(7, run=run, restore=restore), calls, restores


def test_one_fail_open_rule_per_home_address_added_once_and_removed_with_the_binding() -> None:
    egress, calls, _ = make()
    assert egress.install(HOA, COA) and egress.install(HOA, COA2)  # a CoA change: no new rule
    assert calls == [["-t", "mangle", "-A", OUTPUT_CHAIN, "-d", f"{HOA}/128", *RULE]]
    assert egress.bindings == {HOA.packed: COA2.packed}
    assert egress.remove(HOA) and egress.remove(HOA)  # the second is a no-op
    assert calls[1:] == [["-t", "mangle", "-D", OUTPUT_CHAIN, "-d", f"{HOA}/128", *RULE]]
    assert egress.bindings == {}


def test_a_restored_cache_is_installed_with_one_ip6tables_restore() -> None:
    egress, calls, restores = make()
    assert egress.install_many([(HOA, COA), (HOA2, COA2)])
    assert calls == [] and len(restores) == 1
    assert restores[0].splitlines() == [
        "*mangle",
        f"-A {OUTPUT_CHAIN} -d {HOA}/128 {' '.join(RULE)}",
        f"-A {OUTPUT_CHAIN} -d {HOA2}/128 {' '.join(RULE)}",
        "COMMIT",
    ]


def test_a_refused_rule_is_counted() -> None:
    egress, _, _ = make(code=1)
    assert not egress.install(HOA, COA)
    assert egress.counters["rule_errors"] == 1


def test_rewrite_inserts_rh2_and_sends_to_the_care_of_address() -> None:
    egress, _, _ = make()
    egress.install(HOA, COA)
    packet = build_ipv6_packet(HA, HOA, 17, b"\x00\x07\x00\x07\x00\x08\x00\x00")
    out = egress.rewrite(packet)
    assert out is not None
    parsed = parse_ipv6(out)
    assert (parsed.dst, parsed.rh2_address, parsed.upper_layer) == (COA, HOA, 17)
    assert egress.rewrite(build_ipv6_packet(HA, HOA2, 17, b"")) is None  # not bound
    assert egress.rewrite(build_ipv6_packet(HA, HOA, 135, b"\x3b\x00" + bytes(6))) is None
    assert egress.counters["rh2_inserted"] == 1

"""The reverse tunnel's inner-source check for mobile routers (RFC 3963 §6.5): the ip6tables
commands per binding, without root (``run`` records them)."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

from nfq_mip6.runtime.mobile_network_sources import MobileNetworkSourceCheck

HA = IPv6Address("2001:db8:a::1")
HOA = IPv6Address("2001:db8:a::4")
COA = IPv6Address("2001:db8:b::2")
COA2 = IPv6Address("2001:db8:b::3")
MNP = IPv6Network("2001:db8:77::/48")


def test_rfc3963_6_5_router_sources_marked_and_accepted_then_replaced_and_removed() -> None:
    commands: list[list[str]] = []
    check = MobileNetworkSourceCheck(HA, run=lambda args: commands.append(args) or 0)
    assert check.install(HOA, COA, [MNP])
    assert commands == [
        ["-t", "filter", "-I", "NFQMIP6-HA-MRSRC", "1", "-m", "mark", "--mark", "0x62770001",
         "-s", f"{HOA}/128", "-j", "RETURN"],
        ["-t", "filter", "-I", "NFQMIP6-HA-MRSRC", "1", "-m", "mark", "--mark", "0x62770001",
         "-s", str(MNP), "-j", "RETURN"],
        ["-t", "raw", "-I", "NFQMIP6-HA-MR", "1", "-s", f"{COA}/128", "-d", f"{HA}/128",
         "-p", "41", "-j", "MARK", "--set-xmark", "0x62770001/0xffffffff"],
    ]  # fmt: skip
    commands.clear()
    assert check.install(HOA, COA, [MNP]) and commands == []  # unchanged: nothing to do
    # a new CoA: the new rules go in first, then the old ones come out
    assert check.install(HOA, COA2, [MNP])
    assert [c[2] for c in commands] == ["-I", "-I", "-I", "-D", "-D", "-D"]
    assert "0x62770002/0xffffffff" in commands[2] and f"{COA}/128" in commands[3]
    commands.clear()
    assert check.remove(HOA) and [c[2] for c in commands] == ["-D", "-D", "-D"]
    assert check.routers == {}
    commands.clear()
    assert check.remove(HOA) and commands == []


def test_a_refused_rule_is_counted_not_raised() -> None:
    check = MobileNetworkSourceCheck(HA, run=lambda args: 1)
    assert not check.install(HOA, COA, [MNP])
    assert check.counters["rule_errors"] == 3


def test_with_an_mss_each_prefix_gets_the_tunnel_clamp_both_ways() -> None:
    """SYNs toward the prefix (mangle PREROUTING, before the HA encapsulates) and from it
    (the router's marked, decapsulated packets in FORWARD); the home address has its own."""
    commands: list[list[str]] = []
    check = MobileNetworkSourceCheck(HA, run=lambda args: commands.append(args) or 0, mss=1400)
    assert check.install(HOA, COA, [MNP])
    clamp = ["-p", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-m", "tcpmss", "--mss",
             "1401:65535", "-j", "TCPMSS", "--set-mss", "1400"]  # fmt: skip
    assert ["-t", "mangle", "-I", "NFQMIP6-HA-MSS", "1", "-d", str(MNP), *clamp] in commands
    forward = ["-t", "filter", "-I", "NFQMIP6-HA-MRSRC", "1", "-m", "mark", "--mark",
               "0x62770001", "-s", str(MNP), *clamp]  # fmt: skip
    # above the RETURN of the same source: inserted at 1 after it
    assert commands.index(forward) > commands.index(
        ["-t", "filter", "-I", "NFQMIP6-HA-MRSRC", "1", "-m", "mark", "--mark", "0x62770001",
         "-s", str(MNP), "-j", "RETURN"]
    )  # fmt: skip
    assert not any(f"{HOA}/128" in c and "TCPMSS" in c for c in commands)
    commands.clear()
    assert check.remove(HOA)
    deleted = [c for c in commands if "TCPMSS" in c]
    assert [c[:4] for c in deleted] == [
        ["-t", "mangle", "-D", "NFQMIP6-HA-MSS"],
        ["-t", "filter", "-D", "NFQMIP6-HA-MRSRC"],
    ]

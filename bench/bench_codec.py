"""Codec benchmark: parse + §9.2-validate a home BU (HAO + AltCoA) from raw IPv6 bytes.

Prints one JSON object: messages/s on one core for nfq_mip6.wire, and for scapy's dissection
of the same bytes (the baseline, measured in the same run). Target: ≥ 100k messages/s.

    .venv/bin/python bench/bench_codec.py [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from ipaddress import IPv6Address

from nfq_mip6.wire import (
    Accepted,
    AlternateCareofAddress,
    BindingUpdate,
    BUFlags,
    build_ipv6_packet,
    build_mh,
    parse_and_validate_mh,
    parse_ipv6,
    parse_mh,
)

HOA = IPv6Address("2001:db8:a::100")
COA = IPv6Address("2001:db8:f::1")
HA = IPv6Address("2001:db8:a::1")


def _rate(function: Callable[[], object], seconds: float) -> float:
    """Calls per second, measured over batches until ``seconds`` have elapsed."""
    function()
    batch = 1000
    calls = 0
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        for _ in range(batch):
            function()
        calls += batch
        elapsed = time.perf_counter() - start
    return calls / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args()

    bu = BindingUpdate(1, BUFlags.A | BUFlags.H, 10, (AlternateCareofAddress(COA),))
    raw = build_ipv6_packet(COA, HA, 135, build_mh(bu, HOA, HA), home_address=HOA)
    verdict = parse_and_validate_mh(raw)
    assert isinstance(verdict, Accepted) and verdict.message == bu

    def ours() -> object:
        return parse_and_validate_mh(raw)

    packet = parse_ipv6(raw)
    mh = packet.upper_layer_bytes

    result: dict[str, object] = {
        "benchmark": "parse+validate home BU (HAO, AltCoA) from raw IPv6 bytes",
        "packet_octets": len(raw),
        "python": platform.python_version(),
        "nfq_mip6_messages_per_second": round(_rate(ours, args.seconds)),
        "nfq_mip6_ipv6_walk_per_second": round(_rate(lambda: parse_ipv6(raw), args.seconds)),
        "nfq_mip6_parse_mh_per_second": round(_rate(lambda: parse_mh(mh), args.seconds)),
    }
    try:
        from scapy.layers.inet6 import MIP6MH_BU, IPv6

        def theirs() -> object:
            dissected = IPv6(raw)
            return dissected[MIP6MH_BU].options

        result["scapy_messages_per_second"] = round(_rate(theirs, args.seconds))
        result["speedup_vs_scapy"] = round(
            float(result["nfq_mip6_messages_per_second"])  # type: ignore[arg-type]
            / float(result["scapy_messages_per_second"]),  # type: ignore[arg-type]
            1,
        )
    except ImportError:
        result["scapy_messages_per_second"] = None
    result["target_messages_per_second"] = 100_000
    result["meets_target"] = result["nfq_mip6_messages_per_second"] >= 100_000  # type: ignore[operator]
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""The route-optimization data path on a kernel without Mobile IPv6 (RFC 6275 §9.3, §11.3).

Per-packet byte rewrites for NFQUEUE, shared by the Correspondent Node and the Mobile Node
runtimes. No ``ipaddress`` objects, no dataclasses, no scapy per packet: addresses are the
16 raw octets, binding tables are plain dicts keyed by them, and the common packet shapes
(nothing between the IPv6 header and the upper layer, or exactly the 24-octet HAO / RH2
header this project and every MIPv6 stack emits) are rewritten with a few slices. Anything
else falls back to the general rewrites of :mod:`nfq_mip6.wire.ipv6`, which walk the whole
extension-header chain.

Directions (the "binding" is the route-optimization binding of the role):

* CN outbound (§9.3.2): to a bound HoA → destination := CoA, RH2 carrying the HoA inserted.
* CN inbound (§9.3.1): HAO from the CoA of a binding → source := HoA, HAO removed.
* MN outbound (§11.3.1): from the HoA to a CN with an RO binding → source := CoA, HAO
  carrying the HoA inserted.
* MN inbound (§11.3.3): valid RH2 (Hdr Ext Len 2, Segments Left 1) carrying one of our
  home addresses → destination := HoA, RH2 removed.

Upper-layer checksums are never touched: Mobile IPv6 computes them with the home address
at both ends (§6.1.1, §11.3.1; RFC 8200 §8.1 "final destination"), which is what the
sender's kernel did before the rewrite and what the receiver's kernel checks after it.

Mobility Header packets are never rewritten here (§6.1: MH messages carry an HAO only in a
BU and an RH2 only in a BA, both built by the runtimes themselves); they return ``None``.
A ``None`` result always means "not rewritten by the fast path": the runtime then decides
with the full parser (accept, Binding Error, drop).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from ipaddress import IPv6Address
from struct import Struct
from typing import Any, Final

from nfq_mip6.mobility.events import DataPacketFromCorrespondent, IcmpErrorReceived
from nfq_mip6.runtime.base import Verdict
from nfq_mip6.wire.errors import MalformedPacket
from nfq_mip6.wire.ipv6 import (
    insert_hao,
    insert_rh2,
    parse_ipv6,
    strip_hao_to_home_source,
    strip_rh2_to_home_destination,
)

__all__ = [
    "HAO_HEADER_LENGTH",
    "MN_OUTPUT_CHAIN",
    "RH2_HEADER_LENGTH",
    "MobileNodeRouteOptimization",
    "RouteOptimizationEvent",
    "cn_inbound",
    "cn_outbound",
    "has_home_address_option",
    "has_type2_routing_header",
    "mn_inbound",
    "mn_outbound",
]

IPPROTO_HOPOPTS: Final = 0
IPPROTO_ROUTING: Final = 43
IPPROTO_DSTOPTS: Final = 60
IPPROTO_MH: Final = 135

HAO_HEADER_LENGTH: Final = 24
"""A Destination Options header holding PadN(4) and the HAO (at 8n+6, §6.3)."""
RH2_HEADER_LENGTH: Final = 24
"""A Type 2 Routing Header (§6.4)."""

# Next header | Hdr Ext Len 2 | PadN type 1, len 2, 0, 0 | HAO type 201, len 16.
_HAO_TAIL: Final = b"\x02\x01\x02\x00\x00\xc9\x10"
# Hdr Ext Len 2 | Routing Type 2 | Segments Left 1 | Reserved(32).
_RH2_TAIL: Final = b"\x02\x02\x01\x00\x00\x00\x00"
# Headers that may sit between the IPv6 header and an HAO/RH2 in the general case.
_EXTENSION_HEADERS: Final = frozenset((0, 43, 44, 51, 60))
_LENGTH: Final = Struct("!H")


def _payload_length(raw: bytes, delta: int) -> bytes | None:
    """The new Payload Length field, or ``None`` if the packet is truncated or the result
    does not fit (no jumbograms) or would be negative."""
    old = (raw[4] << 8) | raw[5]
    length = old + delta
    if not 0 <= length <= 0xFFFF or 40 + old != len(raw):
        return None
    return _LENGTH.pack(length)


def has_home_address_option(raw: bytes) -> bool:
    """Cheap test: a Destination Options header follows the IPv6 header and holds the HAO in
    the standard layout (the general case needs :func:`nfq_mip6.wire.parse_ipv6`)."""
    return len(raw) >= 64 and raw[6] == IPPROTO_DSTOPTS and raw[41:48] == _HAO_TAIL


def has_type2_routing_header(raw: bytes) -> bool:
    """Cheap test: a valid RH2 (§6.4) follows the IPv6 header directly."""
    return len(raw) >= 64 and raw[6] == IPPROTO_ROUTING and raw[41:48] == _RH2_TAIL


# ---------------------------------------------------------------------------------------------
# Correspondent node
# ---------------------------------------------------------------------------------------------


def cn_outbound(raw: bytes, bindings: Mapping[bytes, bytes]) -> bytes | None:
    """§9.3.2: a packet to a bound home address leaves for the care-of address with an RH2.

    ``bindings`` maps HoA octets → CoA octets. ``None``: no binding for the destination, a
    Mobility Header (HoT, BRR go through the home agent, §6.1), or a shape the rewrite
    refuses (an existing routing header, oversize).
    """
    care_of = bindings.get(raw[24:40])
    if care_of is None or len(raw) < 40:
        return None
    next_header = raw[6]
    if next_header == IPPROTO_MH:
        return None
    if next_header not in _EXTENSION_HEADERS:
        length = _payload_length(raw, RH2_HEADER_LENGTH)
        if length is None:
            return None
        # IPv6 header with dst := CoA and next header := routing; RH2(next header, HoA).
        return b"".join(
            (
                raw[:4],
                length,
                b"\x2b",
                raw[7:24],
                care_of,
                bytes((next_header,)),
                _RH2_TAIL,
                raw[24:40],
                raw[40:],
            )
        )
    if _upper_layer_is_mh(raw):
        return None
    return insert_rh2(raw, _address(care_of))


def cn_inbound(raw: bytes, bindings: Mapping[bytes, bytes]) -> bytes | None:
    """§9.3.1: a packet with an HAO whose binding maps that HoA to the packet's source is
    delivered as if sent from the HoA (source := HoA, HAO removed).

    ``None``: no HAO, no matching binding (the runtime answers Binding Error status 1,
    §9.3.3), a Mobility Header (a BU, which the runtime processes), or malformed.
    """
    if has_home_address_option(raw):
        home = raw[48:64]
        if bindings.get(home) != raw[8:24] or raw[40] == IPPROTO_MH:
            return None
        length = _payload_length(raw, -HAO_HEADER_LENGTH)
        if length is None:
            return None
        return b"".join((raw[:4], length, raw[40:41], raw[7:8], home, raw[24:40], raw[64:]))
    if len(raw) < 40 or raw[6] not in _EXTENSION_HEADERS or _upper_layer_is_mh(raw):
        return None
    stripped = strip_hao_to_home_source(raw)
    if stripped is None or bindings.get(stripped[8:24]) != raw[8:24]:
        return None
    return stripped


# ---------------------------------------------------------------------------------------------
# Mobile node
# ---------------------------------------------------------------------------------------------


def mn_outbound(raw: bytes, home_address: bytes, bindings: Mapping[bytes, bytes]) -> bytes | None:
    """§11.3.1: a packet from ``home_address`` to a correspondent with an RO binding leaves
    from the care-of address with an HAO carrying the home address.

    ``bindings`` maps correspondent octets → CoA octets. ``None``: not from the HoA, no
    binding for the destination, a Mobility Header (a HoTI goes through the tunnel), or a
    shape the rewrite refuses (an HAO already present, oversize).
    """
    if len(raw) < 40 or raw[8:24] != home_address:
        return None
    care_of = bindings.get(raw[24:40])
    if care_of is None:
        return None
    next_header = raw[6]
    if next_header == IPPROTO_MH:
        return None
    if next_header not in _EXTENSION_HEADERS:
        length = _payload_length(raw, HAO_HEADER_LENGTH)
        if length is None:
            return None
        # IPv6 header with src := CoA and next header := destination options; HAO(HoA).
        return b"".join(
            (
                raw[:4],
                length,
                b"\x3c",
                raw[7:8],
                care_of,
                raw[24:40],
                bytes((next_header,)),
                _HAO_TAIL,
                home_address,
                raw[40:],
            )
        )
    if _upper_layer_is_mh(raw):
        return None
    return insert_hao(raw, _address(care_of))


def mn_inbound(raw: bytes, home_addresses: Container[bytes]) -> bytes | None:
    """§11.3.3: a valid RH2 carrying one of ``home_addresses`` → destination := that HoA,
    RH2 removed.

    ``None``: no RH2, an invalid one (Hdr Ext Len ≠ 2 or Segments Left ≠ 1: silently
    discard), a home address that is not ours (discard, TAHI MN-4-1-2-2-011), a Mobility
    Header (a BA, which the runtime processes), or malformed.
    """
    if has_type2_routing_header(raw):
        home = raw[48:64]
        if home not in home_addresses or raw[40] == IPPROTO_MH:
            return None
        length = _payload_length(raw, -RH2_HEADER_LENGTH)
        if length is None:
            return None
        return b"".join((raw[:4], length, raw[40:41], raw[7:24], home, raw[64:]))
    if len(raw) < 40 or raw[6] not in _EXTENSION_HEADERS or _upper_layer_is_mh(raw):
        return None
    stripped = strip_rh2_to_home_destination(raw)
    if stripped is None or stripped[24:40] not in home_addresses:
        return None
    return stripped


# ---------------------------------------------------------------------------------------------
# Helpers (general case only)
# ---------------------------------------------------------------------------------------------


def _upper_layer_is_mh(raw: bytes) -> bool:
    """Walk the extension headers (general case) to see whether the upper layer is the MH.

    Malformed chains count as MH (the fast path then leaves the packet to the runtime).
    """
    next_header = raw[6]
    offset = 40
    end = len(raw)
    while next_header in _EXTENSION_HEADERS:
        if offset + 8 > end:
            return True
        if next_header == 44:  # fragment: the upper layer may be in a later fragment
            return True
        unit, extra = (4, 2) if next_header == 51 else (8, 1)  # AH counts 4-octet units
        length = (raw[offset + 1] + extra) * unit
        next_header = raw[offset]
        offset += length
    return next_header == IPPROTO_MH


def _address(octets: bytes) -> IPv6Address:
    return IPv6Address(octets)


# ---------------------------------------------------------------------------------------------
# Mobile node: bindings, per-binding rules and per-packet decisions (used by the MN runtime)
# ---------------------------------------------------------------------------------------------

MN_OUTPUT_CHAIN: Final = "NFQMIP6-MN-RO"
"""mangle OUTPUT chain of ``rules/mn.rules``: one ``-s HoA -d CN -j NFQUEUE`` rule per binding."""

RouteOptimizationEvent = DataPacketFromCorrespondent | IcmpErrorReceived
"""Input events for the MN core that :meth:`MobileNodeRouteOptimization.handle_packet` finds."""

_ICMPV6: Final = 58
_ICMPV6_PARAMETER_PROBLEM: Final = 4


def _run_ip6tables(args: list[str]) -> int:
    import subprocess

    result = subprocess.run(
        ["ip6tables", "--wait", *args], capture_output=True, text=True, check=False
    )
    return result.returncode


class MobileNodeRouteOptimization:
    """The MN half of route optimization on a kernel without MIPv6 (RFC 6275 §11.3, §11.6).

    * :meth:`install` / :meth:`remove` follow the core's ``InstallRouteOptimization`` /
      ``RemoveRouteOptimization``: the binding table (correspondent → CoA) and one rule
      ``-s HoA/128 -d CN/128 -j NFQUEUE`` in the mangle OUTPUT chain ``NFQMIP6-MN-RO``. The
      rewrite there changes the source to the CoA, so the kernel's re-route on reinjection
      (LOCAL_OUT) no longer matches the ``from HoA`` policy rule of the reverse tunnel and the
      packet leaves directly; without a binding the same packet takes the tunnel.
    * :meth:`handle_packet` runs first for every queued packet and returns a verdict when it
      decides alone (a rewrite, our own outbound MH, an ICMPv6 Parameter Problem), plus input
      events for the core: :class:`DataPacketFromCorrespondent` for traffic to the HoA from a
      node that is not the HA (sampled by a hashlimit rule, §11.7.2: starts return
      routability) and :class:`IcmpErrorReceived` (§11.3.5: a CN without MIPv6 support).
    """

    def __init__(
        self,
        home_address: IPv6Address,
        home_agent: IPv6Address | None,
        queue_num: int,
        bypass: bool,
        *,
        run: Callable[[list[str]], int] | None = None,
    ) -> None:
        self.home_address = home_address
        self.home_agent = home_agent
        self._home = home_address.packed
        self._homes = frozenset({self._home})
        self._ha = home_agent.packed if home_agent is not None else b""
        self._target = ["-j", "NFQUEUE", "--queue-num", str(queue_num)]
        if bypass:
            self._target.append("--queue-bypass")
        self._run = run or _run_ip6tables
        self.bindings: dict[bytes, bytes] = {}
        """Correspondent octets → CoA octets of every RO binding in force."""
        self.counters: dict[str, int] = {
            "hao_inserted": 0,
            "rh2_stripped": 0,
            "correspondent_data_seen": 0,
            "parameter_problems_seen": 0,
            "rule_errors": 0,
        }

    def _spec(self, correspondent: IPv6Address) -> list[str]:
        return ["-s", f"{self.home_address}/128", "-d", f"{correspondent}/128", *self._target]

    def install(self, correspondent: IPv6Address, care_of_address: IPv6Address) -> bool:
        """Packets HoA → ``correspondent`` leave from ``care_of_address`` with an HAO."""
        key = correspondent.packed
        had = key in self.bindings
        self.bindings[key] = care_of_address.packed
        if had:
            return True
        ok = self._run(["-t", "mangle", "-A", MN_OUTPUT_CHAIN, *self._spec(correspondent)]) == 0
        if not ok:
            self.counters["rule_errors"] += 1
        return ok

    def remove(self, correspondent: IPv6Address) -> bool:
        """Back to the reverse tunnel for ``correspondent``."""
        if self.bindings.pop(correspondent.packed, None) is None:
            return True
        ok = self._run(["-t", "mangle", "-D", MN_OUTPUT_CHAIN, *self._spec(correspondent)]) == 0
        if not ok:
            self.counters["rule_errors"] += 1
        return ok

    def clear(self) -> None:
        for key in list(self.bindings):
            self.remove(IPv6Address(key))

    def handle_packet(
        self, payload: bytes, *, away: bool
    ) -> tuple[Verdict | None, list[RouteOptimizationEvent]]:
        """``(verdict or None, input events for the core)`` for one queued packet.

        ``None``: the MN runtime carries on with its own processing (Mobility Headers,
        Binding Acknowledgements, Mobile Prefix Advertisements, plain accept).
        """
        bindings = self.bindings
        if bindings:
            out = mn_outbound(payload, self._home, bindings)
            if out is not None:
                self.counters["hao_inserted"] += 1
                return Verdict.rewrite(out), []
        out = mn_inbound(payload, self._homes)
        if out is not None:
            self.counters["rh2_stripped"] += 1
            return Verdict.rewrite(out), []
        if len(payload) < 40:
            return None, []
        source, destination = payload[8:24], payload[24:40]
        if source == self._home:
            # Ours, leaving through NFQMIP6-MN-RO (an MH, or a shape the rewrite refused).
            return Verdict.accept(), []
        if payload[6] == _ICMPV6 and len(payload) > 40 and payload[40] == _ICMPV6_PARAMETER_PROBLEM:
            return Verdict.accept(), self._parameter_problem(payload)
        if (
            away
            and destination == self._home
            and source != self._ha
            and payload[6] != IPPROTO_MH
            and not _upper_layer_is_mh(payload)
        ):
            self.counters["correspondent_data_seen"] += 1
            return None, [DataPacketFromCorrespondent(IPv6Address(source))]
        return None, []

    def _parameter_problem(self, payload: bytes) -> list[RouteOptimizationEvent]:
        """§11.3.5: Parameter Problem about a packet we sent (code 1: the peer does not know
        the MH; code 2: it does not know the HAO)."""
        self.counters["parameter_problems_seen"] += 1
        invoking = payload[48:]
        destination: IPv6Address | None = None
        mh_type: int | None = None
        if len(invoking) >= 40:
            destination = IPv6Address(invoking[24:40])
            try:
                parsed = parse_ipv6(invoking)
                offset = parsed.upper_offset if parsed.upper_layer == IPPROTO_MH else -1
            except MalformedPacket:  # the invoking packet may be truncated
                offset = 40 if invoking[6] == IPPROTO_MH else -1
            if offset >= 0 and offset + 2 < len(invoking):
                mh_type = invoking[offset + 2]
        return [
            IcmpErrorReceived(
                source=IPv6Address(payload[8:24]),
                icmp_type=_ICMPV6_PARAMETER_PROBLEM,
                code=payload[41],
                invoking_destination=destination,
                invoking_mh_type=mh_type,
            )
        ]

    def snapshot(self) -> dict[str, Any]:
        return {
            "bindings": {
                str(IPv6Address(cn)): str(IPv6Address(coa)) for cn, coa in self.bindings.items()
            },
            "counters": dict(self.counters),
        }

"""ICMPv6 and Neighbor Discovery messages Mobile IPv6 uses (RFC 4443, RFC 4861, RFC 6275 §6.5–§7).

* DHAAD Request/Reply (144/145, §6.5–§6.6), Mobile Prefix Solicitation/Advertisement (146/147,
  §6.7–§6.8);
* Router Advertisement with the Home Agent (H) flag (§7.1), Prefix Information with the Router
  Address (R) flag (§7.2), Advertisement Interval option (type 7, §7.3), Home Agent Information
  option (type 8, §7.4); Router Solicitation;
* Neighbor Solicitation/Advertisement for proxy ND and DAD (RFC 4861 §4.3–§4.4, RFC 4862 §5.4);
* Parameter Problem and Destination Unreachable errors (RFC 4443 §3.1, §3.4).

Messages are frozen dataclasses. :func:`build_icmpv6` encodes one with its checksum;
:func:`parse_icmpv6` decodes (raising only :class:`MalformedPacket`). Checksums use the IPv6
pseudo-header with next header 58 — for a packet with an HAO or RH2 pass the home address /
final destination, as for the MH (§6.3, RFC 8200 §8.1).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from ipaddress import IPv6Address, IPv6Network
from struct import Struct

from nfq_mip6.constants import IPPROTO_ICMPV6
from nfq_mip6.wire.checksum import pseudo_header_checksum
from nfq_mip6.wire.errors import MalformedPacket
from nfq_mip6.wire.ipv6 import build_ipv6_packet

MIN_MTU = 1280
MAX_DHAAD_REPLY_ADDRESSES = (MIN_MTU - 40 - 8) // 16
"""§10.5: the reply must fit the minimum MTU: (1280 − 40 − 8) / 16 = 77 addresses."""
MAX_ERROR_INVOKING_OCTETS = MIN_MTU - 40 - 8
"""RFC 4443 §2.4 (c): an error message must not exceed the minimum IPv6 MTU."""

ALL_NODES = IPv6Address("ff02::1")
ALL_ROUTERS = IPv6Address("ff02::2")


class ICMPv6Type(IntEnum):
    DESTINATION_UNREACHABLE = 1
    PACKET_TOO_BIG = 2
    TIME_EXCEEDED = 3
    PARAMETER_PROBLEM = 4
    ECHO_REQUEST = 128
    ECHO_REPLY = 129
    ROUTER_SOLICITATION = 133
    ROUTER_ADVERTISEMENT = 134
    NEIGHBOR_SOLICITATION = 135
    NEIGHBOR_ADVERTISEMENT = 136
    REDIRECT = 137
    DHAAD_REQUEST = 144
    DHAAD_REPLY = 145
    MOBILE_PREFIX_SOLICITATION = 146
    MOBILE_PREFIX_ADVERTISEMENT = 147


class NDOptionType(IntEnum):
    SOURCE_LINK_LAYER_ADDRESS = 1
    TARGET_LINK_LAYER_ADDRESS = 2
    PREFIX_INFORMATION = 3
    REDIRECTED_HEADER = 4
    MTU = 5
    ADVERTISEMENT_INTERVAL = 7  # RFC 6275 §7.3
    HOME_AGENT_INFORMATION = 8  # RFC 6275 §7.4


class DestinationUnreachableCode(IntEnum):
    NO_ROUTE = 0
    ADMINISTRATIVELY_PROHIBITED = 1
    BEYOND_SCOPE = 2
    ADDRESS_UNREACHABLE = 3  # §10.4.2: HA for link-local destinations, RFC 2473 relays
    PORT_UNREACHABLE = 4


class ParameterProblemCode(IntEnum):
    ERRONEOUS_HEADER_FIELD = 0  # §9.2: bad Payload Proto / Header Len
    UNRECOGNIZED_NEXT_HEADER = 1  # the kernel's answer to an unhandled MH
    UNRECOGNIZED_OPTION = 2  # the kernel's answer to an HAO it does not understand


class RAFlags(IntFlag):
    """RFC 4861 §4.2 and RFC 6275 §7.1: the RA flags octet."""

    NONE = 0
    MANAGED = 0x80
    OTHER = 0x40
    HOME_AGENT = 0x20


class NAFlags(IntFlag):
    """RFC 4861 §4.4: Router, Solicited, Override (top bits of the 32-bit flags word)."""

    NONE = 0
    ROUTER = 0x80
    SOLICITED = 0x40
    OVERRIDE = 0x20


@dataclass(frozen=True, slots=True)
class PrefixInformation:
    """RFC 4861 §4.6.2 + RFC 6275 §7.2. With ``router_address`` (R) set, ``prefix`` holds the
    router's full global address rather than a masked prefix."""

    prefix: IPv6Address
    prefix_length: int
    on_link: bool = True
    autonomous: bool = True
    router_address: bool = False
    valid_lifetime: int = 0xFFFFFFFF
    preferred_lifetime: int = 0xFFFFFFFF

    @property
    def network(self) -> IPv6Network:
        return IPv6Network((self.prefix, self.prefix_length), strict=False)


@dataclass(frozen=True, slots=True)
class HomeAgentInformation:
    """RFC 6275 §7.4: preference (unsigned 16, 0xffff highest) and lifetime (seconds)."""

    preference: int
    lifetime: int


@dataclass(frozen=True, slots=True)
class RawNDOption:
    """An ND option this codec does not interpret: ``data`` excludes the type/length octets."""

    option_type: int
    data: bytes


@dataclass(frozen=True, slots=True)
class DhaadRequest:
    """§6.5 (144). ``mobile_router`` is the NEMO R flag (RFC 3963); 0 for plain MIPv6."""

    identifier: int
    mobile_router: bool = False


@dataclass(frozen=True, slots=True)
class DhaadReply:
    """§6.6 (145): home agents in decreasing preference; the builder keeps at most 77."""

    identifier: int
    home_agents: tuple[IPv6Address, ...] = ()
    mobile_router: bool = False


@dataclass(frozen=True, slots=True)
class MobilePrefixSolicitation:
    """§6.7 (146)."""

    identifier: int


@dataclass(frozen=True, slots=True)
class MobilePrefixAdvertisement:
    """§6.8 (147): M/O flags and Prefix Information options."""

    identifier: int
    managed: bool = False
    other: bool = False
    prefixes: tuple[PrefixInformation, ...] = ()
    other_options: tuple[RawNDOption, ...] = ()


@dataclass(frozen=True, slots=True)
class RouterSolicitation:
    """RFC 4861 §4.1."""

    source_link_layer: bytes | None = None
    other_options: tuple[RawNDOption, ...] = ()


@dataclass(frozen=True, slots=True)
class RouterAdvertisement:
    """RFC 4861 §4.2 with the RFC 6275 §7 additions. ``flags`` keeps the whole flags octet
    (``RAFlags.HOME_AGENT`` is the H bit); ``advertisement_interval`` is in milliseconds."""

    cur_hop_limit: int = 64
    flags: RAFlags = RAFlags.NONE
    router_lifetime: int = 1800
    reachable_time: int = 0
    retrans_timer: int = 0
    source_link_layer: bytes | None = None
    mtu: int | None = None
    prefixes: tuple[PrefixInformation, ...] = ()
    advertisement_interval: int | None = None
    home_agent_information: HomeAgentInformation | None = None
    other_options: tuple[RawNDOption, ...] = ()

    @property
    def home_agent(self) -> bool:
        return bool(self.flags & RAFlags.HOME_AGENT)


@dataclass(frozen=True, slots=True)
class NeighborSolicitation:
    """RFC 4861 §4.3. DAD probes (RFC 4862 §5.4.2) come from ``::`` without an SLL option."""

    target: IPv6Address
    source_link_layer: bytes | None = None
    other_options: tuple[RawNDOption, ...] = ()


@dataclass(frozen=True, slots=True)
class NeighborAdvertisement:
    """RFC 4861 §4.4: R/S/O flags and an optional Target Link-Layer Address option."""

    target: IPv6Address
    flags: NAFlags = NAFlags.NONE
    target_link_layer: bytes | None = None
    other_options: tuple[RawNDOption, ...] = ()


@dataclass(frozen=True, slots=True)
class ParameterProblemMessage:
    """RFC 4443 §3.4: ``pointer`` counts from the start of the invoking packet's IPv6 header."""

    code: int
    pointer: int
    invoking_packet: bytes


@dataclass(frozen=True, slots=True)
class DestinationUnreachable:
    """RFC 4443 §3.1."""

    code: int
    invoking_packet: bytes


@dataclass(frozen=True, slots=True)
class UnknownICMPv6:
    """Any other ICMPv6 message: type, code and the octets after the checksum."""

    icmp_type: int
    code: int
    body: bytes


ICMPv6Message = (
    DhaadRequest
    | DhaadReply
    | MobilePrefixSolicitation
    | MobilePrefixAdvertisement
    | RouterSolicitation
    | RouterAdvertisement
    | NeighborSolicitation
    | NeighborAdvertisement
    | ParameterProblemMessage
    | DestinationUnreachable
    | UnknownICMPv6
)


# ---------------------------------------------------------------------------------------------
# Address helpers
# ---------------------------------------------------------------------------------------------


def solicited_node_address(address: IPv6Address) -> IPv6Address:
    """RFC 4291 §2.7.1: ff02::1:ffXX:XXXX from the low 24 bits."""
    return IPv6Address(b"\xff\x02" + bytes(9) + b"\x01\xff" + address.packed[13:])


def home_agents_anycast(prefix: IPv6Network) -> IPv6Address:
    """RFC 2526 §3 / RFC 6275 §10.5: Mobile IPv6 Home-Agents anycast (ID 0x7e = 126).

    For a 64-bit EUI-64 prefix this is ``prefix::fdff:ffff:ffff:fffe``. For other prefix
    lengths the interface identifier is all ones except the low 7 bits (anycast ID 126).
    """
    if prefix.prefixlen == 64:
        suffix = 0xFDFF_FFFF_FFFF_FFFE
    else:
        host_bits = 128 - prefix.prefixlen
        suffix = ((1 << host_bits) - 1) & ~0x7F | 0x7E
    return IPv6Address(int(prefix.network_address) | suffix)


# ---------------------------------------------------------------------------------------------
# Codec
# ---------------------------------------------------------------------------------------------

_HEAD = Struct("!BBH")
_PREFIX = Struct("!BBBBIII16s")
_RA = Struct("!BBHII")
_HAI = Struct("!HHH")
_ADV_INTERVAL = Struct("!HI")
_MTU = Struct("!HI")


def _nd_option(option_type: int, data: bytes) -> bytes:
    """An ND option padded to a multiple of 8 octets (RFC 4861 §4.6)."""
    total = 2 + len(data)
    total += -total % 8
    if total // 8 > 255:
        raise MalformedPacket(f"ND option type {option_type} too long")
    return bytes((option_type, total // 8)) + data + bytes(total - 2 - len(data))


def _prefix_option(info: PrefixInformation) -> bytes:
    flags = (0x80 if info.on_link else 0) | (0x40 if info.autonomous else 0)
    flags |= 0x20 if info.router_address else 0
    return _PREFIX.pack(
        3,
        4,
        info.prefix_length,
        flags,
        info.valid_lifetime,
        info.preferred_lifetime,
        0,
        info.prefix.packed,
    )


def _options_bytes(
    source_link_layer: bytes | None,
    target_link_layer: bytes | None,
    prefixes: tuple[PrefixInformation, ...],
    others: tuple[RawNDOption, ...],
) -> bytes:
    out = bytearray()
    if source_link_layer is not None:
        out += _nd_option(NDOptionType.SOURCE_LINK_LAYER_ADDRESS, source_link_layer)
    if target_link_layer is not None:
        out += _nd_option(NDOptionType.TARGET_LINK_LAYER_ADDRESS, target_link_layer)
    for info in prefixes:
        out += _prefix_option(info)
    for option in others:
        out += _nd_option(option.option_type, option.data)
    return bytes(out)


def _body(msg: ICMPv6Message) -> tuple[int, int, bytes]:
    """(type, code, octets after the checksum)."""
    if isinstance(msg, DhaadRequest | MobilePrefixSolicitation):
        icmp_type = (
            ICMPv6Type.DHAAD_REQUEST
            if isinstance(msg, DhaadRequest)
            else ICMPv6Type.MOBILE_PREFIX_SOLICITATION
        )
        flags = 0x8000 if isinstance(msg, DhaadRequest) and msg.mobile_router else 0
        return icmp_type, 0, struct.pack("!HH", msg.identifier, flags)
    if isinstance(msg, DhaadReply):
        agents = msg.home_agents[:MAX_DHAAD_REPLY_ADDRESSES]
        head = struct.pack("!HH", msg.identifier, 0x8000 if msg.mobile_router else 0)
        return ICMPv6Type.DHAAD_REPLY, 0, head + b"".join(a.packed for a in agents)
    if isinstance(msg, MobilePrefixAdvertisement):
        flags = (0x8000 if msg.managed else 0) | (0x4000 if msg.other else 0)
        head = struct.pack("!HH", msg.identifier, flags)
        options = _options_bytes(None, None, msg.prefixes, msg.other_options)
        return ICMPv6Type.MOBILE_PREFIX_ADVERTISEMENT, 0, head + options
    if isinstance(msg, RouterAdvertisement):
        head = _RA.pack(
            msg.cur_hop_limit,
            int(msg.flags),
            msg.router_lifetime,
            msg.reachable_time,
            msg.retrans_timer,
        )
        ra_options = bytearray()
        if msg.source_link_layer is not None:
            ra_options += _nd_option(NDOptionType.SOURCE_LINK_LAYER_ADDRESS, msg.source_link_layer)
        if msg.mtu is not None:
            ra_options += _nd_option(NDOptionType.MTU, _MTU.pack(0, msg.mtu))
        for info in msg.prefixes:
            ra_options += _prefix_option(info)
        if msg.advertisement_interval is not None:
            ra_options += _nd_option(
                NDOptionType.ADVERTISEMENT_INTERVAL,
                _ADV_INTERVAL.pack(0, msg.advertisement_interval),
            )
        if msg.home_agent_information is not None:
            hai = msg.home_agent_information
            ra_options += _nd_option(
                NDOptionType.HOME_AGENT_INFORMATION, _HAI.pack(0, hai.preference, hai.lifetime)
            )
        for option in msg.other_options:
            ra_options += _nd_option(option.option_type, option.data)
        return ICMPv6Type.ROUTER_ADVERTISEMENT, 0, head + bytes(ra_options)
    if isinstance(msg, RouterSolicitation):
        options = _options_bytes(msg.source_link_layer, None, (), msg.other_options)
        return ICMPv6Type.ROUTER_SOLICITATION, 0, bytes(4) + options
    if isinstance(msg, NeighborSolicitation):
        options = _options_bytes(msg.source_link_layer, None, (), msg.other_options)
        return ICMPv6Type.NEIGHBOR_SOLICITATION, 0, bytes(4) + msg.target.packed + options
    if isinstance(msg, NeighborAdvertisement):
        options = _options_bytes(None, msg.target_link_layer, (), msg.other_options)
        head = bytes((int(msg.flags) & 0xE0, 0, 0, 0)) + msg.target.packed
        return ICMPv6Type.NEIGHBOR_ADVERTISEMENT, 0, head + options
    if isinstance(msg, ParameterProblemMessage):
        invoking = msg.invoking_packet[:MAX_ERROR_INVOKING_OCTETS]
        return ICMPv6Type.PARAMETER_PROBLEM, msg.code, struct.pack("!I", msg.pointer) + invoking
    if isinstance(msg, DestinationUnreachable):
        invoking = msg.invoking_packet[:MAX_ERROR_INVOKING_OCTETS]
        return ICMPv6Type.DESTINATION_UNREACHABLE, msg.code, bytes(4) + invoking
    if isinstance(msg, UnknownICMPv6):
        return msg.icmp_type, msg.code, msg.body
    raise MalformedPacket(f"not an ICMPv6 message: {msg!r}")


def build_icmpv6(msg: ICMPv6Message, src: IPv6Address, dst: IPv6Address) -> bytes:
    """The ICMPv6 message bytes with the checksum under the (src, dst, 58) pseudo-header.

    ``src``/``dst`` are pseudo-header addresses: the home address for a packet sent with an
    HAO, the RH2 home address for a packet sent with an RH2 (e.g. an MPA, §10.6.3).
    """
    try:
        icmp_type, code, body = _body(msg)
        head = _HEAD.pack(icmp_type, code, 0)
    except MalformedPacket:
        raise
    except (struct.error, ValueError, OverflowError, TypeError, AttributeError) as exc:
        raise MalformedPacket(f"cannot encode {msg!r}: {exc}") from exc
    checksum = pseudo_header_checksum(src, dst, IPPROTO_ICMPV6, head + body)
    return _HEAD.pack(icmp_type, code, checksum) + body


def build_icmpv6_packet(
    msg: ICMPv6Message,
    src: IPv6Address,
    dst: IPv6Address,
    hop_limit: int = 255,
    home_address: IPv6Address | None = None,
    rh2_address: IPv6Address | None = None,
) -> bytes:
    """A whole IPv6 packet carrying ``msg``; hop limit 255 as ND requires (RFC 4861 §6.1).

    With ``home_address`` (sent from the care-of address ``src``) or ``rh2_address`` (sent to
    the care-of address ``dst``), the checksum uses the home address, as the receiver will.
    """
    pseudo_src = home_address if home_address is not None else src
    pseudo_dst = rh2_address if rh2_address is not None else dst
    payload = build_icmpv6(msg, pseudo_src, pseudo_dst)
    return build_ipv6_packet(
        src,
        dst,
        IPPROTO_ICMPV6,
        payload,
        hop_limit=hop_limit,
        home_address=home_address,
        rh2_address=rh2_address,
    )


def verify_icmpv6_checksum(buf: bytes, src: IPv6Address, dst: IPv6Address) -> bool:
    """True when the received ICMPv6 message's checksum is right."""
    return pseudo_header_checksum(src, dst, IPPROTO_ICMPV6, buf) == 0


def _parse_nd_options(buf: bytes, start: int) -> list[tuple[int, bytes]]:
    """RFC 4861 §4.6: (type, data without type/length) pairs; length 0 is malformed."""
    options: list[tuple[int, bytes]] = []
    i = start
    size = len(buf)
    while i < size:
        if i + 2 > size:
            raise MalformedPacket(f"ND option at {i} truncated")
        length = buf[i + 1] * 8
        if length == 0:
            raise MalformedPacket(f"ND option type {buf[i]} with length 0")
        if i + length > size:
            raise MalformedPacket(f"ND option type {buf[i]} overruns the message")
        options.append((buf[i], buf[i + 2 : i + length]))
        i += length
    return options


def _prefix_from(data: bytes) -> PrefixInformation:
    if len(data) != 30:
        raise MalformedPacket(f"prefix information option of {len(data) + 2} octets")
    length, flags, valid, preferred, _reserved, prefix = _PREFIX.unpack(b"\x03\x04" + data)[2:]
    if length > 128:
        raise MalformedPacket(f"prefix length {length}")
    return PrefixInformation(
        IPv6Address(prefix),
        length,
        bool(flags & 0x80),
        bool(flags & 0x40),
        bool(flags & 0x20),
        valid,
        preferred,
    )


def _link_layer(options: list[tuple[int, bytes]], wanted: int) -> bytes | None:
    for option_type, data in options:
        if option_type == wanted:
            return data
    return None


def _split(
    options: list[tuple[int, bytes]], known: frozenset[int]
) -> tuple[tuple[PrefixInformation, ...], tuple[RawNDOption, ...]]:
    prefixes = tuple(_prefix_from(d) for t, d in options if t == NDOptionType.PREFIX_INFORMATION)
    others = tuple(
        RawNDOption(t, d)
        for t, d in options
        if t not in known and t != NDOptionType.PREFIX_INFORMATION
    )
    return prefixes, others


_SLL = frozenset((NDOptionType.SOURCE_LINK_LAYER_ADDRESS,))
_TLL = frozenset((NDOptionType.TARGET_LINK_LAYER_ADDRESS,))
_RA_KNOWN = frozenset(
    (
        NDOptionType.SOURCE_LINK_LAYER_ADDRESS,
        NDOptionType.MTU,
        NDOptionType.ADVERTISEMENT_INTERVAL,
        NDOptionType.HOME_AGENT_INFORMATION,
    )
)


def _need(buf: bytes, size: int, what: str) -> None:
    if len(buf) < size:
        raise MalformedPacket(f"{what} shorter than {size} octets")


def parse_icmpv6(buf: bytes | bytearray | memoryview) -> ICMPv6Message:
    """Decode an ICMPv6 message (checksum not verified: see :func:`verify_icmpv6_checksum`)."""
    if not isinstance(buf, bytes):
        buf = bytes(buf)
    _need(buf, 4, "ICMPv6 message")
    icmp_type, code = buf[0], buf[1]
    if icmp_type in (ICMPv6Type.DHAAD_REQUEST, ICMPv6Type.MOBILE_PREFIX_SOLICITATION):
        _need(buf, 8, "DHAAD request / MPS")
        identifier, flags = struct.unpack_from("!HH", buf, 4)
        if icmp_type == ICMPv6Type.DHAAD_REQUEST:
            return DhaadRequest(identifier, bool(flags & 0x8000))
        return MobilePrefixSolicitation(identifier)
    if icmp_type == ICMPv6Type.DHAAD_REPLY:
        _need(buf, 8, "DHAAD reply")
        if (len(buf) - 8) % 16:
            raise MalformedPacket("DHAAD reply address list is not a multiple of 16 octets")
        identifier, flags = struct.unpack_from("!HH", buf, 4)
        agents = tuple(IPv6Address(buf[i : i + 16]) for i in range(8, len(buf), 16))
        return DhaadReply(identifier, agents, bool(flags & 0x8000))
    if icmp_type == ICMPv6Type.MOBILE_PREFIX_ADVERTISEMENT:
        _need(buf, 8, "mobile prefix advertisement")
        identifier, flags = struct.unpack_from("!HH", buf, 4)
        prefixes, others = _split(_parse_nd_options(buf, 8), frozenset())
        return MobilePrefixAdvertisement(
            identifier, bool(flags & 0x8000), bool(flags & 0x4000), prefixes, others
        )
    if icmp_type == ICMPv6Type.ROUTER_ADVERTISEMENT:
        _need(buf, 16, "router advertisement")
        hop_limit, flags, lifetime, reachable, retrans = _RA.unpack_from(buf, 4)
        options = _parse_nd_options(buf, 16)
        prefixes, others = _split(options, _RA_KNOWN)
        mtu = None
        interval = None
        hai = None
        for option_type, data in options:
            if option_type == NDOptionType.MTU and len(data) == 6:
                mtu = _MTU.unpack(data)[1]
            elif option_type == NDOptionType.ADVERTISEMENT_INTERVAL and len(data) == 6:
                interval = _ADV_INTERVAL.unpack(data)[1]
            elif option_type == NDOptionType.HOME_AGENT_INFORMATION and len(data) == 6:
                _reserved, preference, hai_lifetime = _HAI.unpack(data)
                hai = HomeAgentInformation(preference, hai_lifetime)
        return RouterAdvertisement(
            hop_limit,
            RAFlags(flags),
            lifetime,
            reachable,
            retrans,
            _link_layer(options, NDOptionType.SOURCE_LINK_LAYER_ADDRESS),
            mtu,
            prefixes,
            interval,
            hai,
            others,
        )
    if icmp_type == ICMPv6Type.ROUTER_SOLICITATION:
        _need(buf, 8, "router solicitation")
        options = _parse_nd_options(buf, 8)
        return RouterSolicitation(
            _link_layer(options, NDOptionType.SOURCE_LINK_LAYER_ADDRESS),
            tuple(RawNDOption(t, d) for t, d in options if t not in _SLL),
        )
    if icmp_type in (ICMPv6Type.NEIGHBOR_SOLICITATION, ICMPv6Type.NEIGHBOR_ADVERTISEMENT):
        _need(buf, 24, "neighbor solicitation/advertisement")
        target = IPv6Address(buf[8:24])
        options = _parse_nd_options(buf, 24)
        if icmp_type == ICMPv6Type.NEIGHBOR_SOLICITATION:
            return NeighborSolicitation(
                target,
                _link_layer(options, NDOptionType.SOURCE_LINK_LAYER_ADDRESS),
                tuple(RawNDOption(t, d) for t, d in options if t not in _SLL),
            )
        return NeighborAdvertisement(
            target,
            NAFlags(buf[4] & 0xE0),
            _link_layer(options, NDOptionType.TARGET_LINK_LAYER_ADDRESS),
            tuple(RawNDOption(t, d) for t, d in options if t not in _TLL),
        )
    if icmp_type == ICMPv6Type.PARAMETER_PROBLEM:
        _need(buf, 8, "parameter problem")
        return ParameterProblemMessage(code, struct.unpack_from("!I", buf, 4)[0], buf[8:])
    if icmp_type == ICMPv6Type.DESTINATION_UNREACHABLE:
        _need(buf, 8, "destination unreachable")
        return DestinationUnreachable(code, buf[8:])
    return UnknownICMPv6(icmp_type, code, buf[4:])

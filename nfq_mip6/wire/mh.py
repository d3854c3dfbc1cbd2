"""Mobility Header messages (RFC 6275 §6.1).

Data model only here (the codec functions live beside it): one frozen, slotted dataclass per
message type, IntEnums for types and statuses, IntFlags for flags. Lifetimes are kept in the
on-the-wire 4-second units; ``lifetime_seconds`` converts.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import IntEnum, IntFlag
from ipaddress import IPv6Address
from struct import Struct

from nfq_mip6.constants import IPPROTO_MH as IPPROTO_MH
from nfq_mip6.constants import IPPROTO_NONE as IPPROTO_NONE
from nfq_mip6.wire.checksum import mh_checksum, mh_length_of, pseudo_header_checksum
from nfq_mip6.wire.errors import MalformedPacket
from nfq_mip6.wire.options import (
    AUTHENTICATOR_LENGTH,
    BindingAuthorizationData,
    MobilityOption,
    decode_options,
    encode_options,
)


class MHType(IntEnum):
    BRR = 0
    HOTI = 1
    COTI = 2
    HOT = 3
    COT = 4
    BU = 5
    BA = 6
    BE = 7
    HOME_AGENT_SWITCH = 12  # RFC 5142 §4


class BAStatus(IntEnum):
    """§6.1.8 and IANA; statuses < 128 mean accepted."""

    ACCEPTED = 0
    ACCEPTED_PREFIX_DISCOVERY_NECESSARY = 1
    REASON_UNSPECIFIED = 128
    ADMINISTRATIVELY_PROHIBITED = 129
    INSUFFICIENT_RESOURCES = 130
    HOME_REGISTRATION_NOT_SUPPORTED = 131
    NOT_HOME_SUBNET = 132
    NOT_HOME_AGENT_FOR_THIS_MOBILE_NODE = 133
    DUPLICATE_ADDRESS_DETECTION_FAILED = 134
    SEQUENCE_NUMBER_OUT_OF_WINDOW = 135
    EXPIRED_HOME_NONCE_INDEX = 136
    EXPIRED_CAREOF_NONCE_INDEX = 137
    EXPIRED_NONCES = 138
    REGISTRATION_TYPE_CHANGE_DISALLOWED = 139
    MOBILE_ROUTER_OPERATION_NOT_PERMITTED = 140  # RFC 3963 §4.2
    INVALID_PREFIX = 141  # RFC 3963 §4.2
    NOT_AUTHORIZED_FOR_PREFIX = 142  # RFC 3963 §4.2
    FORWARDING_SETUP_FAILED = 143  # RFC 3963 §4.2
    MIPV6_ID_MISMATCH = 144  # RFC 4285
    MIPV6_MESG_ID_REQD = 145  # RFC 4285
    MIPV6_AUTH_FAIL = 146  # RFC 4285
    INVALID_CAREOF_ADDRESS = 174


class BEStatus(IntEnum):
    """§6.1.9."""

    UNKNOWN_BINDING_FOR_HOME_ADDRESS_OPTION = 1
    UNRECOGNIZED_MH_TYPE = 2


class BUFlags(IntFlag):
    """§6.1.7 and IANA: the 16-bit word after the sequence number."""

    NONE = 0
    A = 0x8000  # acknowledge
    H = 0x4000  # home registration
    L = 0x2000  # link-local address compatibility
    K = 0x1000  # key management mobility capability
    M = 0x0800  # MAP registration (RFC 5380)
    R = 0x0400  # mobile router (RFC 3963 §4.1)
    P = 0x0200  # proxy registration (RFC 5213)
    F = 0x0100  # force UDP encapsulation (RFC 5555)
    T = 0x0080  # TLV header format (RFC 5845)
    B = 0x0040  # bulk binding (RFC 6602)


class BAFlags(IntFlag):
    """§6.1.8 and IANA: the octet after the status. R is RFC 3963 §4.2: the HA accepted a
    Mobile Router registration."""

    NONE = 0
    K = 0x80
    R = 0x40
    P = 0x20
    T = 0x10
    B = 0x08


def status_accepted(status: int) -> bool:
    """§11.7.3: a BA status below 128 means the BU was accepted."""
    return status < 128


@dataclass(frozen=True, slots=True)
class BindingRefreshRequest:
    """§6.1.2 (type 0)."""

    options: tuple[MobilityOption, ...] = ()


@dataclass(frozen=True, slots=True)
class HomeTestInit:
    """§6.1.3 (type 1): 64-bit home init cookie."""

    cookie: bytes
    options: tuple[MobilityOption, ...] = ()


@dataclass(frozen=True, slots=True)
class CareofTestInit:
    """§6.1.4 (type 2): 64-bit care-of init cookie."""

    cookie: bytes
    options: tuple[MobilityOption, ...] = ()


@dataclass(frozen=True, slots=True)
class HomeTest:
    """§6.1.5 (type 3)."""

    nonce_index: int
    cookie: bytes
    keygen_token: bytes
    options: tuple[MobilityOption, ...] = ()


@dataclass(frozen=True, slots=True)
class CareofTest:
    """§6.1.6 (type 4)."""

    nonce_index: int
    cookie: bytes
    keygen_token: bytes
    options: tuple[MobilityOption, ...] = ()


@dataclass(frozen=True, slots=True)
class BindingUpdate:
    """§6.1.7 (type 5). ``lifetime`` in 4-second units; 0 deletes the binding."""

    sequence: int
    flags: BUFlags
    lifetime: int
    options: tuple[MobilityOption, ...] = ()
    authorization_data_misplaced: bool = field(default=False, compare=False)
    """Set by the parser: a Binding Authorization Data option is followed by another option or
    by padding. A CN MUST then silently discard the BU (§6.2.7, §9.5.1). Ignored by builders."""

    @property
    def lifetime_seconds(self) -> int:
        return self.lifetime * 4


@dataclass(frozen=True, slots=True)
class BindingAck:
    """§6.1.8 (type 6). ``status`` is a BAStatus value or any other 8-bit code received."""

    status: int
    flags: BAFlags
    sequence: int
    lifetime: int
    options: tuple[MobilityOption, ...] = ()
    authorization_data_misplaced: bool = field(default=False, compare=False)
    """Set by the parser, as for :class:`BindingUpdate` (an MN checks a CN's BA the same way)."""

    @property
    def lifetime_seconds(self) -> int:
        return self.lifetime * 4


@dataclass(frozen=True, slots=True)
class BindingError:
    """§6.1.9 (type 7)."""

    status: int
    home_address: IPv6Address
    options: tuple[MobilityOption, ...] = ()


@dataclass(frozen=True, slots=True)
class HomeAgentSwitch:
    """RFC 5142 §4 (type 12): the home agent asks the MN to register with another one.

    ``home_agents`` lists the alternate home agents, the preferred first; empty = the MN
    finds one itself (DHAAD, RFC 6275 §11.4.1). Layout after the common header:
    ``# of Addresses (8) | Reserved (8) | Home Agent Addresses (16 each) | options``.
    """

    home_agents: tuple[IPv6Address, ...] = ()
    options: tuple[MobilityOption, ...] = ()


@dataclass(frozen=True, slots=True)
class UnknownMobilityMessage:
    """An MH type this node does not implement (≥ 8 except 12): kept so the receiver can send
    BE 2."""

    mh_type: int
    data: bytes


MobilityMessage = (
    BindingRefreshRequest
    | HomeTestInit
    | CareofTestInit
    | HomeTest
    | CareofTest
    | BindingUpdate
    | BindingAck
    | BindingError
    | HomeAgentSwitch
    | UnknownMobilityMessage
)


# ---------------------------------------------------------------------------------------------
# Codec (RFC 6275 §6.1). Layout of every message:
#   Payload Proto(8) | Header Len(8) | MH Type(8) | Reserved(8) | Checksum(16) | data ...
# total length = (Header Len + 1) * 8 octets.
# ---------------------------------------------------------------------------------------------

MH_HEADER = Struct("!BBBBH")
"""payload proto, header len, MH type, reserved, checksum."""

MIN_HEADER_LEN: dict[int, int] = {
    MHType.BRR: 0,
    MHType.HOTI: 1,
    MHType.COTI: 1,
    MHType.HOT: 2,
    MHType.COT: 2,
    MHType.BU: 1,
    MHType.BA: 1,
    MHType.BE: 2,
    MHType.HOME_AGENT_SWITCH: 0,  # RFC 5142 §4: 8 octets with no address and no option
}
"""§9.2 and Linux ``mip6_mh_filter``: the smallest legal Header Len per known type (§1.1)."""

_FIXED_LENGTH: dict[int, int] = {0: 2, 1: 10, 2: 10, 3: 18, 4: 18, 5: 6, 6: 6, 7: 18, 12: 2}
"""Octets of type-specific fixed data after the 6-octet common header (for the Home Agent
Switch, the part before its addresses: :func:`fixed_length_of`)."""

MAX_HOME_AGENT_SWITCH_ADDRESSES = 127
"""RFC 5142 §4: the count is 8 bits, but the MH is at most 2048 octets: (2048 − 8) / 16."""

MAX_MH_LENGTH = 256 * 8

_BU = Struct("!HHH")  # sequence, flags, lifetime
_BA = Struct("!BBHH")  # status, flags, sequence, lifetime
_TEST = Struct("!H8s8s")  # nonce index, cookie, keygen token
_BE = Struct("!BB16s")  # status, reserved, home address
_TEST_INIT = Struct("!H8s")  # reserved, cookie

_BU_FLAGS: dict[int, BUFlags] = {}
_BA_FLAGS: dict[int, BAFlags] = {}


def _bu_flags(value: int) -> BUFlags:
    """IntFlag construction is slow; received flag words repeat, so memoise them."""
    flags = _BU_FLAGS.get(value)
    if flags is None:
        flags = _BU_FLAGS[value] = BUFlags(value)
    return flags


def _ba_flags(value: int) -> BAFlags:
    flags = _BA_FLAGS.get(value)
    if flags is None:
        flags = _BA_FLAGS[value] = BAFlags(value)
    return flags


AuthenticatorFunction = Callable[[bytes], bytes]
"""Given the BAD "MH Data" (§6.2.7) returns the 12-octet authenticator."""


def _fixed_part(msg: MobilityMessage) -> tuple[int, bytes]:
    if isinstance(msg, BindingUpdate):
        return MHType.BU, _BU.pack(msg.sequence, int(msg.flags), msg.lifetime)
    if isinstance(msg, BindingAck):
        return MHType.BA, _BA.pack(msg.status, int(msg.flags), msg.sequence, msg.lifetime)
    if isinstance(msg, HomeTest | CareofTest):
        if len(msg.cookie) != 8 or len(msg.keygen_token) != 8:
            raise MalformedPacket("HoT/CoT cookie and keygen token must be 8 octets each")
        mh_type = MHType.HOT if isinstance(msg, HomeTest) else MHType.COT
        return mh_type, _TEST.pack(msg.nonce_index, msg.cookie, msg.keygen_token)
    if isinstance(msg, HomeTestInit | CareofTestInit):
        if len(msg.cookie) != 8:
            raise MalformedPacket("HoTI/CoTI cookie must be 8 octets")
        mh_type = MHType.HOTI if isinstance(msg, HomeTestInit) else MHType.COTI
        return mh_type, _TEST_INIT.pack(0, msg.cookie)
    if isinstance(msg, BindingError):
        return MHType.BE, _BE.pack(msg.status, 0, msg.home_address.packed)
    if isinstance(msg, BindingRefreshRequest):
        return MHType.BRR, b"\x00\x00"
    if isinstance(msg, HomeAgentSwitch):
        count = len(msg.home_agents)
        if count > MAX_HOME_AGENT_SWITCH_ADDRESSES:
            raise MalformedPacket(f"{count} home agent addresses do not fit a mobility header")
        addresses = b"".join(IPv6Address(address).packed for address in msg.home_agents)
        return MHType.HOME_AGENT_SWITCH, bytes((count, 0)) + addresses
    raise MalformedPacket(f"not a mobility message: {msg!r}")


def build_mh_unchecksummed(msg: MobilityMessage) -> bytearray:
    """The MH bytes of ``msg`` with the checksum field zero (Payload Proto = 59, §6.1.1).

    Options are laid out with their ``8n+k`` alignment from the MH start, padding inserted
    before each option as needed and at the end (never after a final BAD option).
    """
    try:
        if isinstance(msg, UnknownMobilityMessage):
            body = bytes(msg.data)
            total = max(8, 6 + len(body) + (-(6 + len(body)) % 8))
            out = bytearray(MH_HEADER.pack(IPPROTO_NONE, total // 8 - 1, msg.mh_type, 0, 0))
            out += body + bytes(total - 6 - len(body))
        else:
            mh_type, fixed = _fixed_part(msg)
            start = 6 + len(fixed)
            opts = encode_options(msg.options, start)
            total = start + len(opts)
            if total > MAX_MH_LENGTH:
                raise MalformedPacket(f"mobility header of {total} octets exceeds 2048")
            out = bytearray(MH_HEADER.pack(IPPROTO_NONE, total // 8 - 1, mh_type, 0, 0))
            out += fixed
            out += opts
    except MalformedPacket:
        raise
    except (struct.error, ValueError, OverflowError, TypeError, AttributeError) as exc:
        raise MalformedPacket(f"cannot encode {msg!r}: {exc}") from exc
    if len(out) > MAX_MH_LENGTH:
        raise MalformedPacket(f"mobility header of {len(out)} octets exceeds 2048")
    return out


def finalize_mh(mh: bytes | bytearray, src: IPv6Address, dst: IPv6Address) -> bytes:
    """Write the §6.1.1 checksum into ``mh`` (pseudo-header src/dst as for :func:`build_mh`);
    it covers the MH as its Header Len defines it (:func:`~nfq_mip6.wire.checksum.mh_checksum`).
    """
    out = bytearray(mh)
    out[4:6] = mh_checksum(src, dst, out).to_bytes(2, "big")
    return bytes(out)


def authenticator_input(mh: bytes | bytearray) -> bytes:
    """The BAD "MH Data" (RFC 6275 §6.2.7, §5.2.6) of an MH whose last option is the BAD.

    That is the MH from the Payload Proto octet up to but excluding the 12-octet authenticator,
    with the checksum field as zero; the BAD's own type and length octets are included. The
    authenticator is then ``First(96, HMAC_SHA1(Kbm, care-of address | correspondent | this))``.

    Works on a received MH (check ``authorization_data_misplaced`` is False first: then the BAD
    occupies the last 14 octets) as well as on a built one.
    """
    if len(mh) < 8 + 14 or bytes(mh[-14:-12]) != b"\x05\x0c":
        raise MalformedPacket("the last 14 octets of the MH are not a Binding Authorization Data")
    return bytes(mh[:4]) + b"\x00\x00" + bytes(mh[6 : len(mh) - AUTHENTICATOR_LENGTH])


def build_mh(
    msg: MobilityMessage,
    src: IPv6Address,
    dst: IPv6Address,
    authenticator: AuthenticatorFunction | None = None,
) -> bytes:
    """Encode ``msg`` as a complete Mobility Header with its checksum.

    ``src``/``dst`` are the **pseudo-header** addresses (§6.1.1): pass the home address as
    ``src`` when the packet will carry a Home Address option, and the RH2 home address as
    ``dst`` when it will carry a type 2 routing header.

    ``authenticator`` (BU to a CN, BA from a CN, §6.2.7): a function from the MH Data to the
    12-octet authenticator. The builder then ensures a BAD option is last (it fills a BAD that
    is already the last option, e.g. with a 12-zero-octet placeholder, or appends one), hands
    :func:`authenticator_input` of the encoded MH to the function, writes the result into the
    BAD and only then computes the checksum.
    """
    if authenticator is not None:
        if isinstance(msg, UnknownMobilityMessage):
            raise MalformedPacket("cannot authenticate an unknown mobility message")
        options = msg.options
        if not options or not isinstance(options[-1], BindingAuthorizationData):
            options = (*options, BindingAuthorizationData(bytes(AUTHENTICATOR_LENGTH)))
            msg = _with_options(msg, options)
        mh = build_mh_unchecksummed(msg)
        value = authenticator(authenticator_input(mh))
        if len(value) != AUTHENTICATOR_LENGTH:
            raise MalformedPacket("the authenticator function must return 12 octets")
        mh[-AUTHENTICATOR_LENGTH:] = value
    else:
        mh = build_mh_unchecksummed(msg)
    return finalize_mh(mh, src, dst)


def mh_data_for_authenticator(msg: BindingUpdate | BindingAck) -> bytes:
    """The BAD "MH Data" (§6.2.7) this codec will authenticate when it encodes ``msg``.

    ``msg`` may end with a BAD (its authenticator value is irrelevant) or carry none (one is
    appended, as :func:`build_mh` does). Fits ``nfq_mip6.mobility.rr.MhDataEncoder``.
    """
    options = msg.options
    if not options or not isinstance(options[-1], BindingAuthorizationData):
        msg = replace(msg, options=(*options, BindingAuthorizationData(bytes(12))))
    return authenticator_input(build_mh_unchecksummed(msg))


def _with_options(msg: MobilityMessage, options: tuple[MobilityOption, ...]) -> MobilityMessage:
    return replace(msg, options=options)  # type: ignore[arg-type]


def verify_mh_checksum(mh: bytes | bytearray, src: IPv6Address, dst: IPv6Address) -> bool:
    """True when the received MH's checksum is right (pseudo-header addresses as in §6.1.1).
    It covers the MH as its Header Len defines it; octets after it are not part of it."""
    if len(mh) < 6 or mh_length_of(mh) > len(mh):
        return False
    return pseudo_header_checksum(src, dst, IPPROTO_MH, mh[: mh_length_of(mh)]) == 0


def compute_mh_checksum(mh: bytes | bytearray, src: IPv6Address, dst: IPv6Address) -> int:
    """The checksum ``mh`` should carry (its own checksum field is ignored)."""
    return mh_checksum(src, dst, mh)


def parse_mh(buf: bytes | bytearray | memoryview) -> MobilityMessage:
    """Decode one Mobility Header (exactly ``(Header Len + 1) * 8`` octets).

    Structure only: the checksum, Payload Proto and minimum Header Len are the receiver's
    §9.2 checks (:mod:`nfq_mip6.wire.validate`). Reserved fields are ignored. MH types ≥ 8 give
    :class:`UnknownMobilityMessage`. Raises :class:`MalformedPacket` on anything else.
    """
    if not isinstance(buf, bytes):
        buf = bytes(buf)
    size = len(buf)
    if size < 8:
        raise MalformedPacket(f"mobility header of {size} octets is shorter than 8")
    header_len = buf[1]
    mh_type = buf[2]
    if (header_len + 1) * 8 != size:
        raise MalformedPacket(f"Header Len {header_len} does not match {size} octets")
    fixed = _FIXED_LENGTH.get(mh_type)
    if fixed is None:
        return UnknownMobilityMessage(mh_type, buf[6:])
    if mh_type == 12:
        fixed += 16 * buf[6]  # RFC 5142 §4: # of Addresses
    start = 6 + fixed
    if start > size:
        raise MalformedPacket(f"MH type {mh_type} needs {start} octets, got {size}")
    options, misplaced = decode_options(buf, start, size)
    if mh_type == 5:
        sequence, flags, lifetime = _BU.unpack_from(buf, 6)
        return BindingUpdate(sequence, _bu_flags(flags), lifetime, options, misplaced)
    if mh_type == 6:
        status, ba_flags, sequence, lifetime = _BA.unpack_from(buf, 6)
        return BindingAck(status, _ba_flags(ba_flags), sequence, lifetime, options, misplaced)
    if mh_type == 0:
        return BindingRefreshRequest(options)
    if mh_type in (1, 2):
        cookie = buf[8:16]
        if mh_type == 1:
            return HomeTestInit(cookie, options)
        return CareofTestInit(cookie, options)
    if mh_type == 12:
        home_agents = tuple(
            IPv6Address(buf[offset : offset + 16]) for offset in range(8, start, 16)
        )
        return HomeAgentSwitch(home_agents, options)
    if mh_type in (3, 4):
        nonce_index, cookie, token = _TEST.unpack_from(buf, 6)
        if mh_type == 3:
            return HomeTest(nonce_index, cookie, token, options)
        return CareofTest(nonce_index, cookie, token, options)
    status, _reserved, home = _BE.unpack_from(buf, 6)
    return BindingError(status, IPv6Address(home), options)


def fixed_length_of(mh: bytes | bytearray) -> int | None:
    """Octets of type-specific data before the options of the MH ``mh`` (its first 7 octets
    suffice); ``None`` for a type this codec does not know."""
    fixed = _FIXED_LENGTH.get(mh[2])
    if fixed is not None and mh[2] == MHType.HOME_AGENT_SWITCH:
        fixed += 16 * mh[6]
    return fixed


def mh_type_of(msg: MobilityMessage) -> int:
    """The MH Type value ``msg`` is encoded with."""
    if isinstance(msg, UnknownMobilityMessage):
        return msg.mh_type
    return _fixed_part(msg)[0]

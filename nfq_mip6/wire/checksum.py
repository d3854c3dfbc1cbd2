"""Internet checksum (RFC 1071) and the IPv6 upper-layer pseudo-header (RFC 8200 §8.1).

The Mobility Header checksum (RFC 6275 §6.1.1) is this pseudo-header checksum with next header
135, the **home address from the Home Address option** as source when one is present, and the
**final destination** (the address in a type 2 routing header) as destination.
"""

from __future__ import annotations

from ipaddress import IPv6Address

from nfq_mip6.constants import IPPROTO_ICMPV6 as IPPROTO_ICMPV6
from nfq_mip6.constants import IPPROTO_MH as IPPROTO_MH


def ones_complement_sum(data: bytes | bytearray | memoryview) -> int:
    """16-bit one's complement sum of ``data`` (odd length: padded with one zero octet).

    Uses 2**16 ≡ 1 (mod 0xFFFF): the end-around-carry sum of all 16-bit words equals the whole
    buffer read as one big integer modulo 0xFFFF, except that a non-zero buffer never sums to
    0 (it sums to 0xFFFF, "negative zero"). One big-integer operation instead of a Python loop.
    """
    raw = data if isinstance(data, bytes) else bytes(data)
    if len(raw) & 1:
        raw += b"\x00"
    value = int.from_bytes(raw, "big")
    folded = value % 0xFFFF
    if folded == 0 and value != 0:
        return 0xFFFF
    return folded


def internet_checksum(data: bytes | bytearray | memoryview) -> int:
    """RFC 1071 checksum: the one's complement of the one's complement sum."""
    return ~ones_complement_sum(data) & 0xFFFF


def pseudo_header(src: IPv6Address, dst: IPv6Address, next_header: int, length: int) -> bytes:
    """RFC 8200 §8.1: src(16) dst(16) upper-layer length(32) zero(24) next header(8)."""
    return (
        src.packed
        + dst.packed
        + length.to_bytes(4, "big")
        + b"\x00\x00\x00"
        + bytes((next_header & 0xFF,))
    )


def pseudo_header_checksum(
    src: IPv6Address, dst: IPv6Address, next_header: int, payload: bytes | bytearray | memoryview
) -> int:
    """Checksum of ``payload`` (its checksum field already zeroed) under the IPv6 pseudo-header.

    Running it over a payload whose checksum field holds the transmitted value yields 0 when
    that value is correct (see :func:`verify_pseudo_header_checksum`).
    """
    body = bytes(payload)
    return internet_checksum(pseudo_header(src, dst, next_header, len(body)) + body)


def verify_pseudo_header_checksum(
    src: IPv6Address, dst: IPv6Address, next_header: int, payload: bytes | bytearray | memoryview
) -> bool:
    """True when ``payload`` (checksum field as received) carries a correct checksum."""
    return pseudo_header_checksum(src, dst, next_header, payload) == 0


def mh_length_of(mh: bytes | bytearray | memoryview) -> int:
    """RFC 6275 §6.1.1: the length of the Mobility Header starting at ``mh[0]`` as its Header
    Len field defines it, ``(Header Len + 1) × 8`` octets; anything after it (a piggybacked
    payload) is not part of the MH and not covered by its checksum."""
    return (mh[1] + 1) * 8


def mh_checksum(
    home_or_source: IPv6Address, final_destination: IPv6Address, mh: bytes | bytearray
) -> int:
    """RFC 6275 §6.1.1: MH checksum, computed with the checksum field (octets 4–5) as zero,
    over the Mobility Header as its Header Len defines it (octets after it are left out).

    ``home_or_source`` is the home address from the HAO when the packet carries one, else the
    IPv6 source; ``final_destination`` is the RH2 home address when there is an RH2, else the
    IPv6 destination. The pseudo-header next header is 135 (RFC 3775's "2" is an erratum).
    """
    end = min(len(mh), mh_length_of(mh)) if len(mh) >= 2 else len(mh)
    zeroed = bytes(mh[:4]) + b"\x00\x00" + bytes(mh[6:end])
    return pseudo_header_checksum(home_or_source, final_destination, IPPROTO_MH, zeroed)

"""The codec's single error type.

Every parser in :mod:`nfq_mip6.wire` raises :class:`MalformedPacket` (and nothing else) on bad
input, so adapters can catch exactly this, drop the packet and count it. Builders raise it too
when asked to encode a value that does not fit its field.
"""

from __future__ import annotations

from nfq_mip6.errors import MalformedInput


class MalformedPacket(MalformedInput):
    """Bytes that cannot be decoded (or a value that cannot be encoded) by the wire codec."""

"""Return routability cryptography (RFC 6275 §5.2.3–§5.2.6) with hashlib/hmac only.

* keygen tokens: ``First(64, HMAC_SHA1(Kcn, address | nonce | 0 or 1))`` (§5.2.5);
* ``Kbm = SHA1(home token | care-of token)``, or ``SHA1(home token)`` for a deletion;
* the Binding Authorization Data authenticator
  ``First(96, HMAC_SHA1(Kbm, care-of address | correspondent | MH Data))`` (§5.2.6), where MH
  Data is the Mobility Header up to, not including, the authenticator, with checksum = 0.

The authenticator covers the exact MH octets. A receiver verifies it over the bytes it
received (:func:`verify_authenticator`). A sender needs the octets its encoder will put on the
wire: :func:`mh_data_for_authenticator` builds them with the canonical option layout
(docs/protocol-notes.md §4: minimal Pad1/PadN before each option to meet its ``xn+y``
alignment, the BAD last with no trailing padding). Roles accept an ``encode_mh`` callable so
that a runtime whose codec lays options out differently can hand in its own encoder.

The module also keeps the correspondent node's nonce table (:class:`NonceTable`, §5.2.3).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections import OrderedDict
from collections.abc import Callable
from ipaddress import IPv6Address

from nfq_mip6.constants import (
    AUTHENTICATOR_LENGTH,
    KCN_LENGTH,
    MAX_NONCE_LIFETIME,
    NONCE_LENGTH,
)
from nfq_mip6.wire.mh import (
    IPPROTO_NONE,
    BindingAck,
    BindingUpdate,
    MHType,
)
from nfq_mip6.wire.options import (
    AlternateCareofAddress,
    BindingAuthorizationData,
    BindingRefreshAdvice,
    MobilityOption,
    NonceIndices,
)

RandomBytes = Callable[[int], bytes]
"""Source of randomness, injected so tests are deterministic (``os.urandom`` in production)."""

MhDataEncoder = Callable[[BindingUpdate | BindingAck], bytes]
"""Returns a BU's or BA's MH Data for the authenticator: the MH octets up to the authenticator,
checksum zero. The message passed in carries a BAD whose authenticator is 12 zero octets."""

HOME_TOKEN_SUFFIX = 0
CAREOF_TOKEN_SUFFIX = 1


def keygen_token(kcn: bytes, address: IPv6Address, nonce: bytes, which: int) -> bytes:
    """§5.2.5: ``First(64, HMAC_SHA1(Kcn, address | nonce | which))``; ``which`` 0 = home."""
    data = address.packed + nonce + bytes((which,))
    return hmac.new(kcn, data, hashlib.sha1).digest()[:8]


def home_keygen_token(kcn: bytes, home_address: IPv6Address, nonce: bytes) -> bytes:
    return keygen_token(kcn, home_address, nonce, HOME_TOKEN_SUFFIX)


def careof_keygen_token(kcn: bytes, care_of_address: IPv6Address, nonce: bytes) -> bytes:
    return keygen_token(kcn, care_of_address, nonce, CAREOF_TOKEN_SUFFIX)


def binding_management_key(home_token: bytes, careof_token: bytes | None) -> bytes:
    """§5.2.5: ``Kbm = SHA1(home token | care-of token)``; deletion: ``SHA1(home token)``."""
    return hashlib.sha1(home_token + (careof_token or b"")).digest()


def authenticator(
    kbm: bytes, care_of_address: IPv6Address, correspondent: IPv6Address, mh_data: bytes
) -> bytes:
    """§5.2.6: ``First(96, HMAC_SHA1(Kbm, CoA | correspondent | MH Data))``.

    ``mh_data`` is the MH from the Payload Proto octet up to (excluding) the authenticator; its
    checksum field (octets 4–5) is treated as zero whatever it holds.
    """
    data = bytearray(mh_data)
    if len(data) >= 6:
        data[4:6] = b"\x00\x00"
    mac = hmac.new(kbm, care_of_address.packed + correspondent.packed + bytes(data), hashlib.sha1)
    return mac.digest()[:AUTHENTICATOR_LENGTH]


def received_mh_data(mh_bytes: bytes) -> bytes | None:
    """The MH Data of a received message whose last option must be the BAD (§6.2.7).

    Returns ``None`` unless the message ends with a 14-octet BAD option (type 5, length 12)
    with no trailing padding — such a BU is silently discarded (§9.5.1, TAHI CN-2-3-1-2).
    """
    if len(mh_bytes) < 8 + 14 or mh_bytes[-14] != 5 or mh_bytes[-13] != AUTHENTICATOR_LENGTH:
        return None
    return mh_bytes[:-AUTHENTICATOR_LENGTH]


def verify_authenticator(
    kbm: bytes, care_of_address: IPv6Address, correspondent: IPv6Address, mh_bytes: bytes
) -> bool:
    """Check the BAD authenticator of a received BU or BA over its exact octets (§5.2.6)."""
    mh_data = received_mh_data(mh_bytes)
    if mh_data is None:
        return False
    expected = authenticator(kbm, care_of_address, correspondent, mh_data)
    return hmac.compare_digest(expected, mh_bytes[-AUTHENTICATOR_LENGTH:])


# --------------------------------------------------------------------------------------------
# Canonical MH encoding for the authenticator (RFC 6275 §6.2, docs/protocol-notes.md §4)
# --------------------------------------------------------------------------------------------

_ALIGNMENT: dict[type, tuple[int, int]] = {
    BindingRefreshAdvice: (2, 0),  # §6.2.4: 2n
    AlternateCareofAddress: (8, 6),  # §6.2.5: 8n+6
    NonceIndices: (2, 0),  # §6.2.6: 2n
    BindingAuthorizationData: (8, 2),  # §6.2.7: 8n+2
}


def _padding(length: int) -> bytes:
    """§6.2.2/§6.2.3: Pad1 for one octet, PadN (type 1, len n−2, zeros) otherwise."""
    if length == 0:
        return b""
    if length == 1:
        return b"\x00"
    return bytes((1, length - 2)) + bytes(length - 2)


def _encode_option(option: MobilityOption) -> bytes:
    if isinstance(option, BindingRefreshAdvice):
        return struct.pack("!BBH", 2, 2, option.interval)
    if isinstance(option, AlternateCareofAddress):
        return bytes((3, 16)) + option.address.packed
    if isinstance(option, NonceIndices):
        return struct.pack("!BBHH", 4, 4, option.home_nonce_index, option.careof_nonce_index)
    if isinstance(option, BindingAuthorizationData):
        return bytes((5, len(option.authenticator))) + option.authenticator
    raise TypeError(f"cannot encode {type(option).__name__} for the authenticator")


def encode_bu_or_ba(message: BindingUpdate | BindingAck, checksum: int = 0) -> bytes:
    """Encode a BU or BA (known options only) in the canonical layout (protocol-notes §4)."""
    if isinstance(message, BindingUpdate):
        fixed = struct.pack(
            "!BBBBHHHH",
            IPPROTO_NONE,
            0,
            MHType.BU,
            0,
            checksum,
            message.sequence,
            int(message.flags),
            message.lifetime,
        )
    else:
        fixed = struct.pack(
            "!BBBBHBBHH",
            IPPROTO_NONE,
            0,
            MHType.BA,
            0,
            checksum,
            message.status,
            int(message.flags),
            message.sequence,
            message.lifetime,
        )
    out = bytearray(fixed)
    for option in message.options:
        modulus, remainder = _ALIGNMENT.get(type(option), (1, 0))
        out += _padding((remainder - len(out)) % modulus)
        out += _encode_option(option)
    out += _padding(-len(out) % 8)
    out[1] = len(out) // 8 - 1
    return bytes(out)


def mh_data_for_authenticator(message: BindingUpdate | BindingAck) -> bytes:
    """The MH Data (§5.2.6) of ``message``, whose last option must be a BAD (any content)."""
    if not message.options or not isinstance(message.options[-1], BindingAuthorizationData):
        raise ValueError("the Binding Authorization Data option must be the last option")
    encoded = encode_bu_or_ba(message)
    return encoded[:-AUTHENTICATOR_LENGTH]


def with_authenticator(
    message: BindingUpdate | BindingAck,
    kbm: bytes,
    care_of_address: IPv6Address,
    correspondent: IPv6Address,
    encode_mh_data: MhDataEncoder = mh_data_for_authenticator,
) -> BindingUpdate | BindingAck:
    """Return ``message`` with a BAD option (appended last) holding the right authenticator."""
    placeholder = BindingAuthorizationData(bytes(AUTHENTICATOR_LENGTH))
    options = (*message.options, placeholder)
    if isinstance(message, BindingUpdate):
        draft: BindingUpdate | BindingAck = BindingUpdate(
            message.sequence, message.flags, message.lifetime, options
        )
    else:
        draft = BindingAck(
            message.status, message.flags, message.sequence, message.lifetime, options
        )
    auth = authenticator(kbm, care_of_address, correspondent, encode_mh_data(draft))
    final_options = (*message.options, BindingAuthorizationData(auth))
    if isinstance(message, BindingUpdate):
        return BindingUpdate(message.sequence, message.flags, message.lifetime, final_options)
    return BindingAck(
        message.status, message.flags, message.sequence, message.lifetime, final_options
    )


# --------------------------------------------------------------------------------------------
# Correspondent node nonces (§5.2.3, §5.2.7)
# --------------------------------------------------------------------------------------------


class NonceTable:
    """The CN's circulating nonces, each with a 16-bit index (§5.2.3).

    A new nonce is generated every ``rotation_interval`` seconds (on demand, when a HoTI/CoTI
    needs one). A nonce is accepted for ``MAX_NONCE_LIFETIME`` (240 s) after it was generated
    (§5.2.7, §12) — its first use is never earlier — and then forgotten.
    """

    __slots__ = ("_current_index", "_nonces", "_random_bytes", "lifetime", "rotation_interval")

    def __init__(
        self,
        random_bytes: RandomBytes,
        *,
        rotation_interval: float = 30.0,
        lifetime: float = MAX_NONCE_LIFETIME,
        first_index: int = 0,
    ) -> None:
        self._random_bytes = random_bytes
        self.rotation_interval = rotation_interval
        self.lifetime = lifetime
        self._nonces: OrderedDict[int, tuple[bytes, float]] = OrderedDict()
        self._current_index = (first_index - 1) & 0xFFFF

    def _purge(self, now: float) -> None:
        while self._nonces:
            index, (_, created) = next(iter(self._nonces.items()))
            if now - created < self.lifetime:
                break
            del self._nonces[index]

    def current(self, now: float) -> tuple[int, bytes]:
        """The nonce to hand out now (index, nonce), generating a fresh one when due."""
        self._purge(now)
        latest = self._nonces.get(self._current_index)
        if latest is None or now - latest[1] >= self.rotation_interval:
            self._current_index = (self._current_index + 1) & 0xFFFF
            nonce = self._random_bytes(NONCE_LENGTH)
            self._nonces.pop(self._current_index, None)
            self._nonces[self._current_index] = (nonce, now)
            return self._current_index, nonce
        return self._current_index, latest[0]

    def lookup(self, index: int, now: float) -> bytes | None:
        """The nonce with this index if it is still valid at ``now``, else ``None``."""
        self._purge(now)
        found = self._nonces.get(index)
        if found is None or now - found[1] >= self.lifetime:
            return None
        return found[0]

    def next_expiry(self) -> float | None:
        if not self._nonces:
            return None
        _, created = next(iter(self._nonces.values()))
        return created + self.lifetime

    def invalidate_all(self) -> None:
        """Forget every nonce (e.g. to defeat replays after route optimization is disabled)."""
        self._nonces.clear()


def new_node_key(random_bytes: RandomBytes) -> bytes:
    """§5.2.3: Kcn, 20 random octets."""
    key = random_bytes(KCN_LENGTH)
    if len(key) != KCN_LENGTH:
        raise ValueError(f"random_bytes returned {len(key)} octets, need {KCN_LENGTH}")
    return key

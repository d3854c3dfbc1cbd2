"""Return routability crypto (RFC 6275 §5.2.5–§5.2.6) against tests/vectors/mh_vectors.json."""

from __future__ import annotations

import pytest

from nfq_mip6.mobility.rr import (
    NonceTable,
    binding_management_key,
    careof_keygen_token,
    encode_bu_or_ba,
    home_keygen_token,
    mh_data_for_authenticator,
    verify_authenticator,
    with_authenticator,
)
from nfq_mip6.wire import mh as wire_mh
from nfq_mip6.wire.mh import BAFlags, BindingAck, BindingUpdate, BUFlags
from nfq_mip6.wire.options import (
    AlternateCareofAddress,
    BindingAuthorizationData,
    BindingRefreshAdvice,
    NonceIndices,
)
from tests.support.factories import counter_bytes
from tests.support.vectors import CN, COA, HOA

KCN = bytes(range(20))
HOME_NONCE = b"\x11" * 8
CAREOF_NONCE = b"\x22" * 8


def test_home_keygen_token_vector() -> None:
    assert home_keygen_token(KCN, HOA, HOME_NONCE).hex() == "296f58748bb094c3"


def test_careof_keygen_token_vector() -> None:
    assert careof_keygen_token(KCN, COA, CAREOF_NONCE).hex() == "d12857cc9caa965c"


def test_kbm_vector() -> None:
    kbm = binding_management_key(
        bytes.fromhex("296f58748bb094c3"), bytes.fromhex("d12857cc9caa965c")
    )
    assert kbm.hex() == "a587081709b15781c5921931341443b35ecefba7"


def test_kbm_for_deletion_is_sha1_of_home_token() -> None:
    kbm = binding_management_key(bytes.fromhex("296f58748bb094c3"), None)
    assert kbm.hex() == "be540d9521c4a37eb64cff300996c74bcb6e2cf8"


def _cn_bu() -> BindingUpdate:
    kbm = bytes.fromhex("a587081709b15781c5921931341443b35ecefba7")
    bu = BindingUpdate(7, BUFlags.A, 105, (NonceIndices(3, 4),))
    signed = with_authenticator(bu, kbm, COA, CN)
    assert isinstance(signed, BindingUpdate)
    return signed


def test_authenticator_vector_bu_to_cn() -> None:
    encoded = encode_bu_or_ba(_cn_bu())
    assert encoded.hex() == ("3b0305000000000780000069040400030004050c158994d2c435abdf457d6691")


def test_verify_authenticator_ignores_checksum_field() -> None:
    kbm = bytes.fromhex("a587081709b15781c5921931341443b35ecefba7")
    wire = encode_bu_or_ba(_cn_bu(), checksum=0x12C5)
    assert verify_authenticator(kbm, COA, CN, wire)
    tampered = bytearray(wire)
    tampered[7] ^= 1  # sequence number
    assert not verify_authenticator(kbm, COA, CN, bytes(tampered))


def test_verify_authenticator_rejects_bad_not_last() -> None:
    kbm = bytes.fromhex("a587081709b15781c5921931341443b35ecefba7")
    wire = encode_bu_or_ba(_cn_bu()) + bytes([1, 6]) + bytes(6)  # trailing PadN
    assert not verify_authenticator(kbm, COA, CN, wire)


def test_home_bu_layout_vector() -> None:
    bu = BindingUpdate(1, BUFlags.A | BUFlags.H, 10, (AlternateCareofAddress(COA),))
    assert encode_bu_or_ba(bu).hex() == (
        "3b03050000000001c000000a0100031020010db8000f00000000000000000001"
    )


def test_mh_data_stops_before_authenticator() -> None:
    data = mh_data_for_authenticator(_cn_bu())
    assert data.hex().endswith("050c") and len(data) == 20


def test_nonce_table_rotation_and_lifetime() -> None:
    table = NonceTable(counter_bytes(1), rotation_interval=30)
    index0, nonce0 = table.current(0)
    assert table.current(29) == (index0, nonce0)
    index1, nonce1 = table.current(30)
    assert index1 == (index0 + 1) & 0xFFFF and nonce1 != nonce0
    assert table.lookup(index0, 239.9) == nonce0
    assert table.lookup(index0, 240) is None  # MAX_NONCE_LIFETIME
    assert table.lookup(index1, 240) == nonce1


def test_nonce_indices_wrap_16_bits() -> None:
    table = NonceTable(lambda n: bytes(n), rotation_interval=1, first_index=0xFFFF)
    assert table.current(0)[0] == 0xFFFF
    assert table.current(1)[0] == 0


_BAD = BindingAuthorizationData(bytes(12))


@pytest.mark.parametrize(
    "message",
    [
        BindingUpdate(7, BUFlags.A, 105, (NonceIndices(3, 4), _BAD)),
        BindingUpdate(7, BUFlags.A, 105, (AlternateCareofAddress(COA), NonceIndices(3, 4), _BAD)),
        BindingUpdate(9, BUFlags.A, 0, (BindingRefreshAdvice(2), NonceIndices(3, 4), _BAD)),
        BindingAck(0, BAFlags.NONE, 7, 105, (_BAD,)),
        BindingAck(0, BAFlags.NONE, 7, 105, (BindingRefreshAdvice(3), _BAD)),
    ],
)
def test_mh_data_matches_the_wire_codec(message: BindingUpdate | BindingAck) -> None:
    """The core signs exactly the octets the codec puts on the wire (same option layout)."""
    assert mh_data_for_authenticator(message) == wire_mh.mh_data_for_authenticator(message)

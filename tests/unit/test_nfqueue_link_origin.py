"""What the NFQUEUE adapter tells a runtime about a queued packet's link (RFC 6275 §10.3.2:
the HA answers a BU from the home link to the sender's link-layer address)."""

from __future__ import annotations

from dataclasses import dataclass

from nfq_mip6.io.nfqueue import LinkOrigin, _link_origin, current_link_origin


@dataclass
class FakePacket:
    indev: int
    hw: bytes | None

    def get_hw(self) -> bytes | None:
        return self.hw


def test_ethernet_source_is_the_first_six_of_the_eight_padded_octets() -> None:
    mac = bytes.fromhex("02000000000a")
    assert _link_origin(FakePacket(3, mac + b"\0\0")) == LinkOrigin(3, mac)


def test_no_or_empty_hardware_address_gives_none() -> None:
    assert _link_origin(FakePacket(0, None)) == LinkOrigin(0, None)
    assert _link_origin(FakePacket(2, bytes(8))) == LinkOrigin(2, None)
    assert _link_origin(FakePacket(2, b"\x01\x02")) == LinkOrigin(2, None)


def test_a_packet_object_without_the_fields_gives_no_origin() -> None:
    assert _link_origin(object()) is None


def test_no_origin_outside_a_handler() -> None:
    assert current_link_origin() is None

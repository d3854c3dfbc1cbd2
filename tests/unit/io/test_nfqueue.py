"""What the NFQUEUE adapter tells a runtime about a queued packet: its payload, input
interface and link-layer source (RFC 6275 §10.3.2: the HA answers a BU from the home link to
the sender's link-layer address)."""

from __future__ import annotations

from dataclasses import dataclass

from nfq_mip6.io.nfqueue import QueuedPacket, Verdict, VerdictKind, queued_packet

PAYLOAD = b"\x60" + bytes(39)


@dataclass
class FakePacket:
    indev: int
    hw: bytes | None

    def get_payload(self) -> bytes:
        return PAYLOAD

    def get_hw(self) -> bytes | None:
        return self.hw


class BarePacket:
    def get_payload(self) -> bytes:
        return PAYLOAD


def test_ethernet_source_is_the_first_six_of_the_eight_padded_octets() -> None:
    mac = bytes.fromhex("02000000000a")
    assert queued_packet(FakePacket(3, mac + b"\0\0")) == QueuedPacket(PAYLOAD, 3, mac)


def test_no_or_empty_hardware_address_gives_none() -> None:
    assert queued_packet(FakePacket(0, None)) == QueuedPacket(PAYLOAD, 0, None)
    assert queued_packet(FakePacket(2, bytes(8))) == QueuedPacket(PAYLOAD, 2, None)
    assert queued_packet(FakePacket(2, b"\x01\x02")) == QueuedPacket(PAYLOAD, 2, None)


def test_a_packet_object_without_the_fields_gives_only_the_payload() -> None:
    assert queued_packet(BarePacket()) == QueuedPacket(PAYLOAD)


def test_verdicts() -> None:
    assert Verdict.accept().kind is VerdictKind.ACCEPT
    assert Verdict.drop().kind is VerdictKind.DROP
    assert Verdict.rewrite(bytearray(b"x")) == Verdict(VerdictKind.REWRITE, b"x")

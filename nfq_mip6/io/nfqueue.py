"""NFQUEUE adapter (NetfilterQueue 1.1.0): the only module importing ``netfilterqueue``.

The agent loop watches :meth:`QueueAdapter.fileno` and calls :meth:`QueueAdapter.on_readable`,
which drains the socket (``run(block=False)`` reads until EAGAIN) and hands each packet to
the handler as a :class:`QueuedPacket` (payload, input interface, link-layer source). The
handler's :class:`Verdict` is applied here; an exception from the handler is logged and the
packet dropped (never left unverdicted).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

__all__ = ["QueueAdapter", "QueuedPacket", "Verdict", "VerdictKind"]

log = logging.getLogger(__name__)

# Large enough for a whole packet; NFQUEUE segments GSO packets before queueing
# (NetfilterQueue does not set F_GSO), so MTU-sized packets are the norm.
MAX_PACKET_LEN = 0xFFFF
RCVBUF_BYTES = 8 * 1024 * 1024
ETHERNET_ADDRESS_LEN = 6


class VerdictKind(IntEnum):
    """What the kernel does with a queued packet (values are the netfilter verdicts)."""

    DROP = 0  # NF_DROP
    ACCEPT = 1  # NF_ACCEPT
    REWRITE = 2  # NF_ACCEPT with a replaced payload (set_payload + accept)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to one queued packet."""

    kind: VerdictKind
    payload: bytes | None = None

    @classmethod
    def accept(cls) -> Verdict:
        return _ACCEPT

    @classmethod
    def drop(cls) -> Verdict:
        return _DROP

    @classmethod
    def rewrite(cls, new_payload: bytes) -> Verdict:
        """Accept the packet with ``new_payload`` (a whole IPv6 packet) in place of the old."""
        return cls(VerdictKind.REWRITE, bytes(new_payload))


_ACCEPT = Verdict(VerdictKind.ACCEPT)
_DROP = Verdict(VerdictKind.DROP)


@dataclass(frozen=True, slots=True)
class QueuedPacket:
    """One packet from NFQUEUE: the whole IPv6 packet, its input interface (ifindex, 0 =
    none, e.g. locally generated) and its link-layer source address (``None`` when the
    kernel gave none, e.g. OUTPUT or a non-Ethernet link)."""

    payload: bytes
    interface_index: int = 0
    link_source: bytes | None = None


def queued_packet(packet: Any) -> QueuedPacket:
    """The :class:`QueuedPacket` of a ``netfilterqueue.Packet``."""
    payload = packet.get_payload()
    try:
        index = int(packet.indev or 0)
        hw = packet.get_hw()  # PREROUTING/INPUT: the frame's source address, 8 octets padded
    except (AttributeError, TypeError, ValueError):
        return QueuedPacket(payload)
    mac = bytes(hw[:ETHERNET_ADDRESS_LEN]) if hw else None
    if mac is not None and (len(mac) != ETHERNET_ADDRESS_LEN or not any(mac)):
        mac = None
    return QueuedPacket(payload, index, mac)


class QueueAdapter:
    """Binds NFQUEUE ``queue_num`` and applies verdicts from ``handler(packet, now)``."""

    def __init__(
        self,
        queue_num: int,
        handler: Callable[[QueuedPacket, float], Verdict],
        clock: Callable[[], float],
    ) -> None:
        from netfilterqueue import NetfilterQueue

        self.queue_num = queue_num
        self._handler = handler
        self._clock = clock
        self.stats: dict[str, int] = {"accepted": 0, "dropped": 0, "rewritten": 0, "errors": 0}
        self._nfq: Any = NetfilterQueue()
        self._nfq.bind(queue_num, self._on_packet, max_len=4096)
        self._fd: int = self._nfq.get_fd()
        # NFQ_MIP6_TRACE=FILE: record (queue wait, handler time) per packet, written at close.
        self._trace_path = os.environ.get("NFQ_MIP6_TRACE")
        self._trace: list[tuple[float, float]] = []
        try:  # a burst of BUs must not overflow the default small receive buffer
            sock = socket.socket(fileno=socket.dup(self._fd))
            try:
                sock.setsockopt(socket.SOL_SOCKET, 33, RCVBUF_BYTES)  # SO_RCVBUFFORCE
            finally:
                sock.close()
        except OSError as exc:
            log.debug("could not raise the NFQUEUE receive buffer: %s", exc)

    def fileno(self) -> int:
        return self._fd

    def on_readable(self) -> None:
        """Drain every queued packet (the fd is readable)."""
        try:
            self._nfq.run(block=False)
        except OSError as exc:  # ENOBUFS is handled inside NetfilterQueue; anything else: log
            log.warning("NFQUEUE receive failed: %s", exc)

    def _on_packet(self, packet: Any) -> None:
        started = time.perf_counter()
        try:
            verdict = self._handler(queued_packet(packet), self._clock())
        except Exception:  # a bug in the runtime must not leave the packet queued forever
            log.exception("runtime failed on a queued packet; dropping it")
            self.stats["errors"] += 1
            verdict = Verdict.drop()
        if verdict.kind == VerdictKind.ACCEPT:
            packet.accept()
            self.stats["accepted"] += 1
        elif verdict.kind == VerdictKind.REWRITE and verdict.payload is not None:
            packet.set_payload(verdict.payload)
            packet.accept()
            self.stats["rewritten"] += 1
        else:
            packet.drop()
            self.stats["dropped"] += 1
        if self._trace_path is not None:
            queued = packet.get_timestamp()  # kernel time the packet was queued (0 if unknown)
            wait = time.time() - queued if queued else -1.0
            self._trace.append((wait, time.perf_counter() - started))

    def close(self) -> None:
        if self._trace_path is not None:
            with open(self._trace_path, "w") as out:
                json.dump(self._trace, out)
        try:
            self._nfq.unbind()
        except OSError as exc:
            log.debug("NFQUEUE unbind: %s", exc)

"""NFQUEUE adapter (NetfilterQueue 1.1.0): the only module importing ``netfilterqueue``.

The agent loop watches :meth:`QueueAdapter.fileno` and calls :meth:`QueueAdapter.on_readable`,
which drains the socket (``run(block=False)`` reads until EAGAIN) and hands each payload to
the handler. The handler's :class:`~nfq_mip6.runtime.base.Verdict` is applied here; an
exception from the handler is logged and the packet dropped (never left unverdicted).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nfq_mip6.runtime.base import Verdict, VerdictKind

__all__ = ["LinkOrigin", "QueueAdapter", "current_link_origin"]

log = logging.getLogger(__name__)

# Large enough for a whole packet; NFQUEUE segments GSO packets before queueing
# (NetfilterQueue does not set F_GSO), so MTU-sized packets are the norm.
MAX_PACKET_LEN = 0xFFFF
RCVBUF_BYTES = 8 * 1024 * 1024
ETHERNET_ADDRESS_LEN = 6


@dataclass(frozen=True, slots=True)
class LinkOrigin:
    """Where the packet being handled came from: its input interface (ifindex, 0 = none, e.g.
    locally generated) and its link-layer source address (``None`` when the kernel gave
    none, e.g. OUTPUT or a non-Ethernet link)."""

    interface_index: int
    hw_source: bytes | None


_current_origin: LinkOrigin | None = None


def current_link_origin() -> LinkOrigin | None:
    """The :class:`LinkOrigin` of the queued packet whose handler is running right now
    (``None`` outside a handler). The agent is single-threaded: a runtime may call this from
    ``on_queued_packet`` (e.g. the HA answering a BU from the home link on the home link,
    RFC 6275 §10.3.2) without a change to the runtime Protocol."""
    return _current_origin


def _link_origin(packet: Any) -> LinkOrigin | None:
    try:
        index = int(packet.indev or 0)
        hw = packet.get_hw()  # PREROUTING/INPUT: the frame's source address, 8 octets padded
    except (AttributeError, TypeError, ValueError):
        return None
    mac = bytes(hw[:ETHERNET_ADDRESS_LEN]) if hw else None
    if mac is not None and (len(mac) != ETHERNET_ADDRESS_LEN or not any(mac)):
        mac = None
    return LinkOrigin(index, mac)


class QueueAdapter:
    """Binds NFQUEUE ``queue_num`` and applies verdicts from ``handler(payload, now)``."""

    def __init__(
        self,
        queue_num: int,
        handler: Callable[[bytes, float], Verdict],
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
        global _current_origin
        started = time.perf_counter()
        _current_origin = _link_origin(packet)
        try:
            verdict = self._handler(packet.get_payload(), self._clock())
        except Exception:  # a bug in the runtime must not leave the packet queued forever
            log.exception("runtime failed on a queued packet; dropping it")
            self.stats["errors"] += 1
            verdict = Verdict.drop()
        finally:
            _current_origin = None
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

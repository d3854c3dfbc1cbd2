"""Neighbor Discovery on the home link for the Home Agent (RFC 6275 §10.4.1, §10.3.1).

* proxy ND answers come from the kernel (``proxy_ndp=1`` + ``ip -6 neigh add proxy``, see
  :mod:`nfq_mip6.dataplane.netlink`); this module adds the unsolicited Neighbor
  Advertisements the HA must send when it starts defending a home address (to ff02::1,
  R = 0, S = 0, O = 1, Target Link-Layer Address = the HA's MAC, hop limit 255).
* proxy DAD: Neighbor Solicitations from ``::`` to the solicited-node group of the home
  address (and of the link-local address when L = 1), with the home interface's own DAD
  settings (:class:`~nfq_mip6.mobility.dad.DadTiming`, read from ``dad_transmits`` and
  ``retrans_time_ms`` when each DAD starts: RFC 4862 defaults 1 × 1 s), listening until
  RetransTimer after the last one for an NA for that target or another node's DAD NS →
  ``duplicate``.
* group membership: the solicited-node group of each DAD target is joined before the first
  probe (RFC 4862 §5.4.2). After a DAD without a duplicate it is kept until the proxy entry
  for that target exists (:meth:`HomeLinkND.announce`, called right after the kernel's
  ``ip -6 neigh add proxy``, which joins the same group itself) and only then released, so
  the kernel's membership never drops to zero between the DAD and the proxy: no MLD "leave"
  followed by a "join" report for the same group in front of every first BA, and no moment
  in which the HA does not listen to that group. A result that never becomes a proxy (the
  binding went away meanwhile) releases the group after ``GROUP_HOLD_S``.

Packets are sent whole through an ``IPV6_HDRINCL`` socket bound to the home interface (the
source ``::`` cannot be chosen otherwise) and received on a raw ICMPv6 socket filtered to
NS/NA/RA (RAs are handed to ``on_router_advertisement``). Nothing blocks: the agent loop
calls :meth:`HomeLinkND.on_readable` and :meth:`HomeLinkND.poll`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from pathlib import Path
from typing import Final

from nfq_mip6.constants import MAX_NEIGHBOR_ADVERTISEMENT
from nfq_mip6.io.rawsock import IPV6_HDRINCL
from nfq_mip6.mobility.dad import DadTiming
from nfq_mip6.wire import (
    ALL_NODES,
    MalformedPacket,
    NAFlags,
    NeighborAdvertisement,
    NeighborSolicitation,
    RouterAdvertisement,
    build_icmpv6_packet,
    parse_icmpv6,
    solicited_node_address,
)
from nfq_mip6.wire.icmp import ICMPv6Type

__all__ = [
    "DadResult",
    "HomeLinkND",
    "read_dad_timing",
    "send_unsolicited_neighbor_advertisement",
]

log = logging.getLogger(__name__)

ICMP6_FILTER: Final = 1  # IPPROTO_ICMPV6 level
ND_ROUTER_ADVERT: Final = int(ICMPv6Type.ROUTER_ADVERTISEMENT)
ND_NEIGHBOR_SOLICIT: Final = int(ICMPv6Type.NEIGHBOR_SOLICITATION)
ND_NEIGHBOR_ADVERT: Final = int(ICMPv6Type.NEIGHBOR_ADVERTISEMENT)
UNSPECIFIED: Final = IPv6Address("::")
PROC_SYS_IPV6: Final = Path("/proc/sys/net/ipv6")
UNSOLICITED_NA_INTERVAL_S: Final = 1.0
SO_BINDTODEVICE: Final = 25
# How long a DAD target's solicited-node group stays joined after a successful DAD while the
# proxy entry that takes it over is installed (immediately here; an etcd commit first in a
# cluster).
GROUP_HOLD_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class DadResult:
    """A finished proxy DAD: ``home_address`` of the request and whether it is in use."""

    home_address: IPv6Address
    duplicate: bool


@dataclass(slots=True)
class _DadRun:
    home_address: IPv6Address
    targets: frozenset[IPv6Address]
    deadline: float
    probes: list[float] = field(default_factory=list)  # Neighbor Solicitations still to send
    joined: bool = False  # the solicited-node groups of the targets
    duplicate: bool = False


@dataclass(slots=True)
class _Announcements:
    pending: list[tuple[float, IPv6Address, IPv6Address]] = field(default_factory=list)


def _icmp6_filter(*allowed: int) -> bytes:
    """``struct icmp6_filter``: a bit set means *block* that type."""
    words = [0xFFFFFFFF] * 8
    for icmp_type in allowed:
        words[icmp_type >> 5] &= ~(1 << (icmp_type & 31))
    return struct.pack("=8I", *words)


def read_dad_timing(interface: str, proc_sys: Path = PROC_SYS_IPV6) -> DadTiming:
    """The DAD settings of ``interface`` in this network namespace (RFC 4862 §5.1:
    ``conf/<if>/dad_transmits``, ``neigh/<if>/retrans_time_ms``); the RFC defaults for a
    value that cannot be read."""
    values: list[int | None] = []
    for path in (proc_sys / "conf" / interface / "dad_transmits",
                 proc_sys / "neigh" / interface / "retrans_time_ms"):  # fmt: skip
        try:
            values.append(int(path.read_text().strip()))
        except (OSError, ValueError) as exc:
            log.warning("%s unreadable (%s): RFC 4862 default used", path, exc)
            values.append(None)
    default = DadTiming()
    transmits, retrans_ms = values
    return DadTiming.from_interface(
        default.transmits if transmits is None else transmits,
        round(1000 * default.retrans_timer) if retrans_ms is None else retrans_ms,
    )


def interface_mac(interface: str) -> bytes:
    text = Path(f"/sys/class/net/{interface}/address").read_text().strip()
    return bytes(int(part, 16) for part in text.split(":"))


class HomeLinkND:
    """Unsolicited NAs and proxy DAD on ``interface`` (open inside the HA's netns)."""

    def __init__(
        self, interface: str, *, dad_timing: Callable[[], DadTiming] | None = None
    ) -> None:
        self.interface = interface
        self.ifindex = socket.if_nametoindex(interface)
        self.mac = interface_mac(interface)
        # Read when each DAD starts: an operator (or an RA's RetransTimer) may change them.
        self.dad_timing = dad_timing or (lambda: read_dad_timing(interface))
        timing = self.dad_timing()
        log.info(
            "proxy DAD on %s: %d Neighbor Solicitation(s) %.0f ms apart, %d ms before the "
            "first BA of a home address (RFC 4862 dad_transmits, retrans_time_ms)",
            interface, timing.transmits, 1000 * timing.retrans_timer, timing.wait_ms,
        )  # fmt: skip
        self.stats = {
            "na_sent": 0,
            "dad_ns_sent": 0,
            "dad_duplicates": 0,
            "send_errors": 0,
            "dad_transmits": 0,  # of the last proxy DAD started
            "dad_wait_ms": 0,  # its whole wait: transmits × RetransTimer
        }
        self._rx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        self._rx.setsockopt(
            socket.IPPROTO_ICMPV6,
            ICMP6_FILTER,
            _icmp6_filter(ND_ROUTER_ADVERT, ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT),
        )
        self._rx.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode())
        self._rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        self._rx.setblocking(False)
        self._tx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self._tx.setsockopt(socket.IPPROTO_IPV6, IPV6_HDRINCL, 1)
        self._tx.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode())
        # Our own DAD probe must not come back as "another node's DAD".
        self._tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        self._tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.ifindex)
        self._tx.setblocking(False)
        self._dad: dict[IPv6Address, _DadRun] = {}
        self._joined: dict[IPv6Address, int] = {}
        # DAD targets whose solicited-node group is kept until their proxy entry exists
        self._held: dict[IPv6Address, float] = {}
        self._announce = _Announcements()
        # Called with (source, RouterAdvertisement) for every RA seen on the home link,
        # the HA's own (radvd's, looped back) included (§10.5.1 Home Agents List, §10.6.1).
        self.on_router_advertisement: Callable[[IPv6Address, RouterAdvertisement], None] | None
        self.on_router_advertisement = None

    def fileno(self) -> int:
        return self._rx.fileno()

    # -- sending ---------------------------------------------------------------------------
    def _send(self, packet: bytes, dst: IPv6Address) -> None:
        try:
            self._tx.sendto(packet, (str(dst), 0, 0, self.ifindex))
        except OSError as exc:
            self.stats["send_errors"] += 1
            log.warning("ND send to %s on %s failed: %s", dst, self.interface, exc)

    def send_unsolicited_na(self, target: IPv6Address, source: IPv6Address) -> None:
        """RFC 6275 §10.4.1: NA to all-nodes, R = 0, S = 0, O = 1, TLL = this HA's MAC."""
        message = NeighborAdvertisement(target, NAFlags.OVERRIDE, self.mac)
        self._send(build_icmpv6_packet(message, source, ALL_NODES, hop_limit=255), ALL_NODES)
        self.stats["na_sent"] += 1

    def announce(self, target: IPv6Address, source: IPv6Address, now: float) -> None:
        """Send the unsolicited NA now and MAX_NEIGHBOR_ADVERTISEMENT - 1 more times later.

        Called once the kernel's proxy entry for ``target`` exists: the group its DAD joined
        is released now (the proxy entry keeps the kernel's membership)."""
        self._release_held(target)
        self.send_unsolicited_na(target, source)
        for n in range(1, MAX_NEIGHBOR_ADVERTISEMENT):
            self._announce.pending.append((now + n * UNSOLICITED_NA_INTERVAL_S, target, source))

    def cancel_announcements(self, target: IPv6Address) -> None:
        self._announce.pending = [p for p in self._announce.pending if p[1] != target]

    # -- proxy DAD -------------------------------------------------------------------------
    def start_dad(
        self, home_address: IPv6Address, link_local: IPv6Address | None, now: float
    ) -> None:
        """RFC 4862 §5.4.2 on behalf of the MN: NS from ``::`` to the solicited-node group,
        ``dad_transmits`` times, RetransTimer apart (none when DAD is off on the link)."""
        timing = self.dad_timing()
        self.stats["dad_transmits"] = timing.transmits
        self.stats["dad_wait_ms"] = timing.wait_ms
        targets = frozenset(a for a in (home_address, link_local) if a is not None)
        run = _DadRun(home_address, targets, timing.deadline(now), list(timing.probe_times(now)))
        self._dad[home_address] = run
        if timing.enabled:
            for target in targets:
                self._join(solicited_node_address(target))
            run.joined = True
        self._send_due_probes(run, now)

    def _send_due_probes(self, run: _DadRun, now: float) -> None:
        while run.probes and run.probes[0] <= now:
            run.probes.pop(0)
            for target in run.targets:
                group = solicited_node_address(target)
                packet = build_icmpv6_packet(NeighborSolicitation(target), UNSPECIFIED, group)
                self._send(packet, group)
                self.stats["dad_ns_sent"] += 1

    def _join(self, group: IPv6Address) -> None:
        count = self._joined.get(group, 0)
        if count == 0:
            mreq = group.packed + struct.pack("@I", self.ifindex)
            try:
                self._rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            except OSError as exc:
                log.debug("join %s: %s", group, exc)
        self._joined[group] = count + 1

    def _leave(self, group: IPv6Address) -> None:
        count = self._joined.get(group, 0) - 1
        if count > 0:
            self._joined[group] = count
            return
        self._joined.pop(group, None)
        mreq = group.packed + struct.pack("@I", self.ifindex)
        try:
            self._rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_LEAVE_GROUP, mreq)
        except OSError as exc:
            log.debug("leave %s: %s", group, exc)

    def _release_held(self, target: IPv6Address) -> None:
        if self._held.pop(target, None) is not None:
            self._leave(solicited_node_address(target))

    # -- receiving -------------------------------------------------------------------------
    def on_readable(self) -> None:
        """Read every pending NS/NA; mark running DADs whose target was defended."""
        while True:
            try:
                data, ancillary, _flags, addr = self._rx.recvmsg(2048, 256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("ND receive: %s", exc)
                return
            del ancillary
            self._on_message(data, IPv6Address(addr[0].split("%")[0]))

    def _on_message(self, data: bytes, source: IPv6Address) -> None:
        if not self._dad and (data[:1] != b"\x86" or self.on_router_advertisement is None):
            return
        try:
            message = parse_icmpv6(data)
        except MalformedPacket:
            return
        if isinstance(message, RouterAdvertisement):
            if self.on_router_advertisement is not None:
                self.on_router_advertisement(source, message)
            return
        if isinstance(message, NeighborAdvertisement):
            target = message.target
        elif isinstance(message, NeighborSolicitation) and source == UNSPECIFIED:
            target = message.target  # another node's DAD for the same address
        else:
            return
        for run in self._dad.values():
            if target in run.targets and not run.duplicate:
                log.info("proxy DAD: %s is defended by %s", target, source)
                run.duplicate = True

    # -- timers ----------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        times = [run.deadline for run in self._dad.values()]
        times += [run.probes[0] for run in self._dad.values() if run.probes]
        times += [p[0] for p in self._announce.pending]
        times += list(self._held.values())
        return min(times) if times else None

    def poll(self, now: float) -> list[DadResult]:
        """Send due announcements; return the DADs that finished by ``now``."""
        due = [p for p in self._announce.pending if p[0] <= now]
        if due:
            self._announce.pending = [p for p in self._announce.pending if p[0] > now]
            for _, target, source in due:
                self.send_unsolicited_na(target, source)
        for target in [t for t, deadline in self._held.items() if deadline <= now]:
            self._release_held(target)  # never became a proxy entry
        finished: list[DadResult] = []
        for home_address, run in list(self._dad.items()):
            if run.deadline <= now or run.duplicate:
                del self._dad[home_address]
                if run.joined:
                    for target in run.targets:
                        # kept for the proxy entry (one hold per target is enough)
                        if run.duplicate or target in self._held:
                            self._leave(solicited_node_address(target))
                        if not run.duplicate:
                            self._held[target] = now + GROUP_HOLD_S
                if run.duplicate:
                    self.stats["dad_duplicates"] += 1
                finished.append(DadResult(home_address, run.duplicate))
            else:
                self._send_due_probes(run, now)
        return finished

    def close(self) -> None:
        self._rx.close()
        self._tx.close()


def send_unsolicited_neighbor_advertisement(
    interface: str, address: IPv6Address, lladdr: bytes | None, *, override: bool = True
) -> None:
    """Unsolicited NA for ``address`` to all-nodes on ``interface``, from that address.

    RFC 6275 §11.5.5: the MN's HoA back home, with O = 1. Also for a new (optimistic) CoA
    with O = 0 (RFC 4429 §3.3 forbids O = 1 before DAD ends): an access router whose
    neighbour entry for the address went INCOMPLETE or FAILED while the MN was away learns
    it at once instead of after its next solicitation (up to a second).

    Raises:
        OSError: no such interface, or the kernel refused the packet.
    """
    flags = NAFlags.OVERRIDE if override else NAFlags.NONE
    na = NeighborAdvertisement(address, flags, lladdr)
    packet = build_icmpv6_packet(na, address, ALL_NODES, hop_limit=255)
    # multicast needs an outgoing interface: send through an ICMPv6 socket
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    try:
        ifindex = socket.if_nametoindex(interface)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
        with contextlib.suppress(OSError):
            sock.bind((str(address), 0, 0, 0))
        sock.sendto(packet[40:], (str(ALL_NODES), 0, 0, ifindex))
    finally:
        sock.close()

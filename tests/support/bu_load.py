"""Scripted Mobile Nodes that keep a Home Agent busy, and what they saw.

Each MN has a home address and a care-of address on the sender's link and sends
home-registration BUs (A and H set, with a Home Address option) through one
``IPV6_HDRINCL`` socket; BAs are timestamped on an ``AF_PACKET`` socket. Unlike a plain
latency probe, every MN behaves as RFC 6275 §11.8 asks: one BU outstanding at a time;
no BA within its timeout (1 s, doubling) = a retransmission with the next sequence number.
The MNs send unauthenticated BUs: the HA runs with ``require_authentication = false``.

:func:`run_load` drives the phases (``register``: a first BU per MN, answered after the
HA's proxy DAD; ``load``: a new BU per idle MN, round robin, at a total rate; ``drain``:
only retransmissions until every MN's last BU is answered) and can SIGKILL a process (e.g.
an etcd member: PIDs are not per namespace) at a given moment of the load. :func:`analyse`
turns the record into what a user observes: BUs answered twice, BAs for no BU, each MN's
last BU answered or not, BU -> BA latency, the longest time without a BA during the load.

Run inside the MNs' namespace: ``ip netns exec NS python -m tests.support.bu_load ...``
prints the record as JSON.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import os
import select
import signal
import socket
import statistics
import sys
import time
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Any

from nfq_mip6.wire import BindingUpdate, BUFlags, build_ipv6_packet, build_mh
from nfq_mip6.wire.mh import IPPROTO_MH

IPV6_HDRINCL = 36
LIFETIME_UNITS = 250  # 1 000 s (4 s units, RFC 6275 §6.1.7)
INITIAL_BINDACK_TIMEOUT = 1.0  # RFC 6275 §13
MAX_RETRANSMIT_TIMEOUT = 4.0


def mobile_nodes(
    count: int, hoa_base: IPv6Address, coa_base: IPv6Address
) -> list[tuple[IPv6Address, IPv6Address]]:
    """``count`` (home address, care-of address) pairs counting up from the two bases."""
    return [(hoa_base + i, coa_base + i) for i in range(count)]


def bu_packet(ha: IPv6Address, hoa: IPv6Address, coa: IPv6Address, sequence: int) -> bytes:
    """A home-registration BU from ``coa`` with an HAO for ``hoa`` (RFC 6275 §11.7.1)."""
    mh = build_mh(BindingUpdate(sequence & 0xFFFF, BUFlags.A | BUFlags.H, LIFETIME_UNITS), hoa, ha)
    return build_ipv6_packet(coa, ha, IPPROTO_MH, mh, home_address=hoa)


def ba_fields(data: bytes) -> tuple[bytes, int, int] | None:
    """(home address or care-of address, status, sequence) of a BA, else None. With a type 2
    routing header (RFC 6275 §6.4) the home address is in it; without one (an error BA sent
    straight to the CoA) the destination is the CoA."""
    # IPv6 (40) [+ RH2 (24, address at 48..64)] + MH: type +2, status +6, sequence +8 (§6.1.8)
    if len(data) >= 64 + 12 and data[6] == 43 and data[40] == IPPROTO_MH and data[64 + 2] == 6:
        return data[48:64], data[64 + 6], int.from_bytes(data[64 + 8 : 64 + 10], "big")
    if len(data) >= 40 + 12 and data[6] == IPPROTO_MH and data[40 + 2] == 6:
        return data[24:40], data[40 + 6], int.from_bytes(data[40 + 8 : 40 + 10], "big")
    return None


@dataclass
class _MobileNode:
    hoa: IPv6Address
    coa: IPv6Address
    sequence: int
    outstanding: bool = False
    timeout: float = INITIAL_BINDACK_TIMEOUT
    deadline: float = 0.0


@dataclass
class LoadRecord:
    """What the MNs sent and received; times in seconds from the start of the load phase."""

    mobile_nodes: int
    rate: float
    seconds: float
    sent: list[tuple[int, int, float, str]] = field(default_factory=list)
    """(MN index, sequence, time, phase: register|load|drain, retransmission marked +r)."""
    received: list[tuple[int, int, int, float]] = field(default_factory=list)
    """(MN index, sequence, status, time) of every BA."""
    last_sequence: list[int] = field(default_factory=list)
    kill_at: float | None = None
    killed_pid: int | None = None
    kill_wall: float | None = None
    load_start_wall: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "mobile_nodes": self.mobile_nodes,
            "rate": self.rate,
            "seconds": self.seconds,
            "sent": self.sent,
            "received": self.received,
            "last_sequence": self.last_sequence,
            "kill_at": self.kill_at,
            "killed_pid": self.killed_pid,
            "kill_wall": self.kill_wall,
            "load_start_wall": self.load_start_wall,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadRecord:
        return cls(
            data["mobile_nodes"], data["rate"], data["seconds"],
            [tuple(row) for row in data["sent"]],
            [tuple(row) for row in data["received"]],
            list(data["last_sequence"]), data["kill_at"], data["killed_pid"],
            data["kill_wall"], data["load_start_wall"],
        )  # fmt: skip


class _Wire:
    def __init__(self, interface: str) -> None:
        self.rx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x86DD))
        self.rx.bind((interface, 0x86DD))
        self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.tx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.tx.setsockopt(socket.IPPROTO_IPV6, IPV6_HDRINCL, 1)

    def close(self) -> None:
        self.rx.close()
        self.tx.close()


def run_load(
    ha: IPv6Address,
    nodes: list[tuple[IPv6Address, IPv6Address]],
    *,
    interface: str,
    rate: float,
    seconds: float,
    first_sequence: int = 0,
    register: bool = True,
    kill_pid: int | None = None,
    kill_at: float | None = None,
    drain_timeout: float = 15.0,
    register_timeout: float = 3.0,
) -> LoadRecord:
    """Register (if ``register``), then ``seconds`` of load at ``rate`` BU/s, SIGKILL of
    ``kill_pid`` ``kill_at`` seconds into it, then the drain (at most ``drain_timeout`` s)."""
    wire = _Wire(interface)
    mns = [_MobileNode(hoa, coa, first_sequence & 0xFFFF) for hoa, coa in nodes]
    by_address = {hoa.packed: i for i, (hoa, _coa) in enumerate(nodes)}
    by_address.update({coa.packed: i for i, (_hoa, coa) in enumerate(nodes)})
    record = LoadRecord(len(nodes), rate, seconds)
    timers: list[tuple[float, int, int]] = []  # (deadline, MN, sequence): lazy, checked on pop
    origin = time.monotonic()

    def send(index: int, phase: str, now: float) -> None:
        mn = mns[index]
        packet = bu_packet(ha, mn.hoa, mn.coa, mn.sequence)
        wire.tx.sendto(packet, (str(ha), 0))
        mn.outstanding = True
        mn.deadline = now + mn.timeout
        heapq.heappush(timers, (mn.deadline, index, mn.sequence))
        record.sent.append((index, mn.sequence, round(now - origin, 6), phase))

    def receive(wait: float) -> None:
        if not select.select([wire.rx], [], [], max(0.0, wait))[0]:
            return
        while True:
            try:
                data, address = wire.rx.recvfrom(65535, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            now = time.monotonic()
            if address[2] == socket.PACKET_OUTGOING:
                continue
            fields = ba_fields(data)
            if fields is None or fields[0] not in by_address:
                continue
            index = by_address[fields[0]]
            status, sequence = fields[1], fields[2]
            record.received.append((index, sequence, status, round(now - origin, 6)))
            mn = mns[index]
            if mn.outstanding and sequence == mn.sequence:
                mn.outstanding = False
                mn.timeout = INITIAL_BINDACK_TIMEOUT

    def retransmit(now: float, phase: str) -> None:
        while timers and timers[0][0] <= now:
            _deadline, index, sequence = heapq.heappop(timers)
            mn = mns[index]
            if mn.outstanding and mn.sequence == sequence:  # §11.8: next sequence number
                mn.sequence = (mn.sequence + 1) & 0xFFFF
                mn.timeout = min(mn.timeout * 2, MAX_RETRANSMIT_TIMEOUT)
                send(index, phase + "+r", now)

    def settle(phase: str, limit: float) -> None:
        end = time.monotonic() + limit
        while any(mn.outstanding for mn in mns) and time.monotonic() < end:
            now = time.monotonic()
            retransmit(now, phase)
            wait = min([end - now, 0.05] + ([timers[0][0] - now] if timers else []))
            receive(wait)

    try:
        if register:
            for mn in mns:
                mn.timeout = register_timeout  # the HA's proxy DAD first (RFC 6275 §10.4.1)
            interval = 1.0 / rate
            for index in range(len(mns)):
                send(index, "register", time.monotonic())
                receive(interval)
            settle("register", drain_timeout)
        for mn in mns:
            mn.timeout = INITIAL_BINDACK_TIMEOUT
        shift, origin = time.monotonic() - origin, time.monotonic()
        record.load_start_wall = time.time()
        # the registration's times become negative: t = 0 is the start of the load
        record.sent = [(i, s, round(t - shift, 6), p) for i, s, t, p in record.sent]
        record.received = [(i, s, st, round(t - shift, 6)) for i, s, st, t in record.received]
        interval = 1.0 / rate
        slot, cursor = 0, 0
        end = origin + seconds
        while (now := time.monotonic()) < end:
            if (
                kill_pid is not None
                and kill_at is not None
                and record.kill_at is None
                and now - origin >= kill_at
            ):
                os.kill(kill_pid, signal.SIGKILL)
                record.kill_at = round(time.monotonic() - origin, 6)
                record.kill_wall = time.time()
                record.killed_pid = kill_pid
            retransmit(now, "load")
            if now >= origin + slot * interval:
                slot += 1
                for step in range(len(mns)):  # the next idle MN sends its next BU
                    index = (cursor + step) % len(mns)
                    if not mns[index].outstanding:
                        mns[index].sequence = (mns[index].sequence + 1) & 0xFFFF
                        send(index, "load", now)
                        cursor = index + 1
                        break
                continue
            receive(min(origin + slot * interval - now, 0.01))
        settle("drain", drain_timeout)
        receive(0.3)  # late BAs still on their way
    finally:
        wire.close()
    record.last_sequence = [mn.sequence for mn in mns]
    return record


@dataclass
class LoadAnalysis:
    """What the MNs observed (see :func:`analyse`)."""

    sent: int
    answered_twice: list[tuple[int, int]]
    unmatched: list[tuple[int, int]]
    statuses: dict[int, int]
    last_unanswered: list[int]
    """MNs whose last BU got no BA with status 0."""
    retransmissions: int
    latencies: list[tuple[float, float]]
    """(send time, BU -> BA seconds) of every answered BU of the load and drain phases."""
    longest_gap: float
    """Longest time without any BA from the start of the load to its last BA (s)."""
    longest_gap_start: float

    def summary(self, late_after: float = INITIAL_BINDACK_TIMEOUT) -> dict[str, Any]:
        """JSON for a benchmark: counts and latency percentiles (ms)."""
        ms = sorted(lat * 1000 for _t, lat in self.latencies)
        out: dict[str, Any] = {
            "bus_sent": self.sent,
            "bas_answered_twice": len(self.answered_twice),
            "bas_for_no_bu": len(self.unmatched),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "mns_last_bu_unanswered": len(self.last_unanswered),
            "retransmissions": self.retransmissions,
            "late_bas": sum(1 for v in ms if v > late_after * 1000),
            "longest_gap_without_ba_ms": round(self.longest_gap * 1000, 1),
            "longest_gap_start_s": round(self.longest_gap_start, 3),
        }
        if len(ms) >= 2:
            q = statistics.quantiles(ms, n=100, method="inclusive")
            out.update(p50_ms=round(q[49], 2), p99_ms=round(q[98], 2), max_ms=round(ms[-1], 2))
        return out


def analyse(record: LoadRecord) -> LoadAnalysis:
    """The record as a user sees it: every BU answered at most once, every BA for a BU that
    was sent, each MN's last BU answered with status 0, the latencies, the longest silence."""
    sent_at: dict[tuple[int, int], float] = {}
    phase_of: dict[tuple[int, int], str] = {}
    for index, sequence, at, phase in record.sent:
        sent_at.setdefault((index, sequence), at)
        phase_of.setdefault((index, sequence), phase)
    answers: dict[tuple[int, int], list[tuple[int, float]]] = {}
    unmatched: list[tuple[int, int]] = []
    statuses: dict[int, int] = {}
    for index, sequence, status, at in record.received:
        key = (index, sequence)
        statuses[status] = statuses.get(status, 0) + 1
        if key not in sent_at:
            unmatched.append(key)
        answers.setdefault(key, []).append((status, at))
    twice = [key for key, got in answers.items() if len(got) > 1]
    last_unanswered = [
        index
        for index, sequence in enumerate(record.last_sequence)
        if not any(status == 0 for status, _at in answers.get((index, sequence), []))
    ]
    latencies = sorted(
        (sent_at[key], got[0][1] - sent_at[key])
        for key, got in answers.items()
        if key in sent_at and not phase_of[key].startswith("register")
    )
    times = sorted(at for _i, _s, _st, at in record.received if at >= 0.0)
    edges = (
        [0.0, *times] if times and times[-1] >= record.seconds else [0.0, *times, record.seconds]
    )
    gap, start = 0.0, 0.0
    for before, after in itertools.pairwise(edges):
        if after - before > gap:
            gap, start = after - before, before
    return LoadAnalysis(
        sent=len(record.sent),
        answered_twice=twice,
        unmatched=unmatched,
        statuses=statuses,
        last_unanswered=last_unanswered,
        retransmissions=sum(1 for row in record.sent if row[3].endswith("+r")),
        latencies=latencies,
        longest_gap=gap,
        longest_gap_start=start,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--ha", required=True, type=IPv6Address)
    parser.add_argument("--hoa-base", required=True, type=IPv6Address)
    parser.add_argument("--coa-base", required=True, type=IPv6Address)
    parser.add_argument("--interface", required=True)
    parser.add_argument("--mobile-nodes", type=int, default=100)
    parser.add_argument("--rate", type=float, default=150.0)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--first-sequence", type=int, default=0)
    parser.add_argument("--no-register", action="store_true")
    parser.add_argument("--kill-pid", type=int)
    parser.add_argument("--kill-at", type=float)
    parser.add_argument("--drain-timeout", type=float, default=15.0)
    args = parser.parse_args(argv)
    record = run_load(
        args.ha,
        mobile_nodes(args.mobile_nodes, args.hoa_base, args.coa_base),
        interface=args.interface,
        rate=args.rate,
        seconds=args.seconds,
        first_sequence=args.first_sequence,
        register=not args.no_register,
        kill_pid=args.kill_pid,
        kill_at=args.kill_at,
        drain_timeout=args.drain_timeout,
    )
    json.dump(record.to_json(), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

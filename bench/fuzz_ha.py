#!/usr/bin/env python3
"""Packet fuzzer aimed at a running home agent (scapy-built, mutated, raw IPv6 sockets).

Run it inside a network namespace on the HA's home link (the test bed's MN at home, or any
host on that link); it sends whole IPv6 packets through an ``IPV6_HDRINCL`` raw socket, so
it needs root there. Nothing leaves the namespace's links.

    ip netns exec <mn-ns> .venv/bin/python bench/fuzz_ha.py --target fec0:106:2700::2 \
        --interface eth0 --packets 100000 --seed 1 [--agent-pid PID]

Categories (round robin, each a pool of scapy-built templates, most then mutated by 1–4
random octet changes or a truncation):

* ``mh``: every MH type 0–7 and unknown types with random fields, lengths and checksums;
* ``options``: BUs with random mobility options (AltCoA, Nonce Indices, BAD, BRA, MN-ID,
  Authentication, Mesg-ID, unknown, PadN) in random order and length;
* ``hao``: Destination Options with a Home Address option (random HoA, bad lengths) in
  front of an MH, ICMPv6 or UDP;
* ``rh2``: Type 2 Routing Headers (random segments left / addresses) to the HA;
* ``icmp``: ICMPv6 144–147 (DHAAD request/reply, MPS/MPA), also to the home agents anycast;
* ``ra``: Router Advertisements with random Prefix Information / Home Agent Information /
  Advertisement Interval options, unicast to the HA's link-local address (never to all
  nodes: other hosts on the link must not take the prefixes);
* ``bu``: well-formed home BUs (random HoA on the home prefix, random sequence/lifetime,
  optionally with random Authentication/Mesg-ID options) — they exercise the BU path and the
  rate limits.

Prints one JSON object: packets sent per category, send errors, elapsed seconds, packets
per second, and (``--agent-pid``) the agent's VmRSS before/after plus whether it is alive.
Documented long run: ``--packets 1000000`` (see docs/security.md for the numbers).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

IPV6_HDRINCL = 36
CATEGORIES = ("mh", "options", "hao", "rh2", "icmp", "ra", "bu")


def vm_rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    status = Path(f"/proc/{pid}/status")
    try:
        return "\nState:\tZ" not in status.read_text()
    except OSError:
        return False


class Generators:
    """Template builders per category (scapy), seeded for reproducibility."""

    def __init__(
        self,
        rng: random.Random,
        target: ipaddress.IPv6Address,
        prefix: ipaddress.IPv6Network,
        target_link_local: ipaddress.IPv6Address | None,
    ) -> None:
        self.rng = rng
        self.target = str(target)
        self.prefix = prefix
        self.link_local = str(target_link_local) if target_link_local else None
        # RFC 2526 / RFC 6275 §10.5: the Mobile IPv6 Home-Agents anycast address
        from nfq_mip6.wire import home_agents_anycast

        self.anycast = str(home_agents_anycast(prefix))

    # addresses ----------------------------------------------------------------------------
    def home_address(self) -> str:
        host = self.rng.getrandbits(128 - self.prefix.prefixlen)
        return str(ipaddress.IPv6Address(int(self.prefix.network_address) | host))

    def any_address(self) -> str:
        choice = self.rng.random()
        if choice < 0.4:
            return self.home_address()
        if choice < 0.6:
            return f"fec0:106:{self.rng.randrange(0x10000):x}::{self.rng.randrange(1, 0xFFFF):x}"
        if choice < 0.7:
            return f"fe80::{self.rng.randrange(1, 0xFFFF):x}"
        if choice < 0.8:
            return self.rng.choice(["::", "::1", "ff02::1", "ff05::2", self.target])
        return str(ipaddress.IPv6Address(self.rng.getrandbits(128)))

    def source(self) -> str:
        # a routable-looking source most of the time (the kernel refuses some others)
        return self.home_address() if self.rng.random() < 0.5 else self.any_address()

    # scapy layers -------------------------------------------------------------------------
    def mobility_options(self, count: int) -> list[Any]:
        from scapy.layers import inet6 as l6

        rng = self.rng
        makers: list[Callable[[], Any]] = [
            lambda: l6.MIP6OptAltCoA(acoa=self.any_address()),
            lambda: l6.MIP6OptNonceIndices(
                hni=rng.randrange(0x10000), coni=rng.randrange(0x10000), olen=4
            ),
            lambda: l6.MIP6OptBindingAuthData(authenticator=rng.randbytes(12), olen=12),
            lambda: l6.MIP6OptBRAdvice(rinter=rng.randrange(0x10000)),
            lambda: l6.MIP6OptMNID(id=rng.randbytes(rng.randrange(0, 40))),
            lambda: l6.MIP6OptMsgAuth(
                subtype=rng.randrange(4), mspi=rng.getrandbits(32), authdata=rng.randbytes(12)
            ),
            lambda: l6.MIP6OptReplayProtection(timestamp=rng.getrandbits(64)),
            lambda: l6.MIP6OptUnknown(otype=rng.randrange(11, 256), odata=rng.randbytes(8)),
            lambda: l6.MIP6OptLLAddr(),
            lambda: l6.PadN(optdata=b"\x00" * rng.randrange(0, 6)),
        ]
        return [rng.choice(makers)() for _ in range(count)]

    def ipv6(self, dst: str | None = None, src: str | None = None, hlim: int = 64) -> Any:
        from scapy.layers.inet6 import IPv6

        return IPv6(src=src or self.source(), dst=dst or self.target, hlim=hlim)

    def mh(self) -> Any:
        from scapy.layers import inet6 as l6
        from scapy.packet import fuzz

        rng = self.rng
        layer = rng.choice(
            [
                l6.MIP6MH_BRR, l6.MIP6MH_HoTI, l6.MIP6MH_CoTI, l6.MIP6MH_HoT, l6.MIP6MH_BU,
                l6.MIP6MH_BA, l6.MIP6MH_BE, l6.MIP6MH_Generic,
            ]
        )  # fmt: skip
        if rng.random() < 0.5:
            message = fuzz(layer())
        else:
            message = layer()
            if hasattr(message, "options") and layer not in (l6.MIP6MH_Generic,):
                message.options = self.mobility_options(rng.randrange(0, 4))
        if layer is l6.MIP6MH_Generic:
            message.mhtime = rng.randrange(8, 256)
        return self.ipv6() / message

    def options(self) -> Any:
        from scapy.layers import inet6 as l6

        rng = self.rng
        bu = l6.MIP6MH_BU(
            seq=rng.randrange(0x10000), flags=rng.choice([0x30, 0x20, 0x10, 0x3F]),
            mhtime=rng.randrange(0x10000), options=self.mobility_options(rng.randrange(1, 7)),
        )  # fmt: skip
        hoa = self.home_address()
        return self.ipv6() / l6.IPv6ExtHdrDestOpt(options=[l6.HAO(hoa=hoa)]) / bu

    def hao(self) -> Any:
        from scapy.layers import inet6 as l6
        from scapy.layers.inet import UDP
        from scapy.packet import fuzz

        rng = self.rng
        hao = l6.HAO(hoa=self.any_address())
        if rng.random() < 0.3:
            hao.optlen = rng.randrange(256)
        payloads: list[Callable[[], Any]] = [
            lambda: l6.MIP6MH_BU(seq=rng.randrange(0x10000), flags=0x30, mhtime=10),
            lambda: l6.ICMPv6MPSol(id=rng.randrange(0x10000)),
            lambda: l6.ICMPv6EchoRequest(),
            lambda: UDP(dport=rng.randrange(1, 65536)) / rng.randbytes(20),
            lambda: fuzz(l6.MIP6MH_Generic()),
        ]
        payload = rng.choice(payloads)()
        options: list[Any] = [hao]
        if rng.random() < 0.3:
            options = [l6.PadN(optdata=b"\x00" * rng.randrange(0, 4)), *options]
        return self.ipv6() / l6.IPv6ExtHdrDestOpt(options=options) / payload

    def rh2(self) -> Any:
        from scapy.layers import inet6 as l6

        rng = self.rng
        addresses = [self.any_address() for _ in range(rng.choice([1, 1, 1, 2, 0]))]
        routing = l6.IPv6ExtHdrRouting(
            type=rng.choice([2, 2, 2, 0, 4]), segleft=rng.randrange(0, 3), addresses=addresses
        )
        payloads: list[Callable[[], Any]] = [
            lambda: l6.MIP6MH_BA(status=rng.randrange(256), seq=rng.randrange(0x10000)),
            lambda: l6.ICMPv6EchoRequest(),
            lambda: l6.ICMPv6MPAdv(),
        ]
        payload = rng.choice(payloads)()
        return self.ipv6() / routing / payload

    def icmp(self) -> Any:
        from scapy.layers import inet6 as l6
        from scapy.packet import fuzz

        rng = self.rng
        layer = rng.choice(
            [l6.ICMPv6HAADRequest, l6.ICMPv6HAADReply, l6.ICMPv6MPSol, l6.ICMPv6MPAdv]
        )
        message = fuzz(layer()) if rng.random() < 0.5 else layer(id=rng.randrange(0x10000))
        if layer is l6.ICMPv6MPAdv and rng.random() < 0.5:
            message = message / l6.ICMPv6NDOptPrefixInfo(
                prefix=self.any_address(), prefixlen=rng.randrange(129)
            )
        dst = self.anycast if rng.random() < 0.5 else self.target
        return self.ipv6(dst=dst) / message

    def ra(self) -> Any:
        from scapy.layers import inet6 as l6
        from scapy.packet import fuzz

        rng = self.rng
        ra = l6.ICMPv6ND_RA(H=rng.randrange(2), routerlifetime=rng.randrange(0x10000))
        if rng.random() < 0.3:
            ra = fuzz(l6.ICMPv6ND_RA())
        options: Any = None
        for _ in range(rng.randrange(0, 4)):
            makers: list[Callable[[], Any]] = [
                    lambda: l6.ICMPv6NDOptPrefixInfo(
                        prefix=self.any_address(), prefixlen=rng.randrange(129),
                        validlifetime=rng.getrandbits(32), preferredlifetime=rng.getrandbits(32),
                        R=rng.randrange(2),
                    ),
                    lambda: l6.ICMPv6NDOptHAInfo(
                        pref=rng.randrange(0x10000), lifetime=rng.randrange(0x10000)
                    ),
                    lambda: l6.ICMPv6NDOptAdvInterval(advint=rng.getrandbits(32)),
                    lambda: fuzz(l6.ICMPv6NDOptPrefixInfo()),
            ]  # fmt: skip
            option = rng.choice(makers)()
            options = option if options is None else options / option
        packet = ra if options is None else ra / options
        dst = self.link_local or self.target
        return self.ipv6(dst=dst, src=f"fe80::{rng.randrange(1, 0xFFFF):x}", hlim=255) / packet

    def bu(self) -> Any:
        from scapy.layers import inet6 as l6

        rng = self.rng
        options: list[Any] = [l6.MIP6OptAltCoA(acoa=self.any_address())]
        if rng.random() < 0.5:
            options += [
                l6.MIP6OptReplayProtection(timestamp=rng.getrandbits(64)),
                l6.MIP6OptMsgAuth(subtype=1, mspi=rng.getrandbits(32), authdata=rng.randbytes(12)),
            ]
        bu = l6.MIP6MH_BU(
            seq=rng.randrange(0x10000), flags=0x30, mhtime=rng.randrange(1, 0x100),
            options=options,
        )  # fmt: skip
        return self.ipv6() / l6.IPv6ExtHdrDestOpt(options=[l6.HAO(hoa=self.home_address())]) / bu

    def build(self, category: str) -> bytes:
        from scapy.compat import raw

        return bytes(raw(getattr(self, category)()))


def mutate(rng: random.Random, packet: bytes) -> bytes:
    """1–4 random octet changes (never in the destination address), or a truncation."""
    data = bytearray(packet)
    if rng.random() < 0.15 and len(data) > 41:
        return bytes(data[: rng.randrange(40, len(data))])
    for _ in range(rng.randrange(1, 5)):
        index = rng.randrange(4, len(data)) if len(data) > 4 else 0
        # keep the payload length right most of the time, and the destination always (a
        # mutated destination only fills the neighbour queue, it never reaches the HA)
        if 4 <= index < 6 or 24 <= index < 40:
            continue
        data[index] = rng.randrange(256)
    return bytes(data)


def destination_of(packet: bytes) -> str:
    return str(ipaddress.IPv6Address(packet[24:40]))


def run(args: argparse.Namespace) -> dict[str, Any]:
    import scapy.config

    scapy.config.conf.verb = 0
    rng = random.Random(args.seed)
    random.seed(args.seed)  # scapy's fuzz() uses the module-level generator
    target = ipaddress.IPv6Address(args.target)
    prefix = (
        ipaddress.IPv6Network(args.prefix)
        if args.prefix
        else ipaddress.IPv6Network(f"{target}/64", strict=False)
    )
    link_local = ipaddress.IPv6Address(args.target_link_local) if args.target_link_local else None
    generators = Generators(rng, target, prefix, link_local)
    categories = [c for c in CATEGORIES if c not in set(args.skip or [])]
    templates: dict[str, list[bytes]] = {c: [] for c in categories}
    build_started = time.monotonic()
    per_category = max(1, min(args.templates, args.packets) // len(categories))
    build_errors = 0
    for category in categories:
        while len(templates[category]) < per_category:
            try:
                templates[category].append(generators.build(category))
            except Exception:  # scapy refuses some random field combinations
                build_errors += 1
                if build_errors > 50 * per_category * len(categories):
                    raise
    build_seconds = time.monotonic() - build_started

    ifindex = socket.if_nametoindex(args.interface) if args.interface else 0
    # One socket per destination: packets to a destination whose neighbour never resolves
    # (e.g. the home agents anycast address when nobody answers NS for it) wait in the
    # neighbour queue and fill their socket's send buffer; they must not block the others.
    sockets: dict[str, socket.socket] = {}

    def socket_for(dst: str) -> socket.socket:
        sock = sockets.get(dst)
        if sock is None:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_HDRINCL, 1)
            sockets[dst] = sock
        return sock

    rss_before = vm_rss_kib(args.agent_pid) if args.agent_pid else None
    sent: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    gap = 1.0 / args.rate if args.rate else 0.0
    started = time.monotonic()
    next_send = started
    for number in range(args.packets):
        category = categories[number % len(categories)]
        packet = rng.choice(templates[category])
        if rng.random() < args.mutate:
            packet = mutate(rng, packet)
        if len(packet) < 40:
            packet = packet + bytes(40 - len(packet))
        dst = destination_of(packet)
        scope = ifindex if dst.startswith(("fe80", "ff0")) else 0
        try:
            socket_for(dst).sendto(packet, socket.MSG_DONTWAIT, (dst, 0, 0, scope))
            sent[category] += 1
        except OSError as exc:
            errors[f"{category}: {exc.strerror or exc}"] += 1
        if gap:
            next_send += gap
            delay = next_send - time.monotonic()
            if delay > 0.002:  # sleep in slices of ≥ 2 ms: finer sleeps overshoot
                time.sleep(delay)
    elapsed = time.monotonic() - started
    for sock in sockets.values():
        sock.close()
    result: dict[str, Any] = {
        "packets": args.packets,
        "sent": sum(sent.values()),
        "sent_by_category": dict(sent),
        "send_errors": dict(errors),
        "templates_per_category": per_category,
        "template_build_errors": build_errors,
        "template_build_seconds": round(build_seconds, 3),
        "elapsed_seconds": round(elapsed, 3),
        "packets_per_second": round(args.packets / elapsed, 1) if elapsed > 0 else None,
        "seed": args.seed,
    }
    if args.agent_pid:
        time.sleep(args.settle)
        result["agent_alive"] = alive(args.agent_pid)
        result["agent_rss_kib_before"] = rss_before
        result["agent_rss_kib_after"] = vm_rss_kib(args.agent_pid)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="the home agent's address")
    parser.add_argument("--prefix", help="the home prefix (default: target/64)")
    parser.add_argument("--target-link-local", help="the HA's link-local address (for RAs)")
    parser.add_argument("--interface", help="outgoing interface for link-scoped destinations")
    parser.add_argument("--packets", type=int, default=5000)
    parser.add_argument("--templates", type=int, default=700, help="scapy templates in all")
    parser.add_argument("--mutate", type=float, default=0.7, help="share of mutated packets")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="packets/s (0: as fast as possible)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip", action="append", choices=CATEGORIES)
    parser.add_argument("--agent-pid", type=int, help="report this process's RSS and liveness")
    parser.add_argument("--settle", type=float, default=0.5, help="wait before the final check")
    args = parser.parse_args(argv)
    print(json.dumps(run(args), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

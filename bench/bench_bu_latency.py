"""Benchmark: BU -> BA latency of the Home Agent agent at a fixed BU rate (default 1k/s).

Two private namespaces: ``m`` (scripted Mobile Nodes) and ``h`` (``nfq-mip6 run`` as HA on
its home link 2001:db8:a::/64). ``--mobile-nodes`` MNs (HoA 2001:db8:a::1:n, two CoAs each
in 2001:db8:b::/64) first register (proxy DAD, ~1 s, in parallel); then this process, inside
``m``, sends home-registration refreshes with an HAO, round robin over the MNs, at the
given total rate (the HA rate-limits BUs per source, 10/s by default, so the load comes
from many MNs as in real life) through an ``IPV6_HDRINCL`` socket, and timestamps each BA
(with its RH2) on an ``AF_PACKET`` socket. Phases: ``refresh`` (same CoA: binding update
only) and ``coa_change`` (alternating CoA: the tunnel route is replaced too). Baseline in
the same run: ICMPv6 echo to the HA at the same rate through the same sockets.
Prints JSON. Needs root.

    .venv/bin/python bench/bench_bu_latency.py --rate 1000 --seconds 3
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv6Address
from pathlib import Path

from harness import print_result, wait_for_socket

from nfq_mip6.control import request
from nfq_mip6.wire import build_icmpv6_packet
from nfq_mip6.wire.icmp import UnknownICMPv6
from tests.support.bu_load import ba_fields, bu_packet

TAG = f"{os.getpid()}"
NS_M, NS_H = f"nfqbl-m-{TAG}", f"nfqbl-h-{TAG}"
HA = IPv6Address("2001:db8:a::1")
HOA_BASE = int(IPv6Address("2001:db8:a::1:0"))
COA_BASE = int(IPv6Address("2001:db8:b::1:0"))
COA_ALT_BASE = int(IPv6Address("2001:db8:b::2:0"))
ECHO_SOURCE = IPv6Address("2001:db8:b::2")
HA_VISIT = IPv6Address("2001:db8:b::1")
REPO = Path(__file__).resolve().parents[1]


def sh(*argv: str) -> None:
    subprocess.run(list(argv), check=True)


def mobile_nodes(n: int) -> list[tuple[IPv6Address, IPv6Address, IPv6Address]]:
    return [
        (IPv6Address(HOA_BASE + i), IPv6Address(COA_BASE + i), IPv6Address(COA_ALT_BASE + i))
        for i in range(n)
    ]


def build_topology(mns: list[tuple[IPv6Address, IPv6Address, IPv6Address]]) -> None:
    sh("ip", "netns", "add", NS_M)
    sh("ip", "netns", "add", NS_H)
    sh("ip", "-n", NS_M, "link", "add", "m0", "type", "veth", "peer", "name", "h0", "netns", NS_H)
    sh("ip", "-n", NS_H, "link", "add", "hh0", "type", "veth", "peer", "name", "hh1")
    for ns, devs in ((NS_M, ("lo", "m0")), (NS_H, ("lo", "h0", "hh0", "hh1"))):
        for dev in devs:
            sh("ip", "-n", ns, "link", "set", dev, "up")
    lines = [f"addr add {ECHO_SOURCE}/64 dev m0 nodad"]
    for _hoa, coa, alt in mns:
        lines += [f"addr add {coa}/64 dev m0 nodad", f"addr add {alt}/64 dev m0 nodad"]
    subprocess.run(
        ["ip", "-6", "-n", NS_M, "-batch", "-"],
        input="\n".join(lines) + "\n",
        text=True,
        check=True,
    )
    sh("ip", "-n", NS_M, "-6", "route", "add", "2001:db8:a::/64", "via", str(HA_VISIT))
    sh("ip", "-n", NS_H, "-6", "addr", "add", f"{HA_VISIT}/64", "dev", "h0", "nodad")
    sh("ip", "-n", NS_H, "-6", "addr", "add", f"{HA}/64", "dev", "hh0", "nodad")
    sh("ip", "netns", "exec", NS_H, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")


def start_agent(tmp: Path, max_bindings: int, pin: bool) -> subprocess.Popen[bytes]:
    config = tmp / "ha.toml"
    config.write_text(
        f'role = "ha"\ninterface = "hh0"\nlog_level = "warning"\nqueue_num = 3\n'
        f'control_socket = "{tmp / "ha.sock"}"\nmetrics_listen = ""\nstate_dir = "{tmp}"\n'
        f"[ha]\nmax_binding_lifetime = 1000\nmax_tunnel_nr = {max_bindings}\n"
        "require_authentication = false\n"  # the scripted MNs send unauthenticated BUs
    )
    taskset = ["taskset", "-c", "1"] if pin else []
    proc = subprocess.Popen(
        [*taskset, "ip", "netns", "exec", NS_H, sys.executable, "-m", "nfq_mip6", "run",
         "--config", str(config)],
        cwd=REPO,
    )  # fmt: skip
    wait_for_socket(proc, tmp / "ha.sock")
    return proc


Key = tuple[bytes, int]
Probe = tuple[Key, bytes]


def bu_probe(hoa: IPv6Address, sequence: int, coa: IPv6Address) -> Probe:
    return (hoa.packed, sequence & 0xFFFF), bu_packet(HA, hoa, coa, sequence)


def echo_probe(sequence: int) -> Probe:
    body = (0x1234).to_bytes(2, "big") + (sequence & 0xFFFF).to_bytes(2, "big")
    packet = build_icmpv6_packet(UnknownICMPv6(128, 0, body), ECHO_SOURCE, HA, hop_limit=64)
    return (b"", sequence & 0xFFFF), packet


class Wire:
    def __init__(self) -> None:
        self.rx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x86DD))
        self.rx.bind(("m0", 0x86DD))
        self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.tx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.tx.setsockopt(socket.IPPROTO_IPV6, 36, 1)

    def run(
        self, probes: list[Probe], rate: float, key_of_reply: object, grace: float = 1.5
    ) -> list[float]:
        """Send ``probes`` at ``rate``/s; return the RTTs (s) of the answered ones."""
        sent: dict[Key, float] = {}
        rtts: list[float] = []
        interval = 1.0 / rate
        start = time.perf_counter()
        index = 0
        end = start + len(probes) * interval + grace
        while time.perf_counter() < end and (index < len(probes) or sent):
            now = time.perf_counter()
            if index < len(probes) and now >= start + index * interval:
                key, packet = probes[index]
                sent[key] = time.perf_counter()
                self.tx.sendto(packet, (str(IPv6Address(packet[24:40])), 0))
                index += 1
                continue
            wait = (start + index * interval - now) if index < len(probes) else 0.01
            if select.select([self.rx], [], [], max(0.0, wait))[0]:
                data, addr = self.rx.recvfrom(65535)
                got = time.perf_counter()
                if addr[2] == socket.PACKET_OUTGOING:
                    continue
                key = key_of_reply(data)  # type: ignore[operator]
                if key is not None and key in sent:
                    rtts.append(got - sent.pop(key))
        return rtts


def ba_key(data: bytes) -> Key | None:
    fields = ba_fields(data)  # (home address from the RH2, status, sequence)
    return (fields[0], fields[2]) if fields is not None else None


def echo_key(data: bytes) -> Key | None:
    if len(data) >= 48 and data[6] == 58 and data[40] == 129:
        return b"", int.from_bytes(data[46:48], "big")
    return None


def percentiles(rtts: list[float]) -> dict[str, float]:
    if len(rtts) < 2:
        return {"count": len(rtts)}
    ms = sorted(r * 1000 for r in rtts)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "count": len(ms),
        "p50_ms": round(q[49], 3),
        "p90_ms": round(q[89], 3),
        "p99_ms": round(q[98], 3),
        "max_ms": round(ms[-1], 3),
    }


def load_arguments(description: str | None) -> argparse.ArgumentParser:
    """The BU load of a run: ``--rate`` BUs/s for ``--seconds`` from ``--mobile-nodes`` MNs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--mobile-nodes", type=int, default=200)
    return parser


def main() -> int:
    parser = load_arguments(__doc__)
    parser.add_argument("--state-dir", default=None, help="parent of the agent state dir")
    parser.add_argument(
        "--pin", action="store_true", help="agent on CPU 1, this sender on CPU 0 (2+ CPUs)"
    )
    args = parser.parse_args()
    count = int(args.rate * args.seconds)
    mns = mobile_nodes(args.mobile_nodes)
    rounds = count // len(mns)
    agent: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory(dir=args.state_dir) as tmpdir:
        try:
            build_topology(mns)
            agent = start_agent(Path(tmpdir), len(mns), args.pin)
            if args.pin:
                os.sched_setaffinity(0, {0})
            from pyroute2 import netns

            netns.setns(NS_M)
            wire = Wire()
            first_probes = [bu_probe(hoa, 0, coa) for hoa, coa, _alt in mns]
            first = wire.run(first_probes, args.rate, ba_key, grace=5.0)  # + proxy DAD
            baseline = wire.run([echo_probe(i) for i in range(count)], args.rate, echo_key)
            refresh = wire.run(
                [bu_probe(h, r, c) for r in range(1, rounds + 1) for h, c, _a in mns],
                args.rate,
                ba_key,
            )
            change = wire.run(
                [
                    bu_probe(h, r, a if r % 2 else c)
                    for r in range(rounds + 1, 2 * rounds + 1)
                    for h, c, a in mns
                ],
                args.rate,
                ba_key,
            )
            agent_stats = request(Path(tmpdir) / "ha.sock", {"cmd": "stats"})
        finally:
            if agent is not None:
                agent.send_signal(signal.SIGTERM)
                try:
                    agent.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    agent.kill()
            for ns in (NS_M, NS_H):
                subprocess.run(["ip", "netns", "del", ns], check=False)
    result: dict[str, object] = {
        "benchmark": "bu_latency",
        "rate_per_s": args.rate,
        "sent_per_phase": count,
        "mobile_nodes": len(mns),
        "pinned": args.pin,
        "first_registrations": percentiles(first),
        "baseline_icmpv6_echo": percentiles(baseline),
        "bu_ba_refresh": percentiles(refresh),
        "bu_ba_coa_change": percentiles(change),
        "target_p99_ms": 2.0,
        "agent": {
            "counters": {k: v for k, v in agent_stats.get("counters", {}).items() if v},
            "nfqueue": agent_stats.get("nfqueue"),
            "home_agent": {k: v for k, v in agent_stats.get("home_agent", {}).items() if v},
        },
    }
    p99s = [percentiles(phase).get("p99_ms") for phase in (refresh, change)]
    result["meets_target"] = all(p is not None and p <= 2.0 for p in p99s)
    return print_result(result)


if __name__ == "__main__":
    raise SystemExit(main())

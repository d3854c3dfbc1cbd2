"""Route-optimization data path benchmark (RFC 6275 §9.3, §11.3 on a kernel without MIPv6).

Prints one JSON object with, measured in the same run:

* ``functions``: the byte rewrites of :mod:`nfq_mip6.runtime.ro_datapath` alone, packets/s
  on one core, per direction (CN out: + RH2, CN in: − HAO, MN out: + HAO, MN in: − RH2);
* ``nfqueue``: packets/s through a real NFQUEUE in two private network namespaces joined by
  a veth, per direction, for the RO worker and for an accept-only worker bound to the same
  rule and fed by the same sender (the baseline). The CN directions run the agent's own
  code path (:class:`~nfq_mip6.io.nfqueue.QueueAdapter` + ``CorrespondentRuntime.
  on_queued_packet``); the MN directions the same adapter around ``mn_inbound`` /
  ``mn_outbound``. Target: ≥ 100k packets/s per direction;
* ``rtt`` (with ``--testbed``): ping RTT CN → MN's home address through the HA tunnel
  (route optimization off) and on the direct path (on), with the real HA, MN and CN agents
  on the HOWTO test bed.

    .venv/bin/python bench/bench_ro_datapath.py [--packets 50000] [--rounds 3] [--testbed]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nfq_mip6.runtime.ro_datapath import (  # noqa: E402
    cn_inbound,
    cn_outbound,
    mn_inbound,
    mn_outbound,
)
from nfq_mip6.wire import build_ipv6_packet  # noqa: E402
from nfq_mip6.wire.checksum import pseudo_header_checksum  # noqa: E402

# The bench's own two namespaces: "mn" side (CoA, HoA) and "cn" side.
CN = IPv6Address("2001:db8:62::1")
COA = IPv6Address("2001:db8:62::2")
HOA = IPv6Address("2001:db8:6275::2")
QUEUE = 62
PAYLOAD = 64  # UDP payload octets


def udp(src: IPv6Address, dst: IPv6Address, **kw: Any) -> bytes:
    """A UDP datagram src → dst; its checksum uses the HoA as MIPv6 does (kw: HAO / RH2)."""
    pseudo_src = kw.get("home_address") or src
    pseudo_dst = kw.get("rh2_address") or dst
    body = bytearray(b"\x30\x39\x00\x09" + (8 + PAYLOAD).to_bytes(2, "big") + b"\0\0")
    body += b"\xa5" * PAYLOAD
    body[6:8] = pseudo_header_checksum(pseudo_src, pseudo_dst, 17, bytes(body)).to_bytes(2, "big")
    return build_ipv6_packet(src, dst, 17, bytes(body), **kw)


# ---------------------------------------------------------------------------------------------
# Part 1: the functions alone
# ---------------------------------------------------------------------------------------------


def _rate(function: Callable[[], object], seconds: float) -> float:
    function()
    calls, batch = 0, 2000
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        for _ in range(batch):
            function()
        calls += batch
        elapsed = time.perf_counter() - start
    return calls / elapsed


def function_rates(seconds: float) -> dict[str, int]:
    cn_bindings = {HOA.packed: COA.packed}
    mn_bindings = {CN.packed: COA.packed}
    home = frozenset({HOA.packed})
    to_hoa = udp(CN, HOA)
    with_hao = udp(COA, CN, home_address=HOA)
    from_hoa = udp(HOA, CN)
    with_rh2 = udp(CN, COA, rh2_address=HOA)
    assert cn_outbound(to_hoa, cn_bindings) is not None
    assert cn_inbound(with_hao, cn_bindings) is not None
    assert mn_outbound(from_hoa, HOA.packed, mn_bindings) is not None
    assert mn_inbound(with_rh2, home) is not None
    return {
        "cn_outbound_insert_rh2": round(_rate(lambda: cn_outbound(to_hoa, cn_bindings), seconds)),
        "cn_inbound_strip_hao": round(_rate(lambda: cn_inbound(with_hao, cn_bindings), seconds)),
        "mn_outbound_insert_hao": round(
            _rate(lambda: mn_outbound(from_hoa, HOA.packed, mn_bindings), seconds)
        ),
        "mn_inbound_strip_rh2": round(_rate(lambda: mn_inbound(with_rh2, home), seconds)),
        "baseline_bytes_copy": round(_rate(lambda: bytes(bytearray(to_hoa)), seconds)),
    }


# ---------------------------------------------------------------------------------------------
# Part 2: through NFQUEUE
# ---------------------------------------------------------------------------------------------

# argv: mode queue CN CoA HoA. Binds the queue, says "ready", waits for "go" on stdin while
# the sender fills the kernel queue, then drains it as fast as it can and prints the rate.
# The per-packet code is QueueAdapter._on_packet's (the agent's), with the role's handler;
# the queue and socket buffers are enlarged so that the whole burst waits in the kernel.
WORKER = r"""
import json, resource, select, socket, sys, time
from ipaddress import IPv6Address
from netfilterqueue import NetfilterQueue
from nfq_mip6.io.nfqueue import Verdict, VerdictKind, queued_packet
from nfq_mip6.runtime import ro_datapath
mode, queue = sys.argv[1], int(sys.argv[2])
CN, COA, HOA = (IPv6Address(a) for a in sys.argv[3:6])
if mode == "accept":
    def handler(queued, now):
        return Verdict.accept()
elif mode.startswith("cn_"):
    from nfq_mip6.runtime.correspondent import CorrespondentRuntime
    runtime = CorrespondentRuntime(load_rules=False, address=CN)
    runtime.bindings[HOA.packed] = COA.packed
    handler = runtime.on_queued_packet
else:
    home, bindings = frozenset({HOA.packed}), {CN.packed: COA.packed}
    rewrite = (
        (lambda raw: ro_datapath.mn_inbound(raw, home)) if mode == "mn_inbound"
        else (lambda raw: ro_datapath.mn_outbound(raw, HOA.packed, bindings))
    )
    def handler(queued, now):
        out = rewrite(queued.payload)
        return Verdict.accept() if out is None else Verdict.rewrite(out)
stats = {"accepted": 0, "rewritten": 0, "dropped": 0}
times = []
clock = time.monotonic
def on_packet(packet):
    verdict = handler(queued_packet(packet), clock())
    if verdict.kind == VerdictKind.ACCEPT:
        packet.accept()
        stats["accepted"] += 1
    elif verdict.kind == VerdictKind.REWRITE and verdict.payload is not None:
        packet.set_payload(verdict.payload)
        packet.accept()
        stats["rewritten"] += 1
    else:
        packet.drop()
        stats["dropped"] += 1
nfq = NetfilterQueue()
nfq.bind(queue, on_packet, max_len=int(sys.argv[6]), sock_len=1 << 28)
fd = nfq.get_fd()
sock = socket.socket(fileno=socket.dup(fd))
sock.setsockopt(socket.SOL_SOCKET, 33, 1 << 29)  # SO_RCVBUFFORCE
print("ready", flush=True)
sys.stdin.readline()
cpu0 = resource.getrusage(resource.RUSAGE_SELF)
first = last = None
while select.select([fd], [], [], 0.5)[0]:
    if first is None:
        first = time.perf_counter()
    nfq.run(block=False)
    last = time.perf_counter()
cpu1 = resource.getrusage(resource.RUSAGE_SELF)
total = sum(stats.values())
cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
print(json.dumps({"packets": total, "seconds": (last - first) if first else 0.0,
                  "cpu_seconds": cpu, **stats}))
nfq.unbind()
"""

# argv: count kind hex-packet-or-dst [src]. Sends ``count`` packets, then exits.
SENDER = r"""
import socket, sys
count, kind = int(sys.argv[1]), sys.argv[2]
if kind == "raw":
    packet = bytes.fromhex(sys.argv[3])
    dst = socket.inet_ntop(socket.AF_INET6, packet[24:40])
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IPV6, 36, 1)
    addr = (dst, 0)
else:
    packet = b"\xa5" * 64
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    if len(sys.argv) > 4:
        s.bind((sys.argv[4], 0))
    addr = (sys.argv[3], 9)
s.setsockopt(socket.SOL_SOCKET, 32, 1 << 29)  # SO_SNDBUFFORCE: queued packets hold memory
sent = errors = 0
for _ in range(count):
    try:
        s.sendto(packet, addr)
        sent += 1
    except OSError:
        errors += 1
print(sent, errors)
"""


def ns(name: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", name, *argv], capture_output=True, text=True, check=check
    )


@contextlib.contextmanager
def namespaces() -> Iterator[tuple[str, str]]:
    """Two fresh namespaces ``mn`` (CoA, HoA on lo) and ``cn`` joined by a veth."""
    tag = f"robench{os.getpid()}"
    mn, cn = f"{tag}m", f"{tag}c"
    try:
        for name in (mn, cn):
            subprocess.run(["ip", "netns", "add", name], check=True)
            ns(name, "ip", "link", "set", "lo", "up")
            ns(name, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0")
            ns(name, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
        subprocess.run(
            ["ip", "link", "add", "v0", "netns", mn, "type", "veth", "peer", "v1", "netns", cn],
            check=True,
        )
        ns(mn, "ip", "addr", "add", f"{COA}/64", "dev", "v0", "nodad")
        ns(cn, "ip", "addr", "add", f"{CN}/64", "dev", "v1", "nodad")
        ns(mn, "ip", "addr", "add", f"{HOA}/128", "dev", "lo")
        for name, dev in ((mn, "v0"), (cn, "v1")):
            ns(name, "ip", "link", "set", dev, "up")
        ns(cn, "ip", "-6", "route", "add", f"{HOA}/128", "via", str(COA), "dev", "v1")
        # Nobody listens: drop the datagrams in INPUT (before extension-header processing
        # and without ICMP port-unreachable noise).
        for name in (mn, cn):
            ns(name, "ip6tables", "-w", "-A", "INPUT", "-p", "udp", "--dport", "9", "-j", "DROP")
        for _ in range(100):
            done = ns(mn, "ping", "-6", "-c", "1", "-W", "1", str(CN), check=False)
            if done.returncode == 0:
                break
            time.sleep(0.05)
        yield mn, cn
    finally:
        for name in (mn, cn):
            subprocess.run(["ip", "netns", "pids", name], capture_output=True, check=False)
            pids = subprocess.run(
                ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
            ).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


# direction → (worker namespace side, rule table, rule, sender side, sender argv)
def directions(mn: str, cn: str) -> dict[str, tuple[str, list[str], str, list[str]]]:
    target = ["-j", "NFQUEUE", "--queue-num", str(QUEUE)]
    return {
        "cn_inbound": (
            cn,
            ["-t", "raw", "-I", "PREROUTING", "1", "-m", "ipv6header", "--soft", "--header",
             "dst", *target],
            mn,
            ["raw", udp(COA, CN, home_address=HOA).hex()],
        ),
        "cn_outbound": (
            cn,
            ["-t", "mangle", "-I", "OUTPUT", "1", "-d", f"{HOA}/128", *target],
            cn,
            ["udp", str(HOA)],
        ),
        "mn_inbound": (
            mn,
            ["-t", "raw", "-I", "PREROUTING", "1", "-m", "rt", "--rt-type", "2", *target],
            cn,
            ["raw", udp(CN, COA, rh2_address=HOA).hex()],
        ),
        "mn_outbound": (
            mn,
            ["-t", "mangle", "-I", "OUTPUT", "1", "-s", f"{HOA}/128", "-d", f"{CN}/128",
             *target],
            mn,
            ["udp", str(CN), str(HOA)],
        ),
    }  # fmt: skip


def measure(
    worker_ns: str, rule: list[str], sender_ns: str, sender: list[str], mode: str, count: int
) -> dict[str, Any]:
    """Fill the queue with ``count`` packets, then time the worker draining it."""
    ns(worker_ns, "ip6tables", "-w", *rule)
    worker = subprocess.Popen(
        ["ip", "netns", "exec", worker_ns, sys.executable, "-c", WORKER, mode, str(QUEUE),
         str(CN), str(COA), str(HOA), str(count + 1000)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=REPO,
    )  # fmt: skip
    assert worker.stdout is not None and worker.stdin is not None
    try:
        assert worker.stdout.readline().strip() == "ready", worker.stderr
        sent = ns(sender_ns, sys.executable, "-c", SENDER, str(count), *sender).stdout.split()
        out, err = worker.communicate("go\n", timeout=120)
        if not out.strip():
            raise RuntimeError(f"NFQUEUE worker failed: {err.strip()}")
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        delete = ["-D" if word == "-I" else word for word in rule]
        del delete[delete.index("-D") + 2]  # the rule number
        ns(worker_ns, "ip6tables", "-w", *delete, check=False)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["sent"] = int(sent[0])
    result["pps"] = round(result["packets"] / result["seconds"]) if result["seconds"] else 0
    return result


def nfqueue_rates(packets: int, rounds: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with namespaces() as (mn, cn):
        for direction, (worker_ns, rule, sender_ns, sender) in directions(mn, cn).items():
            runs = [
                (
                    measure(worker_ns, rule, sender_ns, sender, direction, packets),
                    measure(worker_ns, rule, sender_ns, sender, "accept", packets),
                )
                for _ in range(rounds)
            ]
            ro = sorted(r["pps"] for r, _b in runs)[len(runs) // 2]
            base = sorted(b["pps"] for _r, b in runs)[len(runs) // 2]
            results[direction] = {
                "ro_pps_median": ro,
                "accept_only_pps_median": base,
                "ratio": round(ro / base, 3) if base else None,
                "ro_runs": [r["pps"] for r, _b in runs],
                "accept_only_runs": [b["pps"] for _r, b in runs],
                "packets_per_run": [r["packets"] for r, _b in runs],
                "ro_rewritten": [r["rewritten"] for r, _b in runs],
                "meets_100k": ro >= 100_000,
            }
    return results


# ---------------------------------------------------------------------------------------------
# Part 3: RTT in the test bed (real agents)
# ---------------------------------------------------------------------------------------------


def testbed_rtt(count: int) -> dict[str, Any]:
    """Ping CN → HoA through the tunnel (RO off at the MN) and directly (RO on)."""
    sys.path.insert(0, str(REPO / "tests" / "integration"))
    import importlib

    helpers: Any = importlib.import_module("test_route_optimization")
    # the test helpers print agent logs on exit: keep stdout for the JSON
    with contextlib.redirect_stdout(sys.stderr), helpers.agents_on_the_testbed() as agents:
        tunnelled = helpers.ping_rtt(agents, count, route_optimization=False)
        direct = helpers.ping_rtt(agents, count, route_optimization=True)
    return {
        "pings": count,
        "tunnelled": tunnelled,
        "direct": direct,
        "median_ratio_direct_vs_tunnelled": (
            round(direct["median_ms"] / tunnelled["median_ms"], 3)
            if direct["median_ms"] and tunnelled["median_ms"]
            else None
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per function measurement")
    parser.add_argument("--testbed", action="store_true", help="also measure RTT on the test bed")
    parser.add_argument("--pings", type=int, default=50)
    parser.add_argument("--packets", type=int, default=50_000, help="packets per NFQUEUE run")
    parser.add_argument("--rounds", type=int, default=3, help="NFQUEUE runs per direction")
    parser.add_argument("--no-nfqueue", action="store_true", help="functions only (no root)")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "benchmark": "route-optimization data path (HAO/RH2 rewrites) on NFQUEUE",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "udp_payload_octets": PAYLOAD,
        "functions_pps": function_rates(min(args.seconds, 1.0)),
    }
    if not args.no_nfqueue:
        result["nfqueue"] = {
            "method": "the sender fills the kernel queue with N packets, then the worker "
            "drains it alone; pps = N / drain time (no sender competing for the CPUs)",
            **nfqueue_rates(args.packets, args.rounds),
        }
    if args.testbed:
        result["rtt"] = testbed_rtt(args.pings)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
